import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keys } from '../../src/core/keys.js';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { FederationStore } from '../../src/federation/store.js';
import type { EventsRecord } from '../../src/model/records.js';
import { isthmus, isthmusOk, waitFor } from '../helpers/cli.js';
import { viaProxy } from '../helpers/proxy.js';
import { rawGet } from '../helpers/raw-http.js';
import { etcdEnv, storeOptions } from '../helpers/etcd.js';

// Two clusters on 127.0.111.1 (east) / 127.0.112.1 (west), as `isthmus dev up` builds them:
// ledger runs only in west, so east's client reaches it through west's gateway, with TLS end
// to end; both clients are spiffe://dev.test/ns/demo/sa/client, told apart by the cluster whose
// CA issued their certificates. Policies are applied with the real CLI and reach ledger's
// sidecar through west's federation.
let mesh: DevMesh;
let stateDir: string;
let store: FederationStore;
const client = 'spiffe://dev.test/ns/demo/sa/client';
const env = () => ({ ...etcdEnv(mesh.file), ISTHMUS_OPERATOR_DIR: mesh.file.operator });
const proxyOf = (cluster: string) => mesh.file.clusters[cluster]!.client.proxy;
const ledger = (path: string) => `http://ledger.demo.mesh${path}`;
/** A sample instance's sidecar ports sit beside its app's (dev-mesh.ts: app 18080+i, inbound 19080+i, admin 19280+i). */
const sidecarOf = (cluster: string, service: string) => {
  const [host, port] = mesh.file.clusters[cluster]!.services.find((s) => s.name === service)!.instances[0]!.split(':');
  return { inbound: `${host}:${Number(port) + 1000}`, admin: `${host}:${Number(port) + 1200}` };
};

async function apply(name: string, yaml: string): Promise<void> {
  const file = join(stateDir, `${name}.yaml`);
  writeFileSync(file, yaml);
  await isthmusOk(['policy', 'apply', '-f', file], env());
}

const ledgerAccess = `apiVersion: isthmus.dev/v1alpha1
kind: AuthorizationPolicy
metadata: { name: ledger-access, namespace: demo }
spec:
  service: ledger
  allow:
    - name: east-public
      from: { identities: ["${client}"], clusters: [east] }
      to: { methods: [GET], paths: [{ prefix: /public/ }] }
    - name: west-clients
      from: { namespaces: [demo], clusters: [west] }
  deny:
    - name: no-admin
      to: { paths: [{ prefix: /admin }] }
`;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-authz-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', gateways: 1, hostBase: 111, reportIntervalMs: 1000, progress: () => undefined });
  store = await FederationStore.connect(storeOptions(mesh.file));
}, 120_000);

afterAll(async () => {
  await store?.close();
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('authorization by identity, across clusters', () => {
  test('without a policy both clusters\' clients reach ledger', async () => {
    for (const cluster of ['east', 'west']) expect((await viaProxy(proxyOf(cluster), ledger('/'))).status).toBe(200);
  });

  test('a disallowed caller across clusters gets 403 with the reason; the allowed ones get through', async () => {
    await apply('ledger-access', ledgerAccess);
    const denied = await waitFor(async () => {
      const res = await viaProxy(proxyOf('east'), ledger('/'));
      return res.status === 403 ? res : undefined;
    }, 10_000, 'east\'s client refused by ledger');
    expect(denied.value.headers['x-isthmus-error']).toBe('ISTHMUS_ERR_AUTHZ_DENIED');
    expect(denied.value.body?.error).toEqual({
      code: 'ISTHMUS_ERR_AUTHZ_DENIED',
      message: `${client} (cluster east) may not GET / on demo/ledger: no rule allows it (demo/ledger has an allow list: AuthorizationPolicy demo/ledger-access)`,
    });
    // The same identity from east is allowed where its rule allows it, through the gateway.
    const allowed = await viaProxy(proxyOf('east'), ledger('/public/report'));
    expect({ status: allowed.status, cluster: allowed.body?.cluster, path: allowed.body?.path }).toEqual({ status: 200, cluster: 'west', path: '/public/report' });
    expect(allowed.body?.caller).toContain(`URI=${client}`);
    // West's client is allowed everything but /admin.
    expect((await viaProxy(proxyOf('west'), ledger('/'))).status).toBe(200);
    const admin = await viaProxy(proxyOf('west'), ledger('/admin/keys'));
    expect({ status: admin.status, message: admin.body?.error?.message }).toEqual({
      status: 403, message: `${client} (cluster west) may not GET /admin/keys on demo/ledger: denied by AuthorizationPolicy demo/ledger-access deny rule 0 (no-admin)`,
    });
  }, 30_000);

  // Sent as raw bytes to east's client proxy: neither the test nor the client sidecar changes
  // the path, so what reaches ledger's inbound in west is exactly what was typed.
  test.each([
    ['/public/../admin', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'deny rule 0 (no-admin)'],
    ['/public/%2e%2e/admin', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'deny rule 0 (no-admin)'],
    ['/public/%2E%2E/admin', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'deny rule 0 (no-admin)'],
    ['/public/.%2e/admin', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'deny rule 0 (no-admin)'],
    ['/public//../admin', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'deny rule 0 (no-admin)'],
    ['//admin', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'deny rule 0 (no-admin)'],
    ['/%61dmin', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'deny rule 0 (no-admin)'],
    ['/public/../secret', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'no rule allows it'],
    ['/PUBLIC/report', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'no rule allows it'],
    ['/admin?/public/', 403, 'ISTHMUS_ERR_AUTHZ_DENIED', 'deny rule 0 (no-admin)'],
    ['/public/..%2Fadmin', 400, 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED', 'escaped slash'],
    ['/public/%2e%2e%2fadmin', 400, 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED', 'escaped slash'],
    ['/public/..%5Cadmin', 400, 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED', 'escaped backslash'],
    ['/public/..\\admin', 400, 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED', 'backslash'],
    ['/public/report.', 400, 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED', 'ends in a dot'],
    ['/public/report%2e', 400, 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED', 'ends in a dot'],
    ['/public/%zz', 400, 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED', 'malformed'],
  ])('east → ledger %s: %d %s', async (target, status, code, reason) => {
    const res = await rawGet(`http://${proxyOf('east')}`, ledger(target));
    expect(res.status).toBe(status);
    expect(res.head.toLowerCase()).toContain(`x-isthmus-error: ${code.toLowerCase()}`);
    expect(JSON.parse(res.body).error.message).toContain(reason);
  });

  test.each([
    ['/public/x/../report', '/public/report'],
    ['/public//report', '/public/report'],
    ['/public/./report', '/public/report'],
    ['/public/%72eport', '/public/report'],
    ['/public/report?q=/../admin', '/public/report?q=/../admin'],
    ['/public/report#/../../admin', '/public/report'],
  ])('east → ledger %s reaches the app as %s (what was matched is what the app gets)', async (target, path) => {
    const res = await rawGet(`http://${proxyOf('east')}`, ledger(target));
    expect({ status: res.status, path: JSON.parse(res.body).path }).toEqual({ status: 200, path });
  });

  test('the refusals are counted at ledger\'s sidecar and reach the dashboard\'s events', async () => {
    const metrics = await (await fetch(`http://${sidecarOf('west', 'ledger').admin}/metrics`)).text();
    const count = (reason: string, rule: string) => Number(new RegExp(`^isthmus_authz_denied_total\\{[^}]*destination_service="demo/ledger",reason="${reason}",rule="${rule.replace(/[()/]/g, '\\$&')}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
    expect(count('no_rule_allows', '')).toBeGreaterThanOrEqual(3);
    expect(count('deny_rule', 'AuthorizationPolicy demo/ledger-access deny rule 0 (no-admin)')).toBeGreaterThanOrEqual(8);
    expect(count('path_refused', '')).toBeGreaterThanOrEqual(7);
    const event = await waitFor(async () => {
      const record = (await store.get<EventsRecord>(keys.eventsOf('west')))?.value;
      return record?.events.find((e) => e.kind === 'authz-denied' && e.summary === `demo/ledger refused ${client} (cluster east): no rule allows it`);
    }, 15_000, 'an authz-denied event in west\'s events');
    expect(event.value.service).toBe('demo/ledger');
  }, 30_000);

  test('isthmus explain shows the rules and the mTLS mode; isthmus can answers with the rule', async () => {
    const explained = await isthmusOk(['explain', 'ledger', '-n', 'demo', '--sidecar', mesh.file.clusters.east!.client.admin]);
    expect(explained.stdout).toContain('authorization (at the service\'s inbound): mTLS strict, default allow (no MeshNamespace)');
    expect(explained.stdout).toContain('deny   AuthorizationPolicy demo/ledger-access deny rule 0 (no-admin): from anyone to path /admin*');
    expect(explained.stdout).toContain(`allow  AuthorizationPolicy demo/ledger-access allow rule 0 (east-public): from identity ${client}, cluster east to method GET, path /public/*`);
    expect(explained.stdout).toContain('otherwise denied (an allow list is in force)');

    // isthmus trace from east's client: the destination hop says authorization refused it, and why.
    const trace = await isthmus(['trace', 'ledger', '-n', 'demo', '--from', 'east', '--sidecar', mesh.file.clusters.east!.client.admin, '--path', '/admin'], env());
    expect(trace.stdout).toContain(`authorization REFUSED the request — ${client} (cluster east) may not GET /admin on demo/ledger: denied by AuthorizationPolicy demo/ledger-access deny rule 0 (no-admin)`);

    const no = await isthmus(['can', 'demo/client', 'ledger.demo', '--from-cluster', 'east', '--path', '/public/../admin', '-o', 'json'], env());
    expect(no.code).toBe(1);
    expect(JSON.parse(no.stdout)).toMatchObject({ allowed: false, source: client, path: '/admin', rule: 'AuthorizationPolicy demo/ledger-access deny rule 0 (no-admin)', code: 'ISTHMUS_ERR_AUTHZ_DENIED', mtls: 'strict' });
    const yes = await isthmus(['can', client, 'ledger.demo', '--from-cluster', 'east', '--path', '/public/report'], env());
    expect(yes.code).toBe(0);
    expect(yes.stdout).toContain(`yes: ${client} (cluster east) may GET /public/report on demo/ledger\n  allowed by AuthorizationPolicy demo/ledger-access allow rule 0 (east-public)`);
    const post = await isthmus(['can', 'demo/client', 'ledger.demo', '--from-cluster', 'east', '--method', 'POST', '--path', '/public/report'], env());
    expect({ code: post.code, line: post.stdout.split('\n')[0] }).toEqual({ code: 1, line: `no: ${client} (cluster east) may not POST /public/report on demo/ledger` });
  }, 30_000);
});

describe('mTLS mode per namespace', () => {
  const plain = (service: string, path: string) => rawGet(`http://${sidecarOf('west', service).inbound}`, path, 3000).catch((err: Error) => ({ status: Number.NaN, head: '', body: err.message }));

  test('strict (the default): a plain-text caller at hello\'s inbound gets no HTTP answer', async () => {
    expect((await plain('hello', '/')).status).toBeNaN();
  });

  test('permissive: the plain-text caller is accepted, without an identity; ledger\'s allow list still refuses it; mesh callers are unchanged', async () => {
    await apply('demo-permissive', 'apiVersion: isthmus.dev/v1alpha1\nkind: MeshNamespace\nmetadata: { name: demo }\nspec: { mtls: { mode: permissive } }\n');
    const accepted = await waitFor(async () => {
      const res = await plain('hello', '/hello-plain');
      return res.status === 200 ? res : undefined;
    }, 10_000, 'hello\'s inbound to take plain text');
    expect(JSON.parse(accepted.value.body)).toMatchObject({ service: 'hello', path: '/hello-plain', caller: null });
    const refused = await plain('ledger', '/public/report');
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).error.message).toBe('a plain-text caller may not GET /public/report on demo/ledger: no rule allows it (demo/ledger has an allow list: AuthorizationPolicy demo/ledger-access)');
    expect((await viaProxy(proxyOf('east'), ledger('/public/report'))).status).toBe(200);
    expect((await viaProxy(proxyOf('east'), 'http://hello.demo.mesh/')).status).toBe(200);
    const explained = await isthmusOk(['explain', 'hello', '-n', 'demo', '--sidecar', mesh.file.clusters.west!.client.admin]);
    expect(explained.stdout).toContain('mTLS permissive, default allow (MeshNamespace demo)');
  }, 30_000);

  test('back to strict, and a namespace that denies by default: plain text refused again, hello (no allow list) denies every caller', async () => {
    await apply('demo-permissive', 'apiVersion: isthmus.dev/v1alpha1\nkind: MeshNamespace\nmetadata: { name: demo }\nspec: { mtls: { mode: strict }, authorization: { default: deny } }\n');
    const refused = await waitFor(async () => {
      const res = await viaProxy(proxyOf('west'), 'http://hello.demo.mesh/');
      return res.status === 403 ? res : undefined;
    }, 10_000, 'hello denying by default');
    expect(refused.value.body?.error?.message).toBe(`${client} (cluster west) may not GET / on demo/hello: no rule allows it (namespace demo denies by default: MeshNamespace demo)`);
    expect((await plain('hello', '/')).status).toBeNaN();
    // ledger's own allow list still decides for ledger.
    expect((await viaProxy(proxyOf('west'), ledger('/'))).status).toBe(200);
    // A MeshNamespace is named by its namespace alone.
    expect((await isthmusOk(['policy', 'get', 'meshnamespace', 'demo'], env())).stdout).toMatch(/authorization:\s+default: deny/);
  }, 30_000);

  test('an SMI TrafficTarget opens hello to the clients for its HTTPRouteGroup\'s routes; without the group applied it allows nothing, and apply says so', async () => {
    const target = `apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: { name: clients-read-hello, namespace: demo }
spec:
  destination: { kind: ServiceAccount, name: hello, namespace: demo }
  sources: [{ kind: ServiceAccount, name: client, namespace: demo }]
  rules: [{ kind: HTTPRouteGroup, name: hello-routes, matches: [read] }]
`;
    const file = join(stateDir, 'hello-target.yaml');
    writeFileSync(file, target);
    const applied = await isthmusOk(['policy', 'apply', '-f', file], env());
    expect(applied.stderr).toContain('warning: TrafficTarget demo/clients-read-hello names HTTPRouteGroup demo/hello-routes, which is not applied (yet?)');
    const noGroup = await isthmus(['can', 'demo/client', 'hello.demo', '--path', '/greet'], env());
    expect({ code: noGroup.code, line: noGroup.stdout.split('\n')[1] }).toEqual({ code: 1, line: '  no rule allows it (demo/hello has an allow list: TrafficTarget demo/clients-read-hello)' });

    await apply('hello-routes', `apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: { name: hello-routes, namespace: demo }
spec:
  matches:
    - { name: read, pathRegex: "/greet(/.*)?", methods: [GET] }
`);
    const allowed = await waitFor(async () => {
      const res = await viaProxy(proxyOf('east'), 'http://hello.demo.mesh/greet/you');
      return res.status === 200 ? res : undefined;
    }, 10_000, 'hello allowing the clients\' reads');
    expect(allowed.value.body?.path).toBe('/greet/you');
    const other = await viaProxy(proxyOf('east'), 'http://hello.demo.mesh/other');
    expect({ status: other.status, message: other.body?.error?.message }).toEqual({
      status: 403, message: `${client} (cluster east) may not GET /other on demo/hello: no rule allows it (demo/hello has an allow list: TrafficTarget demo/clients-read-hello)`,
    });
    const can = await isthmus(['can', 'demo/client', 'hello.demo', '--path', '/greet/../greet/x', '-o', 'json'], env());
    expect(JSON.parse(can.stdout)).toMatchObject({ allowed: true, path: '/greet/x', rule: 'TrafficTarget demo/clients-read-hello route hello-routes/read' });
  }, 30_000);
});
