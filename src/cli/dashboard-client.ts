import { keys } from '../core/keys.js';
import type { Overview } from '../dashboard/overview.js';
import type { FederationStore } from '../federation/store.js';
import { AliveRecordSchema, isRecord } from '../model/records.js';
import { errorCodes, IsthmusError, type ErrorCode } from '../core/errors.js';
import { findOperatorCredential, operatorHeaders, type OperatorFlags } from '../trust/operator-files.js';
import { compareText } from '../core/compare-text.js';

/**
 * Where a cluster's federation serves its dashboard, as its heartbeat says: undefined when the
 * cluster is not alive, null when it is but names no dashboard (its port could not listen).
 */
export async function dashboardOf(store: FederationStore, cluster: string): Promise<string | null | undefined> {
  const alive = await store.get<unknown>(keys.alive(cluster));
  if (!alive) return undefined;
  return isRecord(AliveRecordSchema, alive.value) && alive.value.dashboard ? alive.value.dashboard : null;
}

/**
 * The overview of a live federation's dashboard: each alive record names its federation's
 * dashboard address; `prefer` is tried first, then the others in name order. Every federation
 * reads the same etcd records, so any of them will do for the mesh-wide numbers.
 */
export async function liveOverview(store: FederationStore, prefer?: string, timeoutMs = 3000, operator: OperatorFlags = {}): Promise<{ overview: Overview; from: string } | undefined> {
  // Dashboards with operator-only reads want a token; one is sent whenever a credential is found.
  const headers = operatorHeaders(findOperatorCredential(operator));
  let refused: IsthmusError | undefined;
  const { records } = await store.list(keys.clusters);
  const dashboards = records
    .flatMap((r) => (r.key.endsWith('/alive') && isRecord(AliveRecordSchema, r.value) && r.value.dashboard
      ? [{ cluster: r.key.slice(keys.clusters.length, -'/alive'.length), address: r.value.dashboard }] : []))
    .sort((a, b) => Number(b.cluster === prefer) - Number(a.cluster === prefer) || compareText(a.cluster, b.cluster));
  for (const d of dashboards) {
    try {
      const res = await fetch(`http://${d.address}/api/overview`, { headers, signal: AbortSignal.timeout(timeoutMs) });
      if (res.ok) return { overview: (await res.json()) as Overview, from: `${d.cluster} (http://${d.address}/)` };
      if (res.status === 401 || res.status === 403) refused ??= await refusal(res, `http://${d.address}/api/overview`);
    } catch {
      continue;
    }
  }
  if (refused) throw refused;
  return undefined;
}

/**
 * The sidecars of a cluster, from its federation's dashboard: the alive record names the
 * dashboard's address, and its /api/sidecars lists the sidecars that report to it.
 */
export async function sidecarsOf(store: FederationStore, cluster: string, headers: Record<string, string> = {}, timeoutMs = 3000): Promise<string[]> {
  const dashboard = await dashboardOf(store, cluster);
  if (dashboard === undefined) throw new IsthmusError('ISTHMUS_ERR_CLUSTER_UNKNOWN', `cluster ${cluster} is not alive in the mesh (isthmus clusters lists them); or pass --sidecar <admin host:port>`);
  if (dashboard === null) throw new IsthmusError('ISTHMUS_ERR_TRACE_NO_SIDECAR', `cluster ${cluster}'s federation publishes no dashboard address, so its sidecars cannot be listed; pass --sidecar <admin host:port>`);
  let listed: { sidecars?: { admin?: string }[] };
  try {
    const res = await fetch(`http://${dashboard}/api/sidecars`, { headers, signal: AbortSignal.timeout(timeoutMs) });
    if (res.status === 401 || res.status === 403) throw await refusal(res, `http://${dashboard}/api/sidecars`);
    if (!res.ok) throw new Error(`it answered ${res.status}`);
    listed = (await res.json()) as typeof listed;
  } catch (err) {
    if (err instanceof IsthmusError) throw err;
    throw new IsthmusError('ISTHMUS_ERR_TRACE_NO_SIDECAR', `could not list ${cluster}'s sidecars at http://${dashboard}/api/sidecars (${(err as Error).message}); pass --sidecar <admin host:port>`, { cause: err });
  }
  const admins = (listed.sidecars ?? []).flatMap((s) => (typeof s.admin === 'string' ? [s.admin] : []));
  if (admins.length === 0) throw new IsthmusError('ISTHMUS_ERR_TRACE_NO_SIDECAR', `cluster ${cluster} has no sidecar reporting to its federation; pass --sidecar <admin host:port>`);
  return admins;
}

/** An admin or dashboard answer of 401/403 as the error it carries (its code and what to do), for the CLI to print. */
export async function refusal(res: Response, url: string): Promise<IsthmusError> {
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
  const code = body.error?.code && body.error.code in errorCodes ? (body.error.code as ErrorCode) : 'ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING';
  return new IsthmusError(code, `${url} answered ${res.status}: ${body.error?.message ?? 'an operator credential is needed'}`);
}
