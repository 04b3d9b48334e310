import { afterAll, beforeAll, expect, test } from 'vitest';
import { isthmusOk, waitFor } from '../../test/helpers/cli.js';
import { freePort, TestMesh, type TestCluster } from '../../test/helpers/mesh.js';
import { silentLogger } from '../core/log.js';
import type { GatewayRoutes } from '../model/records.js';
import { loadGatewayConfig } from './config.js';
import { FederationClient } from './federation-client.js';
import { etcdArgs } from '../../test/helpers/etcd.js';

let mesh: TestMesh;
let cluster: TestCluster;
let client: FederationClient | undefined;

beforeAll(async () => {
  mesh = await TestMesh.create();
  const ca = await mesh.caInit('ca', 'mesh.test');
  cluster = await mesh.join('east', { index: 241, ca, gateways: [`127.0.241.1:${await freePort('127.0.241.1')}`] });
  for (const service of ['hello', 'ledger']) {
    await isthmusOk(['register', service, '-n', 'demo', '-c', cluster.config, '--address', await mesh.workload('east')]);
  }
}, 60_000);

afterAll(async () => {
  await client?.close();
  await mesh?.close();
});

const exported = (routes: GatewayRoutes | undefined) => routes?.services.filter((s) => s.endpoints.some((e) => e.healthy)).map((s) => s.name).sort();

test('after its federation restarts (numbering its routing tables afresh), a gateway routes by the new table', async () => {
  const etcd = [...etcdArgs(mesh.etcd)];
  await isthmusOk(['export', 'hello', '-n', 'demo', '--cluster', 'east', ...etcd]);
  await mesh.startFederation('east');
  const tables: GatewayRoutes[] = [];
  client = new FederationClient(loadGatewayConfig(cluster.config, undefined), silentLogger);
  // As the gateway does (run.ts): its certificate first, since the federation API wants one for every read.
  await client.startCertificates();
  void client.watchRoutes((routes) => tables.push(routes));
  await waitFor(async () => exported(tables.at(-1))?.join() === 'hello', 20_000, 'a table routing hello');
  const before = tables.at(-1)!.version;

  // While the federation is down, the cluster's exports change; the restarted one counts from the start again.
  await cluster.federation!.stop();
  await isthmusOk(['unexport', 'hello', '-n', 'demo', '--cluster', 'east', ...etcd]);
  await isthmusOk(['export', 'ledger', '-n', 'demo', '--cluster', 'east', ...etcd]);
  await mesh.startFederation('east');
  // Well inside the 30 s long poll: a client that waits on the version it held from before would still be waiting.
  await waitFor(async () => exported(tables.at(-1))?.join() === 'ledger', 10_000, 'the restarted federation\'s table routing ledger, not hello');
  expect(tables.at(-1)!.version, 'the restarted federation numbered its tables afresh').toBeLessThanOrEqual(before);
}, 90_000);
