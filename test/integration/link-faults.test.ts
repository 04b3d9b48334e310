import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { MeshProcess } from '../../src/dev/mesh-process.js';
import { etcdEnv } from '../helpers/etcd.js';
import { isthmusOk, waitFor } from '../helpers/cli.js';
import { LinkProxy, printFigure, trafficFigure } from '../helpers/faults.js';
import { steadyTraffic, viaProxy } from '../helpers/proxy.js';

// Three clusters on 127.0.154.1 (east), 127.0.155.1 (west), 127.0.156.1 (north). West's gateway
// runs as its own process with `--advertise` set to a link proxy on 127.0.157.1, so every
// connection another cluster opens to west (east's requests, north's and east's probes) crosses
// a link the test can cut, black-hole or slow. East's own hello instances are stopped, so east's
// client reaches hello in west and north; a FailoverPolicy makes west the preferred one.
// East's hello-v1 stays local to east: what "east keeps serving locally" is checked with.
let mesh: DevMesh;
let stateDir: string;
let link: LinkProxy;
let westGateway: MeshProcess;
const east = () => mesh.file.clusters.east!;
const hello = 'http://hello.demo.mesh/';

async function applyPolicy(name: string, yaml: string): Promise<void> {
  const file = join(stateDir, `${name}.yaml`);
  writeFileSync(file, yaml);
  await isthmusOk(['policy', 'apply', '-f', file], etcdEnv(mesh.file));
}

/** The clusters that answered `count` requests from east's client to `url`, as "<status> <cluster>". */
async function answeredBy(count: number, proxy = east().client.proxy, url = hello): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  for (let i = 0; i < count; i += 1) {
    const res = await viaProxy(proxy, url, 5000).catch(() => ({ status: 0, body: undefined }));
    const key = `${res.status} ${res.body?.cluster ?? '?'}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return seen;
}

const onlyFrom = (cluster: string, what: string, timeoutMs = 30_000) => waitFor(async () => {
  const seen = await answeredBy(10);
  return seen.size === 1 && seen.get(`200 ${cluster}`) === 10 ? true : undefined;
}, timeoutMs, what);

/** Each cluster still serves its own calls: west's and north's clients get their own hello, east's client its own hello-v1. */
async function servingLocally(): Promise<Record<string, Map<string, number>>> {
  const c = mesh.file.clusters;
  return {
    east: await answeredBy(5, c.east!.client.proxy, 'http://hello-v1.demo.mesh/'),
    west: await answeredBy(5, c.west!.client.proxy),
    north: await answeredBy(5, c.north!.client.proxy),
  };
}
const allLocal = { east: new Map([['200 east', 5]]), west: new Map([['200 west', 5]]), north: new Map([['200 north', 5]]) };

const firstFrom = (results: { at: number; ok: boolean; cluster?: string }[], cluster: string, after: number) =>
  results.find((r) => r.at >= after && r.ok && r.cluster === cluster);

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-link-faults-'));
  mesh = await startDevMesh({ clusters: ['east', 'west', 'north'], stateDir, trustDomain: 'dev.test', hostBase: 154, gateways: 1, versions: true, progress: () => undefined });
  for (const w of mesh.workloads.filter((x) => x.spec.cluster === 'east' && x.spec.service === 'hello')) await w.stop();

  // West's gateway again, now as a user behind a load balancer runs it: listening where it did,
  // publishing the link's address.
  const westGatewayAddress = mesh.file.clusters.west!.gateways[0]!;
  for (const g of mesh.gateways.filter((x) => x.cluster === 'west')) await g.stop();
  link = await LinkProxy.start(westGatewayAddress, { host: '127.0.157.1' });
  westGateway = new MeshProcess({
    name: 'gateway-west-behind-link', args: ['gateway', '--config', mesh.file.clusters.west!.config, '--id', 'gw-1', '--advertise', link.address],
    logFile: join(stateDir, 'logs', 'gateway-west-behind-link.log'), readyUrl: 'http://127.0.155.1:15021/readyz', onUnexpectedExit: () => undefined,
  });
  await westGateway.start();
  await applyPolicy('order', `apiVersion: isthmus.dev/v1alpha1
kind: FailoverPolicy
metadata: { name: hello-order, namespace: demo }
spec: { service: hello, order: [west, north] }
`);
}, 240_000);

afterAll(async () => {
  await westGateway?.stop();
  await link?.close();
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('a partition between east and west through the link: east fails over to north and comes back', () => {
  test('other clusters dial the address west\'s gateway advertises: east\'s route to west is the link', async () => {
    await onlyFrom('west', 'east answered by west, the preferred cluster');
    const route = await (await fetch(`http://${east().client.admin}/routes/demo/hello`)).json() as { localities: { cluster: string; endpoints: { address: string }[] }[] };
    const westEndpoints = route.localities.filter((l) => l.cluster === 'west').flatMap((l) => l.endpoints.map((e) => e.address));
    expect(westEndpoints).toEqual([link.address]);
  }, 60_000);

  test('link cut: every request still succeeds, through north; each cluster serves its own calls; healed, traffic returns to west', async () => {
    await onlyFrom('west', 'east answered by west before the cut');
    const traffic = steadyTraffic(east().client.proxy, hello, 40, 30_000);
    await new Promise((r) => setTimeout(r, 2000));
    const cutAt = Date.now();
    await link.cut();
    await new Promise((r) => setTimeout(r, 5000));
    const duringCut = await servingLocally();
    await new Promise((r) => setTimeout(r, 5000));
    const healedAt = Date.now();
    await link.heal();
    await onlyFrom('west', 'east answered by west again after the heal');
    await new Promise((r) => setTimeout(r, 2000));
    const results = await traffic.stop();

    const moved = firstFrom(results, 'north', cutAt);
    const returned = firstFrom(results, 'west', healedAt);
    printFigure(trafficFigure('partition east-west (cut)', results, cutAt, {
      moveMs: moved ? moved.at - cutAt : -1, returnMs: returned ? returned.at - healedAt : -1,
      byNorthDuringCut: results.filter((r) => r.at >= cutAt && r.at < healedAt && r.cluster === 'north').length,
      longestMs: Math.max(...results.map((r) => r.ms)),
    }));
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(duringCut).toEqual(allLocal);
    // While the link was cut nothing came from west; before it, everything did.
    expect(results.filter((r) => r.at < cutAt).every((r) => r.cluster === 'west')).toBe(true);
    expect(results.filter((r) => r.at > cutAt + 1000 && r.at < healedAt && r.cluster !== 'north')).toEqual([]);
    expect(moved).toBeDefined();
    expect(returned).toBeDefined();
  }, 120_000);
});
