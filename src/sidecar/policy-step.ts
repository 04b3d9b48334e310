import type { ErrorCode } from '../core/errors.js';
import { chooseFault } from '../model/fault-injection.js';
import { grpcStatusOf, httpStatusOfGrpc } from './grpc-status.js';
import { publishPolicyAction } from './policy-actions.js';
import type { MeshTarget } from './request-target.js';
import type { RoutingTable } from './routing.js';

/**
 * The resilience part of the policy step, before routing, for HTTP/1.1 and HTTP/2 alike: a
 * FaultInjection of the service the app called (a delay, then perhaps an answer made up by the
 * sidecar, as Istio injects faults at the calling side). The decision is
 * model/fault-injection.ts; this file only asks it and says what the app must be answered. A
 * LocalRateLimit is not taken here but at the destination's inbound (inbound-rate-limit.ts),
 * where every caller's requests meet.
 */
export interface Refusal {
  code: ErrorCode;
  message: string;
  /** The HTTP status to answer with, and for a gRPC request the grpc-status. */
  status: number;
  grpcStatus: number;
  /** Extra response headers (retry-after). */
  headers?: Record<string, string>;
}

export interface Admission {
  /** Wait this long before going on (an injected delay); 0 for none. */
  delayMs: number;
  refusal?: Refusal;
}

const admitted: Admission = Object.freeze({ delayMs: 0 });

export function admitRequest(routing: RoutingTable, target: MeshTarget, headers: Readonly<Record<string, string | string[] | undefined>>): Admission {
  const service = `${target.namespace}/${target.service}`;
  const settings = routing.resilience.of(service);
  if (!settings) return admitted;
  const label = routing.knows(target.namespace, target.service) ? service : undefined;
  let delayMs = 0;
  if (settings.fault) {
    const fault = chooseFault(settings.fault, headers, Math.random(), Math.random());
    delayMs = fault.delayMs;
    if (delayMs > 0) publishPolicyAction(routing, label, 'fault_delay', settings.fault.policy);
    if (fault.abort) {
      publishPolicyAction(routing, label, 'fault_abort', settings.fault.policy);
      const status = fault.abort.status ?? httpStatusOfGrpc(fault.abort.grpcStatus ?? 2);
      return {
        delayMs,
        refusal: {
          code: 'ISTHMUS_ERR_DATAPLANE_FAULT_INJECTED', status, grpcStatus: fault.abort.grpcStatus ?? grpcStatusOf(status),
          message: `${settings.fault.policy} aborted this request to ${service} on purpose (isthmus policy list)`,
        },
      };
    }
  }
  return delayMs === 0 ? admitted : { delayMs };
}
