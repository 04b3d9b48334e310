import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootCa, issueCertificate } from '../../src/trust/ca.js';
import { clusterRoleId } from '../../src/trust/spiffe.js';

/**
 * FakeKubeApiServer: a small HTTPS server serving the Kubernetes list/watch endpoints the
 * Isthmus adapter uses, and the get/create/update of Namespaces, Secrets and ConfigMaps that
 * `isthmus join --kubeconfig` uses, and nothing else. It is not a Kubernetes API server: no
 * admission beyond the namespace lifecycle (an object needs its namespace: 404 when it does not exist,
 * 403 when it is terminating), no field validation, no label selectors, and RBAC is one bearer token whose rights
 * a test can set (`grant` a rule set, or `deny` one verb; answered 403 as the real authorizer
 * words it, and told the same way to a SelfSubjectAccessReview). What it does keep is
 * what a watch client can get wrong: one resourceVersion counter shared by all kinds (as etcd's
 * revision is), watch streams of ADDED/MODIFIED/DELETED/BOOKMARK lines that resume from a
 * resourceVersion, and "410 Gone" (an ERROR event with a Status, as the real server sends) for a
 * resourceVersion older than its history. Its answers are checked against shapes recorded from
 * the Kubernetes API reference (test/fixtures/kubernetes/), so it cannot drift unnoticed.
 */

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; creationTimestamp?: string; generation?: number; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

interface Resource {
  group: string; // '' for core
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
  /** Spec and status are written apart (PUT/PATCH …/status), as for a CRD with the status subresource. */
  statusSubresource: boolean;
}

const resources: Resource[] = [
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true, statusSubresource: true },
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false, statusSubresource: true },
  { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true, statusSubresource: false },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true, statusSubresource: true },
  { group: 'multicluster.x-k8s.io', version: 'v1alpha1', plural: 'serviceexports', kind: 'ServiceExport', namespaced: true, statusSubresource: true },
  { group: 'multicluster.x-k8s.io', version: 'v1alpha1', plural: 'serviceimports', kind: 'ServiceImport', namespaced: true, statusSubresource: true },
  // What `isthmus join --kubeconfig` reads and writes: the control plane's namespace, its Secrets and ConfigMap.
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false, statusSubresource: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true, statusSubresource: false },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true, statusSubresource: false },
];

/** What every cluster has from its start (Kubernetes docs, "Namespaces": initial namespaces). */
export const initialNamespaces = ['default', 'kube-node-lease', 'kube-public', 'kube-system'];

const apiVersionOf = (r: Resource) => (r.group === '' ? r.version : `${r.group}/${r.version}`);

interface WatchEvent { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: KubeObject; rv: number }

interface Watcher { resource: Resource; namespace: string | undefined; res: ServerResponse; bookmarks: boolean }

/**
 * One RBAC rule of the admin token's user (`grant`), as a Role's or ClusterRole's rule reads:
 * `namespaces` absent is a ClusterRoleBinding (every namespace and the cluster scope), else
 * RoleBindings in those namespaces only; `resourceNames` absent is every name.
 */
export interface RbacRule { verbs: string[]; resources: string[]; apiGroups?: string[]; namespaces?: string[]; resourceNames?: string[] }

export interface ServiceAccountToken { namespace: string; serviceAccount: string; audiences: string[]; podName?: string }

export class FakeKubeApiServer {
  /** Bearer token the adapter must present (the federation's own ServiceAccount, in a real cluster). */
  readonly adminToken = randomUUID();
  readonly caPem: string;
  private readonly server: Server;
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private readonly history = new Map<string, WatchEvent[]>();
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private readonly tokens = new Map<string, ServiceAccountToken>();
  private rv = 100;
  /** Events at or below this resourceVersion are forgotten: a watch from there gets 410. */
  private compactedRv = 100;
  private bookmarkTimer: NodeJS.Timeout | undefined;
  private dir: string | undefined;
  /** Every request as `METHOD path?query`, for tests that check what the adapter asked. */
  readonly requests: string[] = [];
  /** Watches opened in total (a resumed watch counts again). */
  watchesOpened = 0;
  /** The next requests of a path prefix answer with this status (backoff tests). */
  private readonly failures: { prefix: string; status: number; remaining: number; method: string | undefined }[] = [];
  /** `<verb> <plural>` the admin token's user is not granted (RBAC tests): answered 403 Forbidden. */
  private readonly denied = new Set<string>();
  /** What the admin token's user is granted (`grant`); undefined: everything, as cluster-admin. */
  private rules: RbacRule[] | undefined;
  /** The user the admin token authenticates as, named in Forbidden answers. */
  readonly adminUser = 'kubernetes-admin';
  /**
   * Every (verb, resource) the admin token's user was allowed, as `<verb> <group>/<resource>`
   * (`create authentication.k8s.io/tokenreviews`, `patch multicluster.x-k8s.io/serviceexports/status`,
   * `list /pods` for the core group): what a least-privilege role must grant, and no more.
   */
  readonly used = new Set<string>();
  /** Every request refused by RBAC, in the same form. */
  readonly forbidden: string[] = [];

  private constructor(private readonly host: string, private readonly maxHistory: number) {
    const root = createRootCa({ trustDomain: 'kube-api.test' });
    const serving = issueCertificate({ identity: clusterRoleId('kube-api.test', 'kube', 'federation'), issuer: root, ttlSeconds: 24 * 3600, ipAddresses: [host], dnsNames: ['localhost'] });
    this.caPem = root.certPem;
    for (const r of resources) {
      this.objects.set(r.plural, new Map());
      this.history.set(r.plural, []);
    }
    this.server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => this.handle(req, res));
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  /** Listens on `host` port 0; `maxHistory` events per kind are kept for resuming watches. */
  static async start(opts: { host: string; maxHistory?: number; bookmarkIntervalMs?: number }): Promise<FakeKubeApiServer> {
    const fake = new FakeKubeApiServer(opts.host, opts.maxHistory ?? 10_000);
    // The namespaces a new cluster's API server makes for itself; any other is created by the test, as by a user.
    for (const name of initialNamespaces) fake.apply('namespaces', { metadata: { name } });
    await new Promise<void>((resolve) => fake.server.listen(0, opts.host, resolve));
    fake.bookmarkTimer = setInterval(() => fake.sendBookmarks(), opts.bookmarkIntervalMs ?? 1000);
    fake.bookmarkTimer.unref();
    return fake;
  }

  get url(): string {
    return `https://${this.host}:${(this.server.address() as AddressInfo).port}`;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  /** A kubeconfig file for this server (certificate-authority-data and the admin token), in a temp dir removed by stop(). */
  writeKubeconfig(): string {
    this.dir ??= mkdtempSync(join(tmpdir(), 'isthmus-fake-kube-'));
    const path = join(this.dir, 'kubeconfig');
    writeFileSync(path, JSON.stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'fake',
      clusters: [{ name: 'fake', cluster: { server: this.url, 'certificate-authority-data': Buffer.from(this.caPem).toString('base64') } }],
      users: [{ name: 'federation', user: { token: this.adminToken } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'federation' } }],
    }));
    return path;
  }

  /** A projected ServiceAccount token that TokenReview will accept for that account. */
  issueToken(account: ServiceAccountToken): string {
    const token = `sa-${randomUUID()}`;
    this.tokens.set(token, account);
    return token;
  }

  // --- state, as kubectl would change it ---

  /**
   * Creates or replaces an object, as `kubectl apply` would. Like the real server, it refuses an
   * object of a namespace that does not exist (throws `namespaces "<ns>" not found`): create the
   * Namespace first, as a user would.
   */
  apply(plural: string, object: KubeObject): KubeObject {
    const ns = object.metadata.namespace;
    if (ns && plural !== 'namespaces' && !this.store('namespaces').has(ns)) throw new Error(`FakeKubeApiServer.apply: namespaces "${ns}" not found (apply the Namespace first)`);
    const store = this.store(plural);
    const key = keyOf(object);
    const previous = store.get(key);
    const next = this.stamp(structuredClone(object), previous);
    // What the real API server adds to every Namespace (the name label since 1.21, the finalizer, the phase).
    if (plural === 'namespaces') {
      next.metadata.labels = { ...next.metadata.labels, 'kubernetes.io/metadata.name': next.metadata.name };
      next.spec = { finalizers: ['kubernetes'], ...(next.spec as object | undefined) };
      next.status = { phase: 'Active', ...(next.status as object | undefined) };
    }
    store.set(key, next);
    this.record(plural, previous ? 'MODIFIED' : 'ADDED', next);
    return next;
  }

  remove(plural: string, namespace: string | undefined, name: string): boolean {
    const store = this.store(plural);
    const key = namespace ? `${namespace}/${name}` : name;
    const previous = store.get(key);
    if (!previous) return false;
    store.delete(key);
    this.rv += 1;
    const gone = { ...previous, metadata: { ...previous.metadata, resourceVersion: String(this.rv) } };
    this.recordAt(plural, 'DELETED', gone, this.rv);
    return true;
  }

  get(plural: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.store(plural).get(namespace ? `${namespace}/${name}` : name);
  }

  list(plural: string): KubeObject[] {
    return [...this.store(plural).values()];
  }

  /** Ends every open watch stream, as an API server restart or a load balancer would. */
  dropWatches(): void {
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
  }

  /** Forgets all history up to now: a watch resuming from any earlier resourceVersion gets 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    for (const events of this.history.values()) events.length = 0;
  }

  /** The next `count` requests (of `method`, else any) whose path starts with `prefix` are answered with `status`. */
  failNext(prefix: string, status: number, count = 1, method?: string): void {
    this.failures.push({ prefix, status, remaining: count, method });
  }

  /**
   * Takes `verb` (get, list, watch, create, update, patch, delete) on `plural` (or a subresource,
   * `serviceexports/status`) away from the admin token's user, as a Role without it would: such
   * requests get 403 Forbidden in the real server's words.
   */
  deny(verb: string, plural: string): void {
    this.denied.add(`${verb} ${plural}`);
  }

  /**
   * Replaces what the admin token's user may do with these rules (RBAC tests): requests and
   * SelfSubjectAccessReviews outside them are refused as the real authorizer refuses them.
   */
  grant(rules: RbacRule[]): void {
    this.rules = structuredClone(rules);
  }

  /** Gives back every verb `deny` took, and everything `grant` left out. */
  allowAll(): void {
    this.denied.clear();
    this.rules = undefined;
  }

  /**
   * Whether the admin token's user may do `verb` on `plural` (of `group`) in `namespace`
   * (undefined: the cluster scope). A subresource is its own resource to RBAC: `plural` is then
   * `serviceexports/status`, which a rule for `serviceexports` does not grant.
   */
  allows(verb: string, group: string, plural: string, namespace: string | undefined, name: string | undefined): boolean {
    if (this.denied.has(`${verb} ${plural}`)) return false;
    if (this.rules === undefined) return true;
    const has = (list: string[] | undefined, value: string) => list === undefined || list.includes('*') || list.includes(value);
    return this.rules.some((r) => has(r.verbs, verb) && has(r.resources, plural) && has(r.apiGroups ?? [''], group)
      && (r.namespaces === undefined || (namespace !== undefined && r.namespaces.includes(namespace)))
      && (r.resourceNames === undefined || (name !== undefined && r.resourceNames.includes(name))));
  }

  /** Sends a BOOKMARK with the current resourceVersion to every watch that asked for bookmarks (the real server sends them about once a minute). */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      writeEvent(w.res, { type: 'BOOKMARK', object: { kind: w.resource.kind, apiVersion: apiVersionOf(w.resource), metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  async stop(): Promise<void> {
    if (this.bookmarkTimer) clearInterval(this.bookmarkTimer);
    this.dropWatches();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  // --- HTTP ---

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://fake');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    if (req.headers.authorization !== `Bearer ${this.adminToken}`) return sendStatus(res, 401, 'Unauthorized', 'Unauthorized');
    const failure = this.failures.find((f) => f.remaining > 0 && url.pathname.startsWith(f.prefix) && (f.method === undefined || f.method === req.method));
    if (failure) {
      failure.remaining -= 1;
      return sendStatus(res, failure.status, 'InternalError', `injected failure ${failure.status}`);
    }
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => { body += chunk; });
    req.on('end', () => {
      try {
        this.route(req.method ?? 'GET', url, req.headers['content-type'] ?? '', body, res);
      } catch (err) {
        sendStatus(res, 400, 'BadRequest', (err as Error).message);
      }
    });
  }

  /** RBAC for one request: records the (verb, resource) used, or answers 403 and records the refusal. */
  private authorize(verb: string, group: string, resource: string, namespace: string | undefined, name: string | undefined, res: ServerResponse): boolean {
    const pair = `${verb} ${group}/${resource}`;
    if (this.allows(verb, group, resource, namespace, name)) {
      this.used.add(pair);
      return true;
    }
    this.forbidden.push(`${pair}${namespace ? ` in ${namespace}` : ''}`);
    sendJson(res, 403, forbiddenStatus(this.adminUser, verb, { group, plural: resource }, namespace, name));
    return false;
  }

  private route(method: string, url: URL, contentType: string, body: string, res: ServerResponse): void {
    if (method === 'POST' && url.pathname === '/apis/authentication.k8s.io/v1/tokenreviews') {
      if (!this.authorize('create', 'authentication.k8s.io', 'tokenreviews', undefined, undefined, res)) return;
      return this.tokenReview(body, res);
    }
    // Every authenticated user may ask what it may do (ClusterRole system:basic-user).
    if (method === 'POST' && url.pathname === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews') return this.accessReview(body, res);
    const path = parsePath(url.pathname);
    if (!path) return sendStatus(res, 404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
    const { resource, namespace, name, subresource } = path;
    const verb = verbOf(method, name, url);
    if (!this.authorize(verb, resource.group, subresource ? `${resource.plural}/${subresource}` : resource.plural, namespace, name, res)) return;
    const store = this.store(resource.plural);
    const key = name === undefined ? undefined : namespace ? `${namespace}/${name}` : name;
    if (name === undefined) {
      if (method === 'GET' && (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1')) return this.watch(resource, namespace, url, res);
      if (method === 'GET') return this.sendList(resource, namespace, res);
      if (method === 'POST') {
        const object = JSON.parse(body) as KubeObject;
        object.metadata.namespace = namespace;
        // The real server refuses to create in a namespace that does not exist (or is going away).
        if (namespace !== undefined) {
          const home = this.store('namespaces').get(namespace);
          if (!home) return sendJson(res, 404, namespaceNotFound(namespace));
          if ((home.status as { phase?: string } | undefined)?.phase === 'Terminating') {
            return sendStatus(res, 403, 'Forbidden', `${resource.plural} "${object.metadata.name}" is forbidden: unable to create new content in namespace ${namespace} because it is being terminated`);
          }
        }
        if (store.has(keyOf(object))) return sendStatus(res, 409, 'AlreadyExists', `${resource.plural} "${object.metadata.name}" already exists`);
        return sendJson(res, 201, this.withKind(resource, this.apply(resource.plural, object)));
      }
      return sendStatus(res, 405, 'MethodNotAllowed', `${method} is not supported on a collection`);
    }
    const current = store.get(key as string);
    if (method === 'GET') return current ? sendJson(res, 200, this.withKind(resource, current)) : sendStatus(res, 404, 'NotFound', `${resource.plural} "${name}" not found`);
    if (!current) return sendStatus(res, 404, 'NotFound', `${resource.plural} "${name}" not found`);
    if (method === 'DELETE') {
      this.remove(resource.plural, namespace, name);
      return sendJson(res, 200, this.withKind(resource, current));
    }
    let next: KubeObject;
    if (method === 'PUT') {
      next = JSON.parse(body) as KubeObject;
      const sent = next.metadata?.resourceVersion;
      if (sent !== undefined && sent !== current.metadata.resourceVersion) {
        return sendStatus(res, 409, 'Conflict', `Operation cannot be fulfilled on ${resource.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
      }
    } else if (method === 'PATCH') {
      next = patch(current, body, contentType);
    } else {
      return sendStatus(res, 405, 'MethodNotAllowed', `${method} is not supported`);
    }
    // The status subresource writes only status; the main resource never writes status.
    if (resource.statusSubresource) {
      next = subresource === 'status' ? { ...structuredClone(current), status: next.status } : { ...next, status: current.status };
    }
    next.metadata = { ...next.metadata, name: current.metadata.name, ...(namespace ? { namespace } : {}) };
    return sendJson(res, 200, this.withKind(resource, this.apply(resource.plural, next)));
  }

  private sendList(resource: Resource, namespace: string | undefined, res: ServerResponse): void {
    // Items of a list carry no kind or apiVersion; the list does.
    const items = [...this.store(resource.plural).values()].filter((o) => namespace === undefined || o.metadata.namespace === namespace);
    sendJson(res, 200, { kind: `${resource.kind}List`, apiVersion: apiVersionOf(resource), metadata: { resourceVersion: String(this.rv) }, items });
  }

  private watch(resource: Resource, namespace: string | undefined, url: URL, res: ServerResponse): void {
    this.watchesOpened += 1;
    const from = url.searchParams.get('resourceVersion');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // The real server answers a watch's head at once, before any event.
    res.flushHeaders();
    const watcher: Watcher = { resource, namespace, res, bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true' };
    if (from === null || from === '' || from === '0') {
      // "Start at most recent": synthetic ADDED events for what exists, then changes.
      for (const object of this.store(resource.plural).values()) if (matches(watcher, object)) writeEvent(res, { type: 'ADDED', object: this.withKind(resource, object) });
    } else {
      const since = Number(from);
      if (since < this.compactedRv) {
        writeEvent(res, { type: 'ERROR', object: goneStatus(since, this.compactedRv) });
        res.end();
        return;
      }
      for (const event of this.history.get(resource.plural) ?? []) {
        if (event.rv > since && matches(watcher, event.object)) writeEvent(res, { type: event.type, object: this.withKind(resource, event.object) });
      }
    }
    this.watchers.add(watcher);
    res.on('close', () => this.watchers.delete(watcher));
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    if (timeout > 0) setTimeout(() => { this.watchers.delete(watcher); res.end(); }, timeout * 1000).unref();
  }

  /**
   * A SelfSubjectAccessReview (authorization.k8s.io/v1): the spec back, and whether the admin
   * token's user may do what its resourceAttributes say, with the RBAC authorizer's reason when it may.
   */
  private accessReview(body: string, res: ServerResponse): void {
    const review = JSON.parse(body) as { spec?: { resourceAttributes?: { namespace?: string; verb?: string; group?: string; resource?: string; subresource?: string; name?: string } } };
    const attributes = review.spec?.resourceAttributes;
    if (!attributes) return sendStatus(res, 422, 'Invalid', 'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified');
    const resource = attributes.subresource ? `${attributes.resource ?? ''}/${attributes.subresource}` : attributes.resource ?? '';
    const allowed = this.allows(attributes.verb ?? '', attributes.group ?? '', resource, attributes.namespace || undefined, attributes.name || undefined);
    sendJson(res, 201, {
      kind: 'SelfSubjectAccessReview', apiVersion: 'authorization.k8s.io/v1', metadata: { creationTimestamp: null }, spec: review.spec,
      status: allowed ? { allowed: true, reason: `RBAC: allowed by ClusterRoleBinding "fake-admin" of ClusterRole "fake-admin" to User "${this.adminUser}"` } : { allowed: false },
    });
  }

  private tokenReview(body: string, res: ServerResponse): void {
    const review = JSON.parse(body) as { spec?: { token?: string; audiences?: string[] } };
    const token = review.spec?.token ?? '';
    const wanted = review.spec?.audiences ?? [];
    const account = this.tokens.get(token);
    const base = { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec: review.spec ?? {} };
    const audiences = account ? (wanted.length === 0 ? account.audiences : wanted.filter((a) => account.audiences.includes(a))) : [];
    if (!account || audiences.length === 0) {
      return sendJson(res, 201, { ...base, status: { user: {}, error: account ? 'token audiences are invalid for the target audiences' : '[invalid bearer token, service account token has been invalidated]' } });
    }
    sendJson(res, 201, {
      ...base,
      status: {
        authenticated: true,
        user: {
          username: `system:serviceaccount:${account.namespace}:${account.serviceAccount}`,
          uid: randomUUID(),
          groups: ['system:serviceaccounts', `system:serviceaccounts:${account.namespace}`, 'system:authenticated'],
          ...(account.podName ? { extra: { 'authentication.kubernetes.io/pod-name': [account.podName] } } : {}),
        },
        audiences,
      },
    });
  }

  // --- helpers ---

  private store(plural: string): Map<string, KubeObject> {
    const store = this.objects.get(plural);
    if (!store) throw new Error(`FakeKubeApiServer does not serve ${plural}`);
    return store;
  }

  private stamp(object: KubeObject, previous: KubeObject | undefined): KubeObject {
    this.rv += 1;
    delete object.apiVersion;
    delete object.kind;
    object.metadata = {
      ...object.metadata,
      resourceVersion: String(this.rv),
      uid: previous?.metadata.uid ?? randomUUID(),
      creationTimestamp: previous?.metadata.creationTimestamp ?? object.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      generation: (previous?.metadata.generation ?? 0) + 1,
    };
    return object;
  }

  private record(plural: string, type: 'ADDED' | 'MODIFIED', object: KubeObject): void {
    this.recordAt(plural, type, object, this.rv);
  }

  private recordAt(plural: string, type: WatchEvent['type'], object: KubeObject, rv: number): void {
    const events = this.history.get(plural) as WatchEvent[];
    events.push({ type, object, rv });
    if (events.length > this.maxHistory) {
      const dropped = events.splice(0, events.length - this.maxHistory);
      this.compactedRv = Math.max(this.compactedRv, dropped[dropped.length - 1]?.rv ?? 0);
    }
    const resource = resources.find((r) => r.plural === plural) as Resource;
    for (const w of this.watchers) {
      if (w.resource.plural !== plural || !matches(w, object)) continue;
      writeEvent(w.res, { type, object: this.withKind(resource, object) });
    }
  }

  private withKind(resource: Resource, object: KubeObject): KubeObject {
    return { kind: resource.kind, apiVersion: apiVersionOf(resource), ...object };
  }
}

/** The RBAC verb of a request (Kubernetes docs, "Authorization": request verbs). */
function verbOf(method: string, name: string | undefined, url: URL): string {
  if (method === 'GET') return name !== undefined ? 'get' : url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1' ? 'watch' : 'list';
  return ({ POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } as Record<string, string>)[method] ?? method.toLowerCase();
}

/**
 * The Status an RBAC denial answers with, message and details as the real authorizer words them
 * (test/fixtures/kubernetes/status-forbidden*.json): the object named by its group-qualified
 * resource (`serviceexports.multicluster.x-k8s.io "cart"`), the authorizer's reason naming the
 * resource as RBAC sees it, subresource included (`serviceexports/status`), and `details.kind`
 * the plural without the subresource.
 */
export function forbiddenStatus(user: string, verb: string, resource: { group: string; plural: string }, namespace: string | undefined, name: string | undefined): KubeObject {
  const where = namespace ? ` in the namespace "${namespace}"` : ' at the cluster scope';
  const plural = resource.plural.split('/')[0] as string;
  const qualified = resource.group ? `${plural}.${resource.group}` : plural;
  return {
    kind: 'Status', apiVersion: 'v1', metadata: {} as KubeObject['metadata'], status: 'Failure',
    message: `${qualified}${name ? ` "${name}"` : ''} is forbidden: User "${user}" cannot ${verb} resource "${resource.plural}" in API group "${resource.group}"${where}`,
    reason: 'Forbidden', details: { ...(name ? { name } : {}), ...(resource.group ? { group: resource.group } : {}), kind: plural }, code: 403,
  };
}

function keyOf(object: KubeObject): string {
  return object.metadata.namespace ? `${object.metadata.namespace}/${object.metadata.name}` : object.metadata.name;
}

function matches(watcher: Watcher, object: KubeObject): boolean {
  return watcher.namespace === undefined || object.metadata.namespace === watcher.namespace;
}

/** `/api/v1/…` or `/apis/<group>/<version>/…`, cluster-wide or `namespaces/<ns>/`, then plural, name, subresource. */
function parsePath(pathname: string): { resource: Resource; namespace: string | undefined; name: string | undefined; subresource: string | undefined } | undefined {
  const parts = pathname.split('/').filter(Boolean);
  let group = '';
  let rest: string[];
  if (parts[0] === 'api') rest = parts.slice(1);
  else if (parts[0] === 'apis') {
    group = parts[1] ?? '';
    rest = parts.slice(2);
  } else return undefined;
  const version = rest.shift();
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [plural, name, subresource] = rest;
  const resource = resources.find((r) => r.group === group && r.version === version && r.plural === plural);
  if (!resource || (namespace !== undefined && !resource.namespaced)) return undefined;
  return { resource, namespace, name, subresource };
}

/** JSON Patch (RFC 6902: add, replace, remove) on any path, or JSON Merge Patch (RFC 7386). */
function patch(current: KubeObject, body: string, contentType: string): KubeObject {
  const next = structuredClone(current) as Record<string, unknown>;
  if (contentType.startsWith('application/json-patch+json')) {
    for (const op of JSON.parse(body) as { op: string; path: string; value?: unknown }[]) {
      const segments = op.path.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
      const last = segments.pop() as string;
      let target = next as Record<string, unknown>;
      for (const s of segments) target = target[s] as Record<string, unknown>;
      if (op.op === 'remove') delete target[last];
      else if (op.op === 'add' || op.op === 'replace') {
        if (op.op === 'replace' && !(last in target)) throw new Error(`replace of missing ${op.path}`);
        target[last] = op.value;
      } else throw new Error(`unsupported JSON patch op ${op.op}`);
    }
    return next as KubeObject;
  }
  if (contentType.startsWith('application/merge-patch+json')) return mergePatch(next, JSON.parse(body)) as KubeObject;
  throw new Error(`unsupported patch content type ${contentType}`);
}

function mergePatch(target: unknown, change: unknown): unknown {
  if (change === null || typeof change !== 'object' || Array.isArray(change)) return change;
  const out = (target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(change)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** The Status a create in a namespace that does not exist is answered with (404, details naming the namespace). */
export function namespaceNotFound(namespace: string): KubeObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {} as KubeObject['metadata'], status: 'Failure', message: `namespaces "${namespace}" not found`, reason: 'NotFound', details: { name: namespace, kind: 'namespaces' }, code: 404 };
}

/** The Status the real server sends in an ERROR event when a watch's resourceVersion is compacted away. */
export function goneStatus(asked: number, oldest: number): KubeObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {} as KubeObject['metadata'], status: 'Failure', message: `too old resource version: ${asked} (${oldest})`, reason: 'Expired', code: 410 };
}

function writeEvent(res: ServerResponse, event: { type: string; object: unknown }): void {
  if (!res.destroyed && !res.writableEnded) res.write(`${JSON.stringify(event)}\n`);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function sendStatus(res: ServerResponse, code: number, reason: string, message: string): void {
  sendJson(res, code, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
}
