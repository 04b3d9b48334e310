import type { PolicyRecord } from '../model/policy-records.js';
import { compileResiliencePolicies, type ServiceResilience } from '../model/resilience-policy.js';
import { RetryBudget } from '../model/retry-budget.js';
import { builtInRetries, type RetryLimits } from './attempts.js';

/**
 * The sidecar's resilience policies (model/resilience-policy.ts) and the state they need per
 * destination service: a retry budget's counts. A new policy snapshot keeps the state of a
 * service whose policy did not change, so re-delivering the same policies forgets no budget.
 */
export class ResiliencePolicies {
  private settings = new Map<string, ServiceResilience>();
  private readonly retries = new Map<string, { spec: string; limits: RetryLimits }>();

  set(records: readonly PolicyRecord[]): void {
    this.settings = compileResiliencePolicies(records);
    for (const [service, held] of this.retries) if (held.spec !== JSON.stringify(this.retrySpec(service))) this.retries.delete(service);
  }

  get size(): number {
    return this.settings.size;
  }

  /** A service's settings, by `<ns>/<name>`. */
  of(service: string): ServiceResilience | undefined {
    return this.settings.size === 0 ? undefined : this.settings.get(service);
  }

  /** The retry limits for requests to `service`, with its budget; the built-in ones without a RetryPolicy. */
  retryLimits(service: string): RetryLimits {
    const retry = this.of(service)?.retry;
    if (!retry) return builtInRetries;
    let held = this.retries.get(service);
    if (!held) {
      held = {
        spec: JSON.stringify(this.retrySpec(service)),
        limits: {
          maxAttempts: retry.maxAttempts, conditions: retry.conditions, budget: new RetryBudget(retry.budget), policy: retry.policy,
          ...(retry.perTryTimeoutMs === undefined ? {} : { perTryTimeoutMs: retry.perTryTimeoutMs }),
        },
      };
      this.retries.set(service, held);
    }
    return held.limits;
  }

  private retrySpec(service: string): unknown {
    const retry = this.settings.get(service)?.retry;
    return retry && { ...retry, conditions: [...retry.conditions] };
  }
}
