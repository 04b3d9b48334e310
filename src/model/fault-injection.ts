/**
 * Fault injection at the calling sidecar, before routing (as Istio's HTTPFaultInjection): a
 * fixed delay for a share of requests, and/or an answer the sidecar makes up for a share of
 * them, an HTTP status or a gRPC status, optionally only for requests carrying given headers.
 * Pure: the two draws are parameters, uniform in [0, 1).
 */
export interface FaultSettings {
  /** The document ("FaultInjection demo/hello-chaos"), for messages. */
  policy: string;
  delay?: { ms: number; percent: number };
  abort?: { status?: number; grpcStatus?: number; percent: number };
  /** Lower-case names, exact values: every one must be present. */
  headers: readonly (readonly [string, string])[];
}

export interface FaultChoice {
  delayMs: number;
  abort?: { status?: number; grpcStatus?: number };
}

const none: FaultChoice = Object.freeze({ delayMs: 0 });

type Headers = Readonly<Record<string, string | string[] | undefined>>;

export function faultApplies(fault: FaultSettings, headers: Headers): boolean {
  for (const [name, value] of fault.headers) {
    const held = headers[name];
    if (held !== value && !(Array.isArray(held) && held.includes(value))) return false;
  }
  return true;
}

/**
 * Delay and abort are drawn independently (a request may get both: delayed, then aborted), each
 * with its own share: `u < percent / 100`, so 0% never and 100% always.
 */
export function chooseFault(fault: FaultSettings, headers: Headers, uDelay: number, uAbort: number): FaultChoice {
  if (!faultApplies(fault, headers)) return none;
  const delayMs = fault.delay && uDelay * 100 < fault.delay.percent ? fault.delay.ms : 0;
  const a = fault.abort;
  if (a && uAbort * 100 < a.percent) {
    return { delayMs, abort: a.status !== undefined ? { status: a.status } : { grpcStatus: a.grpcStatus as number } };
  }
  return delayMs === 0 ? none : { delayMs };
}
