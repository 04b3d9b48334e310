import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { etcdEnv } from '../helpers/etcd.js';
import { viaProxy } from '../helpers/proxy.js';

// Two clusters on 127.0.127.1 (east) / 127.0.128.1 (west), as `isthmus dev up --versions`
// builds them: hello-<cluster>-1 is labelled version=v1, hello-<cluster>-2 version=v2. Then
// east's hello-east-2 is registered again as version=v1 (the CLI a user runs), so v2 instances
// live only in west. A 50/50 split of hello between the ServiceSubsets v1 and v2, from east's
// client: v1 stays in east, v2 crosses to west's gateway, which reaches only west's v2 instance.
// (The sample answers with the instance that served; its own `version` field is its start-up label.)
let mesh: DevMesh;
let stateDir: string;
const env = () => ({ ...etcdEnv(mesh.file), ISTHMUS_OPERATOR_DIR: mesh.file.operator });
const proxy = () => mesh.file.clusters.east!.client.proxy;

const subsets = `apiVersion: isthmus.dev/v1alpha1
kind: ServiceSubset
metadata: { name: v1, namespace: demo }
spec: { service: hello, labels: { version: v1 } }
---
apiVersion: isthmus.dev/v1alpha1
kind: ServiceSubset
metadata: { name: v2, namespace: demo }
spec: { service: hello, labels: { version: v2 } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: hello-subsets, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: hello }]
  rules:
    - backendRefs:
        - { group: isthmus.dev, kind: ServiceSubset, name: v1, weight: 50 }
        - { group: isthmus.dev, kind: ServiceSubset, name: v2, weight: 50 }
`;

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-subset-split-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', gateways: 1, hostBase: 127, versions: true, progress: () => undefined });
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('a split between label subsets spans clusters', () => {
  test('50/50 between v1 and v2 where v2 lives only in west: v2 requests cross to west\'s v2 instance and nowhere else; the share is within a sound bound', async () => {
    const eastV2 = mesh.workloads.find((w) => w.spec.cluster === 'east' && w.spec.instance === 'hello-east-2')!;
    await isthmusOk(['register', 'hello', '-n', 'demo', '-c', mesh.file.clusters.east!.config, '--address', `${eastV2.spec.host}:${eastV2.spec.inboundPort}`, '--zone', eastV2.spec.zone, '--label', 'version=v1'], env());
    const file = join(stateDir, 'subsets.yaml');
    writeFileSync(file, subsets);
    await isthmusOk(['policy', 'apply', '-f', file], env());

    const served = async () => {
      const res = await viaProxy(proxy(), 'http://hello.demo.mesh/');
      expect(res.status).toBe(200);
      return `${res.body.cluster}/${res.body.instance}`;
    };
    // Once the relabelling, the export's label sets and the policies have all arrived, v2 is west's.
    await waitFor(async () => ((await served()) === 'west/hello-west-2' ? true : undefined), 20_000, 'a v2 request served in west');

    const n = 200;
    const counts = new Map<string, number>();
    for (let i = 0; i < n; i += 1) {
      const where = await served();
      counts.set(where, (counts.get(where) ?? 0) + 1);
    }
    // v1 stays in east (both its instances are v1 now); v2 only at west's v2 instance, never west's v1.
    expect([...counts.keys()].sort()).toEqual(expect.arrayContaining(['west/hello-west-2']));
    for (const where of counts.keys()) expect(['east/hello-east-1', 'east/hello-east-2', 'west/hello-west-2']).toContain(where);
    // Binomial(200, 0.5): sd ≈ 7.1; 5 sd either side is wrong by chance far less than once in a million runs.
    const v2 = counts.get('west/hello-west-2') ?? 0;
    expect(v2).toBeGreaterThanOrEqual(65);
    expect(v2).toBeLessThanOrEqual(135);
  }, 90_000);

  test('west\'s gateway refuses a subset it has no ServiceSubset for, counted as unknown-subset', async () => {
    const west = mesh.file.clusters.west!;
    const [host, port] = west.gateways[0]!.split(':');
    const admin = `http://${west.host}:15021`;
    const refusedBefore = ((await (await fetch(`${admin}/stats`)).json()) as { refused: Record<string, number> }).refused['unknown-subset'] ?? 0;
    const outcome = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: host!, port: Number(port), servername: 'nosuch.hello.demo.svc.west.isthmus', rejectUnauthorized: false });
      socket.once('secureConnect', () => { socket.destroy(); resolve('connected'); });
      socket.once('error', (err) => resolve(err.message));
      socket.once('close', () => resolve('closed'));
    });
    expect(outcome).toMatch(/unrecognized name|alert number 112/i);
    const refusedAfter = ((await (await fetch(`${admin}/stats`)).json()) as { refused: Record<string, number> }).refused['unknown-subset'] ?? 0;
    expect(refusedAfter - refusedBefore).toBe(1);
  }, 30_000);
});
