import { Type, type Static } from '../core/typebox.js';
import { IsthmusError } from '../core/errors.js';
import { validate } from '../core/validate.js';

/**
 * Outlier detection (passive health checking) as a pure state machine: results of requests go
 * in, ejections come out, and time is a parameter. Follows Envoy's consecutive-errors detector
 * (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier): an endpoint
 * that fails N times in a row is ejected for base × (times ejected), capped; the sidecar marks
 * ejected endpoints unhealthy before it computes the priority load, so ejection drives failover.
 *
 * One state per service, over all its endpoints (local pods and remote gateways alike).
 */
export const OutlierConfigSchema = Type.Object({
  consecutive5xx: Type.Integer({ minimum: 1, default: 5, description: 'Envoy consecutive_5xx' }),
  /** Lower than for 5xx: a refused connection says more about the endpoint than an app error. */
  consecutiveConnectErrors: Type.Integer({ minimum: 1, default: 3 }),
  baseEjectionMs: Type.Integer({ minimum: 1, default: 30_000, description: 'Envoy base_ejection_time' }),
  maxEjectionMs: Type.Integer({ minimum: 1, default: 300_000, description: 'Envoy max_ejection_time' }),
  /** Each this long spent in service forgives one past ejection (Envoy decrements per `interval`). */
  decayIntervalMs: Type.Integer({ minimum: 1, default: 10_000, description: 'Envoy interval' }),
  /**
   * Envoy's default is 10% ("max_ejection_percent", config.cluster.v3.OutlierDetection), sized
   * for clusters of dozens of hosts: with fewer than ten it ejects only the first host. A mesh
   * service often has 2–5 endpoints, so we allow half of them: enough to drop a bad pod and a bad
   * gateway, while a fault that hits every endpoint (a shared database down) cannot eject the
   * whole pool and turn slow errors into no capacity at all.
   */
  maxEjectionPercent: Type.Integer({ minimum: 0, maximum: 100, default: 50 }),
}, { additionalProperties: false });
export type OutlierConfig = Static<typeof OutlierConfigSchema>;

/** Validates once, applies defaults, freezes: nothing re-checks it per request. */
export function outlierConfig(input: unknown = {}, source = 'outlier detection config'): Readonly<OutlierConfig> {
  const config = validate(OutlierConfigSchema, input, source);
  if (config.maxEjectionMs < config.baseEjectionMs) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID',
      `${source} is not valid:\n  /maxEjectionMs: must be at least baseEjectionMs (${config.baseEjectionMs}), got ${config.maxEjectionMs}`);
  }
  return config;
}

export type OutlierResult = { ok: true; kind: 'ok' } | { ok: false; kind: 'connect-error' | '5xx' };

export interface HostOutlier {
  consecutive5xx: number;
  consecutiveConnectErrors: number;
  /** Ejections not yet forgiven; the next ejection lasts base × (this + 1). */
  ejections: number;
  /** Ejected while now < ejectedUntil; 0 when never ejected. */
  ejectedUntil: number;
  /** What the last ejection was for. */
  ejectedFor?: 'connect-error' | '5xx';
}

export interface OutlierState {
  readonly config: Readonly<OutlierConfig>;
  readonly hosts: ReadonlyMap<string, HostOutlier>;
}

const fresh: HostOutlier = Object.freeze({ consecutive5xx: 0, consecutiveConnectErrors: 0, ejections: 0, ejectedUntil: 0 });

export function outlierState(config: Readonly<OutlierConfig> = outlierConfig(), addresses: Iterable<string> = []): OutlierState {
  return { config, hosts: new Map([...addresses].map((a) => [a, fresh])) };
}

/** Follows the catalog: keeps the history of endpoints still present, forgets removed ones. */
export function withHosts(state: OutlierState, addresses: Iterable<string>): OutlierState {
  return { config: state.config, hosts: new Map([...addresses].map((a) => [a, state.hosts.get(a) ?? fresh])) };
}

export function isEjected(state: OutlierState, address: string, now: number): boolean {
  return now < (state.hosts.get(address)?.ejectedUntil ?? 0);
}

export function ejectedAddresses(state: OutlierState, now: number): Set<string> {
  return new Set([...state.hosts].filter(([, host]) => now < host.ejectedUntil).map(([address]) => address));
}

/**
 * Returns a new state (the old one is untouched), or the same object when nothing changed, so
 * the hot path of successful requests allocates nothing. `config`: the settings of the service
 * whose request this was (an OutlierDetection policy), else the state's defaults.
 */
export function recordResult(state: OutlierState, address: string, result: OutlierResult, now: number, config: Readonly<OutlierConfig> = state.config): OutlierState {
  const host = state.hosts.get(address) ?? fresh;
  // Requests that were in flight when the host was ejected report late; they say nothing new
  // and must not stretch or stack the ejection.
  if (now < host.ejectedUntil) return state;

  let next: HostOutlier;
  if (result.kind === 'ok') {
    if (host.consecutive5xx === 0 && host.consecutiveConnectErrors === 0) return state;
    next = { ...host, consecutive5xx: 0, consecutiveConnectErrors: 0 };
  } else if (result.kind === '5xx') {
    next = { ...host, consecutive5xx: host.consecutive5xx + 1 };
  } else {
    next = { ...host, consecutiveConnectErrors: host.consecutiveConnectErrors + 1 };
  }

  // `>=`, not Envoy's `==`: a host refused ejection by the budget is ejected on its next error
  // once the budget allows, instead of never.
  const outlier = next.consecutive5xx >= config.consecutive5xx || next.consecutiveConnectErrors >= config.consecutiveConnectErrors;
  if (outlier && mayEject(state, address, now, config.maxEjectionPercent)) {
    // Capped where the ejection time is: beyond that it could only slow the decay.
    const ejections = Math.min(unforgiven(host, now, config) + 1, Math.ceil(config.maxEjectionMs / config.baseEjectionMs));
    next = {
      consecutive5xx: 0, consecutiveConnectErrors: 0, ejections,
      ejectedUntil: now + Math.min(config.maxEjectionMs, config.baseEjectionMs * ejections),
      ejectedFor: result.kind === '5xx' ? '5xx' : 'connect-error',
    };
  }
  const hosts = new Map(state.hosts);
  hosts.set(address, next);
  return { config: state.config, hosts };
}

/**
 * The ejection budget. As Envoy's documented algorithm, the first ejection is always allowed
 * and later ones only while the ejected share stays within maxEjectionPercent. Our addition:
 * never eject the last host in service — with nothing left, ejection cannot move traffic
 * anywhere, it only turns errors into "no endpoint" for the whole ejection time, even after the
 * host recovers.
 */
function mayEject(state: OutlierState, address: string, now: number, maxEjectionPercent: number): boolean {
  const hosts = state.hosts.has(address) ? state.hosts.size : state.hosts.size + 1;
  const ejected = ejectedAddresses(state, now).size;
  if (ejected + 1 >= hosts) return false;
  if (ejected === 0) return true;
  return (ejected + 1) * 100 <= maxEjectionPercent * hosts;
}

/** Past ejections still counted: one is forgiven per decay interval spent back in service. */
function unforgiven(host: HostOutlier, now: number, config: Readonly<OutlierConfig>): number {
  if (host.ejections === 0) return 0;
  const inService = Math.max(0, now - host.ejectedUntil);
  return Math.max(0, host.ejections - Math.floor(inService / config.decayIntervalMs));
}

/**
 * An active health check succeeded: end the ejection now instead of at its deadline, as Envoy
 * does by default (successful_active_health_check_uneject_host). The ejection count is kept, so
 * a host that fails again is ejected for longer.
 */
export function unejectHost(state: OutlierState, address: string, now: number, onlyFor?: 'connect-error' | '5xx'): OutlierState {
  const host = state.hosts.get(address);
  if (!host || now >= host.ejectedUntil) return state;
  if (onlyFor !== undefined && host.ejectedFor !== onlyFor) return state;
  const hosts = new Map(state.hosts);
  hosts.set(address, { ...host, ejectedUntil: 0, consecutive5xx: 0, consecutiveConnectErrors: 0 });
  return { config: state.config, hosts };
}
