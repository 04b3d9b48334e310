import { InvalidArgumentError, type Command } from 'commander';
import { errorCodes, IsthmusError, type ErrorCode } from '../core/errors.js';
import { keys } from '../core/keys.js';
import type { FederationStore } from '../federation/store.js';
import { assembleTrace, formatTrace, type GatewayView, type TraceResult } from '../sidecar/trace.js';
import { action, connectStore, etcdOption, outputOption, type EtcdFlags } from './common.js';
import { printJson } from './output.js';
import { dashboardOf, refusal, sidecarsOf } from './dashboard-client.js';
import { operatorOptions } from './operator.js';
import { findOperatorCredential, operatorHeaders, type OperatorFlags } from '../trust/operator-files.js';

interface TraceOptions extends OperatorFlags, EtcdFlags { from: string; namespace?: string; path: string; method: string; sidecar?: string; output: string }

const adminTimeoutMs = 3_000;
/** The sidecar waits up to 10 s for the traced answer; give it that and a little. */
const traceTimeoutMs = 15_000;

export function registerTrace(program: Command): void {
  operatorOptions(program.command('trace'))
    .description('send one real request through the mesh from a cluster and show every hop: routing decision, gateway and SNI, destination, identities checked at each end, time per hop')
    .argument('<service>', 'service name, or <name>.<namespace>')
    .requiredOption('--from <cluster>', 'the cluster to send the request from (one of its sidecars sends it)')
    .option('-n, --namespace <ns>', 'namespace of the service (default: the only namespace that has a service of that name)')
    .option('--path <path>', 'request path', pathArg, '/')
    .option('-X, --method <method>', 'request method', 'GET')
    .option('--sidecar <host:port>', 'send from this sidecar admin address instead of finding one of --from\'s sidecars')
    .addOption(etcdOption())
    .addOption(outputOption())
    .addHelpText('after', `
The request is real: it reaches the app like any other (use a harmless path). It goes on a fresh
connection with no retry, so what you see is one attempt. Exit 0 when it was answered (any
status), 1 when it failed, with the reason as an error code, 2 for a wrong command line.

The sidecar's POST /trace, the dashboard's /api/sidecars and the gateway's /debug/connections
need your operator credential (isthmus operator issue), found in --operator-dir,
ISTHMUS_OPERATOR_DIR, ~/.config/isthmus/config.yaml or ~/.config/isthmus/operator.

Examples:
  isthmus trace ledger --from east
  isthmus trace ledger.demo --from east --path /accounts?id=7 --output json
  isthmus trace hello -n demo --from east --sidecar 127.0.1.1:15020`)
    .action(action(async (service: string, opts: TraceOptions) => {
      let store: FederationStore | undefined;
      const notes: string[] = [];
      try {
        const openStore = async () => (store ??= await connectStore(opts));
        // One token for the whole command: every admin port it asks wants the operator.
        const headers = operatorHeaders(findOperatorCredential(opts));
        const body = { service, ...(opts.namespace ? { namespace: opts.namespace } : {}), path: opts.path, method: opts.method.toUpperCase() };
        const traced = opts.sidecar
          ? await traceFrom(opts.sidecar, body, headers)
          : await traceFrom(await sidecarsOf(await openStore(), opts.from, headers), body, headers);
        if (traced.result.from.cluster !== opts.from) {
          throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `the sidecar at ${traced.admin} is in cluster ${traced.result.from.cluster}, not ${opts.from}`);
        }
        let result = traced.result;
        const gatewayHop = result.hops.find((h) => h.kind === 'gateway');
        if (gatewayHop && result.facts && result.localAddress) {
          const view = await gatewayView(opts.etcd || !opts.sidecar ? openStore : undefined, gatewayHop.cluster, gatewayHop.address, result.localAddress, gatewayHop.sni, headers);
          if ('view' in view) result = assembleTrace(result.facts, view.view);
          else notes.push(`the gateway's own view is missing (${view.missing}); its times are inferred from both ends`);
        }
        const { facts: _facts, ...shown } = result;
        shown.notes = [...shown.notes, ...notes];
        if (opts.output === 'json') printJson({ ...shown, sidecar: traced.admin });
        else process.stdout.write(formatTrace(shown));
        if (!shown.answered) {
          const failure = shown.error ?? { code: 'ISTHMUS_ERR_INTERNAL_UNEXPECTED' as ErrorCode, message: 'the trace ended without an answer' };
          if (opts.output === 'json') {
            // The JSON above already carries the error; one document on stdout, the reason on stderr.
            process.stderr.write(`isthmus trace: ${failure.message}\n`);
            process.exitCode = 1;
            return;
          }
          throw new IsthmusError(failure.code, failure.message);
        }
      } finally {
        await (store as FederationStore | undefined)?.close().catch(() => undefined);
      }
    }));
}

function pathArg(value: string): string {
  if (!value.startsWith('/') || /\s/.test(value)) throw new InvalidArgumentError('a path starts with / and holds no spaces, e.g. /accounts?id=7');
  return value;
}

/** POST /trace to the first sidecar admin that answers. */
async function traceFrom(admins: string | string[], body: object, headers: Record<string, string>): Promise<{ admin: string; result: TraceResult }> {
  const candidates = typeof admins === 'string' ? [admins] : admins;
  const unreachable: string[] = [];
  for (const admin of candidates) {
    let res: Response;
    try {
      res = await fetch(`http://${admin}/trace`, {
        method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal: AbortSignal.timeout(traceTimeoutMs),
      });
    } catch (err) {
      unreachable.push(`${admin} (${(err as Error).message})`);
      continue;
    }
    const answer = (await res.json().catch(() => ({}))) as TraceResult & { error?: { code?: string; message?: string } };
    if (res.status !== 200) {
      const code = answer.error?.code && answer.error.code in errorCodes ? (answer.error.code as ErrorCode) : 'ISTHMUS_ERR_INTERNAL_UNEXPECTED';
      throw new IsthmusError(code, answer.error?.message ?? `the sidecar admin port ${admin} answered ${res.status}`);
    }
    return { admin, result: answer };
  }
  const code: ErrorCode = typeof admins === 'string' ? 'ISTHMUS_ERR_API_UNREACHABLE' : 'ISTHMUS_ERR_TRACE_NO_SIDECAR';
  throw new IsthmusError(code, `no sidecar admin port answered: ${unreachable.join('; ')}; is the sidecar running?`);
}

/**
 * The gateway's own record of our connection: its admin address from its etcd record, then
 * /debug/connections?remote=<our socket's ip:port>. Anything missing is a note, not a failure.
 */
async function gatewayView(
  openStore: (() => Promise<FederationStore>) | undefined,
  cluster: string, address: string, remote: string, sni: string, headers: Record<string, string>,
): Promise<{ view: GatewayView } | { missing: string }> {
  if (!openStore) return { missing: 'no etcd address to find the gateway\'s admin port: pass --etcd or set ISTHMUS_ETCD' };
  let records: { key: string; value: { address?: string; port?: number; admin?: string } }[];
  try {
    records = (await (await openStore()).list<{ address?: string; port?: number; admin?: string }>(keys.gatewaysOf(cluster))).records;
  } catch (err) {
    return { missing: `etcd: ${(err as Error).message}` };
  }
  const record = records.find((r) => `${r.value.address}:${r.value.port}` === address);
  if (!record) return { missing: `no gateway record of ${cluster} at ${address}` };
  if (!record.value.admin) return { missing: `gateway ${record.key.slice(keys.gatewaysOf(cluster).length)} of ${cluster} publishes no admin address` };
  try {
    const res = await fetch(`http://${record.value.admin}/debug/connections?remote=${encodeURIComponent(remote)}`, { headers, signal: AbortSignal.timeout(adminTimeoutMs) });
    if (!res.ok) return { missing: `the gateway admin port ${record.value.admin} answered ${res.status}${res.status === 401 || res.status === 403 ? ` (${(await refusal(res, '/debug/connections')).message})` : ''}` };
    const { connections = [] } = (await res.json()) as { connections?: GatewayView[] };
    const view = connections.find((c) => c.sni === sni) ?? connections[0];
    return view ? { view } : { missing: `the gateway at ${record.value.admin} has no record of a connection from ${remote}` };
  } catch (err) {
    return { missing: `the gateway admin port ${record.value.admin} did not answer (${(err as Error).message})` };
  }
}
