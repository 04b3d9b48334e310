import { withStore, type EtcdFlags } from './common.js';
import { readPolicyFile } from './policy-documents.js';
import { applyParsedPolicies, type ApplyResult } from '../federation/apply-policies.js';

export type { ApplyResult } from '../federation/apply-policies.js';

/** `isthmus policy apply`: every document of the file checked first (one bad document and nothing is written), then one transaction. */
export async function applyPolicies(file: string, etcd: EtcdFlags, dryRun: boolean): Promise<ApplyResult> {
  const parsed = await readPolicyFile(file);
  return await withStore(etcd, (store) => applyParsedPolicies(parsed, store, dryRun));
}
