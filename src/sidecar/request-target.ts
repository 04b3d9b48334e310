/**
 * Which mesh service an app's request names, worked out from what llhttp already parsed
 * (no `new URL` per request). Pure: src/sidecar/request-target.test.ts covers the forms.
 */
export interface MeshTarget { service: string; namespace: string }

/** A fixed listener's service, and the one port of it that the listener reaches when it says so. */
export interface FixedTarget extends MeshTarget { port?: number | undefined }

export interface ResolvedTarget {
  target: Readonly<MeshTarget>;
  /** The Host to send on: as the app wrote it, or `<service>.<namespace>.mesh[:<port>]` for a fixed listener. */
  host: string;
  /** origin-form path and query for the upstream (RFC 9112 §3.2.1). */
  path: string;
}

export type TargetRefusal = { refused: string };

/**
 * The names of recent Hosts, so that an app's requests to the same service, which all carry the
 * same Host, cost a map lookup each rather than a replace, a lower-casing and a match. Bounded:
 * an app that names many hosts empties it and starts again.
 */
const recentTargets = new Map<string, Readonly<MeshTarget> | null>();
const recentTargetsMax = 512;

/**
 * `<service>.<ns>.mesh` or `<service>.<ns>.svc.clusterset.local` (the MCS API's name), any port;
 * also written as an absolute DNS name, with a final dot (`ledger.demo.mesh.`), as configurations
 * that avoid resolver search lists do.
 */
export function meshTarget(host: string | undefined): Readonly<MeshTarget> | undefined {
  if (!host) return undefined;
  const known = recentTargets.get(host);
  if (known !== undefined) return known ?? undefined;
  const name = host.replace(/:\d+$/, '').toLowerCase();
  const match = /^([a-z0-9-]+)\.([a-z0-9-]+)\.(?:mesh|svc\.clusterset\.local)\.?$/.exec(name);
  const target = match ? Object.freeze({ service: match[1] as string, namespace: match[2] as string }) : null;
  if (recentTargets.size >= recentTargetsMax) recentTargets.clear();
  recentTargets.set(host, target);
  return target ?? undefined;
}

/**
 * `url` is the request-target as received: absolute-form from an app using the proxy
 * (`http://ledger.demo.mesh/x`), origin-form (`/x`) with a Host header from an app that was
 * pointed at the proxy directly or at a fixed listener, or authority-form (`ledger.demo.mesh:80`)
 * for CONNECT. A fixed listener serves one service whatever Host says.
 */
export function resolveTarget(method: string | undefined, url: string | undefined, hostHeader: string | undefined, fixed?: FixedTarget): ResolvedTarget | TargetRefusal {
  const raw = url ?? '/';
  let host = hostHeader;
  let path = raw;
  if (method === 'CONNECT') {
    host = raw;
    path = raw;
  } else if (raw.startsWith('http://') || raw.startsWith('https://')) {
    const start = raw.indexOf('//') + 2;
    let end = start;
    while (end < raw.length && raw[end] !== '/' && raw[end] !== '?' && raw[end] !== '#') end += 1;
    host = raw.slice(start, end);
    const rest = raw.slice(end);
    path = rest === '' ? '/' : rest.startsWith('/') ? rest : `/${rest}`;
    const fragment = path.indexOf('#');
    if (fragment >= 0) path = path.slice(0, fragment);
  }
  if (fixed) return { target: fixed, host: `${fixed.service}.${fixed.namespace}.mesh${fixed.port === undefined ? '' : `:${fixed.port}`}`, path };
  const target = meshTarget(host);
  if (!target) return { refused: `${host || '(no host)'} is not a mesh name: use http://<service>.<namespace>.mesh/` };
  return { target, host: host as string, path };
}
