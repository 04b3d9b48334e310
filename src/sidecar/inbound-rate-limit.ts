import type { CallerFacts } from '../model/authorization.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { compileResiliencePolicies, type RateLimitSettings } from '../model/resilience-policy.js';
import { fullBucket, retryAfterSeconds, takeToken, type TokenBucket, type TokenBucketConfig } from '../model/token-bucket.js';
import { publishPolicyAction } from './policy-actions.js';

export interface RateLimitRefusal {
  code: 'ISTHMUS_ERR_DATAPLANE_RATE_LIMITED';
  status: 429;
  message: string;
  headers: { 'retry-after': string };
}

/** Buckets kept for callers at most; past it the idle ones (full again) are forgotten first. */
const maxCallers = 10_000;

/**
 * The LocalRateLimit of the service behind this inbound, enforced where the requests arrive (as
 * Envoy's local rate limit filter runs in Istio's inbound chain): one token bucket for this
 * instance (`per: service`), or one per verified caller SPIFFE identity (`per: caller`; every
 * plain-text caller of a permissive namespace shares one). A caller in another cluster keeps its
 * identity through the gateway, which never terminates TLS, so it has its own bucket too.
 * The decision is model/token-bucket.ts; a new policy snapshot keeps the buckets while the
 * limit is unchanged, so re-delivering the same policies refills nothing.
 */
export class InboundRateLimit {
  private limit: RateLimitSettings | undefined;
  private config: TokenBucketConfig = { ratePerSecond: 1, burst: 1 };
  private spec = 'null';
  private instance: TokenBucket | undefined;
  private readonly callers = new Map<string, TokenBucket>();
  private readonly name: string;

  constructor(readonly namespace: string, readonly service: string) {
    this.name = `${namespace}/${service}`;
  }

  set(records: readonly PolicyRecord[]): void {
    const limit = compileResiliencePolicies(records.filter((r) => r.kind === 'LocalRateLimit')).get(this.name)?.rateLimit;
    const spec = JSON.stringify(limit ?? null);
    if (spec === this.spec) return;
    this.spec = spec;
    this.limit = limit;
    if (limit) this.config = { ratePerSecond: limit.requestsPerSecond, burst: limit.burst };
    this.instance = undefined;
    this.callers.clear();
  }

  /** Takes a token for a request (or a tunnel's opening) from `caller`; a refusal when none is left. */
  admit(caller: CallerFacts, now = Date.now()): RateLimitRefusal | undefined {
    const limit = this.limit;
    if (!limit) return undefined;
    const perCaller = limit.per === 'caller';
    const key = caller.identity ?? '';
    const bucket = (perCaller ? this.callers.get(key) : this.instance) ?? fullBucket(this.config, now);
    const result = takeToken(bucket, this.config, now);
    if (perCaller) this.keep(key, result.bucket, now);
    else this.instance = result.bucket;
    if (result.allowed) return undefined;
    publishPolicyAction(this, this.name, 'rate_limited', limit.policy);
    const seconds = retryAfterSeconds(result.retryAfterMs);
    const who = perCaller ? (caller.identity ?? 'plain-text callers') : 'its callers together';
    return {
      code: 'ISTHMUS_ERR_DATAPLANE_RATE_LIMITED', status: 429, headers: { 'retry-after': String(seconds) },
      message: `${limit.policy} allows ${who} no more requests to this instance of ${this.name} now; retry after ${seconds} s`,
    };
  }

  private keep(key: string, bucket: TokenBucket, now: number): void {
    if (this.callers.size >= maxCallers && !this.callers.has(key)) {
      // A bucket that has refilled to full is the same as none: forget those first.
      for (const [k, b] of this.callers) if (b.tokens + ((now - b.at) * this.config.ratePerSecond) / 1000 >= this.config.burst) this.callers.delete(k);
      if (this.callers.size >= maxCallers) this.callers.clear();
    }
    this.callers.set(key, bucket);
  }
}
