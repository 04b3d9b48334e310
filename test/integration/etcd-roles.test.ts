import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { keys, recordVersion } from '../../src/core/keys.js';
import { FederationStore } from '../../src/federation/store.js';
import type { EtcdClientFiles } from '../../src/trust/etcd-ca.js';
import { apiClient, isthmus, isthmusOk, waitFor } from '../helpers/cli.js';
import { etcdArgs, rawEtcd } from '../helpers/etcd.js';
import { TestMesh, type TestCluster, type TestOperator } from '../helpers/mesh.js';

// etcd locked down as docs/security.md ("etcd") says, with the script it gives
// (deploy/etcd/roles.sh): the operator joins and exports, each cluster's federation runs with a
// client certificate whose user may write only that cluster's records, and cannot write another
// cluster's exports or a trust bundle.
const run = promisify(execFile);
const rolesScript = fileURLToPath(new URL('../../deploy/etcd/roles.sh', import.meta.url));
let operator: TestOperator;
let mesh: TestMesh;
let east: TestCluster;
let west: TestCluster;
let eastFederation: EtcdClientFiles;
let root: EtcdClientFiles;


beforeAll(async () => {
  mesh = await TestMesh.create();
  root = mesh.etcd.client('root');
  eastFederation = mesh.etcd.client('federation-east');
  await run(rolesScript, [mesh.etcd.url, root.ca, root.cert, root.key, 'east', 'west']);
  const ca = await mesh.caInit('ca', 'mesh.test');
  operator = await mesh.operator(ca);
  // The test etcd's operator certificate has common name "operator": the script's operator user.
  // join writes as the operator and records the federation's own certificate in cluster.yaml.
  east = await mesh.join('east', { index: 133, ca, federationEtcd: eastFederation });
  west = await mesh.join('west', { index: 134, ca, federationEtcd: mesh.etcd.client('federation-west') });
  expect(parse(readFileSync(east.config, 'utf8'))).toMatchObject({ etcd: { endpoints: [mesh.etcd.url], ca: eastFederation.ca, cert: eastFederation.cert, key: eastFederation.key } });
  await isthmusOk(['register', 'ledger', '-n', 'demo', '-c', west.config, '--address', await mesh.workload('west')]);
  await Promise.all(['east', 'west'].map((n) => mesh.startFederation(n)));
}, 120_000);

afterAll(async () => {
  await mesh?.close();
});

/** A federation's user may write its own exports and not east's. */
async function northWritesOnlyItsOwn(store: FederationStore): Promise<void> {
  await store.put(keys.export('north', 'demo', 'x'), { version: recordVersion });
  await store.delete(keys.export('north', 'demo', 'x'));
  await expect(store.put(keys.export('east', 'demo', 'x'), { version: recordVersion })).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ETCD_PERMISSION_DENIED' });
}

describe('etcd with a role per writer', () => {
  test('federations running as their own etcd users publish and see each other; the operator exports', async () => {
    await isthmusOk(['export', 'ledger', '-n', 'demo', '--cluster', 'west', ...etcdArgs(mesh.etcd)]);
    const api = apiClient(east.rootCert, operator.tls); // the API's reads want a mesh certificate
    try {
      await waitFor(async () => {
        const catalog = (await api.get(`https://${east.apiAddress}/v1/catalog`)).body as { services: { name: string; clusters: { cluster: string }[] }[] };
        return catalog.services.find((s) => s.name === 'ledger')?.clusters.some((c) => c.cluster === 'west');
      }, 15_000, 'west\'s ledger in east\'s catalog');
    } finally {
      await api.close();
    }
    for (const cluster of [east, west]) expect(cluster.federation?.logs()).not.toMatch(/permission denied|PERMISSION_DENIED/i);
    // `isthmus check --config` takes etcd and the federation's certificate from cluster.yaml.
    const check = await isthmus(['check', '--config', east.config, '-o', 'json']);
    const checks = (JSON.parse(check.stdout) as { checks: { name: string; status: string; detail: string }[] }).checks;
    expect(checks.find((c) => c.name === 'etcd reachable and writable'), check.stdout).toMatchObject({ status: 'ok' });
  });

  test('a cluster\'s credential cannot write another cluster\'s exports, a trust bundle, or a cluster whose name starts with its own', async () => {
    const store = await FederationStore.connect({ endpoints: mesh.etcd.url, tls: eastFederation });
    try {
      await store.put(keys.export('east', 'demo', 'mine'), { version: recordVersion });
      await store.delete(keys.export('east', 'demo', 'mine'));
      for (const key of [keys.export('west', 'demo', 'ledger'), keys.bundle('mesh.test'), keys.intermediate('east'), keys.alive('eastern'), keys.policy('slo', 'demo', 'x')]) {
        await expect(store.put(key, { version: recordVersion }), key).rejects.toMatchObject({
          code: 'ISTHMUS_ERR_ETCD_PERMISSION_DENIED',
          message: expect.stringContaining('client-federation-east.pem'),
        });
      }
      await expect(store.delete(keys.export('west', 'demo', 'ledger'))).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ETCD_PERMISSION_DENIED' });
    } finally {
      await store.close();
    }
    // etcdctl with the same certificate is refused the same way.
    const put = run('etcdctl', ['--endpoints', mesh.etcd.url, '--cacert', eastFederation.ca, '--cert', eastFederation.cert, '--key', eastFederation.key, 'put', keys.bundle('mesh.test'), '{"version":1}']);
    await expect(put).rejects.toMatchObject({ stderr: expect.stringMatching(/permission denied/) });
    const raw = rawEtcd(mesh.etcd);
    try {
      expect(JSON.parse((await raw.get(keys.bundle('mesh.test')).string())!)).toMatchObject({ trustDomain: 'mesh.test' });
      // A cluster joining later: the script run again with its name adds its user and role.
      await run(rolesScript, [mesh.etcd.url, root.ca, root.cert, root.key, 'north']);
      const north = await FederationStore.connect({ endpoints: mesh.etcd.url, tls: mesh.etcd.client('federation-north') });
      try {
        await northWritesOnlyItsOwn(north);
      } finally {
        await north.close();
      }
      expect(await raw.get(keys.export('west', 'demo', 'ledger')).string()).not.toBeNull();
    } finally {
      raw.close();
    }
  });
});
