import { keys } from '../core/keys.js';
import { isRecord } from '../model/records.js';
import { PolicyRecordSchema, type PoliciesSnapshot, type PolicyRecord } from '../model/policy-records.js';
import { compareText } from '../core/compare-text.js';

/**
 * The traffic policies sidecars get (GET /v1/policies), from the federation's copy of etcd:
 * every valid record under `/policies/` except objectives (which the federations evaluate
 * themselves). The version moves only when the set changes, so a long poll wakes for a real
 * change and not for every store event. Records that do not check out are left out and named.
 */
export class PolicySnapshots {
  current: PoliciesSnapshot = { version: 0, policies: [] };
  private json = '[]';

  /** The new snapshot when the policies changed, otherwise undefined. */
  next(entries: readonly [string, unknown][]): { snapshot: PoliciesSnapshot; invalidKeys: string[] } | undefined {
    const policies: PolicyRecord[] = [];
    const invalidKeys: string[] = [];
    for (const [key, value] of entries) {
      if (!key.startsWith(keys.policies) || key.startsWith(keys.sloPolicies)) continue;
      if (isRecord(PolicyRecordSchema, value)) policies.push(value);
      else invalidKeys.push(key);
    }
    policies.sort((a, b) => compareText(`${a.kind}/${a.namespace}/${a.name}`, `${b.kind}/${b.namespace}/${b.name}`));
    const json = JSON.stringify(policies);
    if (json === this.json) return undefined;
    this.json = json;
    this.current = { version: this.current.version + 1, policies };
    return { snapshot: this.current, invalidKeys };
  }
}
