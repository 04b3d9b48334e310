import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { loadGatewayConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'isthmus-gateway-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function clusterYaml(gateway: Record<string, unknown>): string {
  const path = join(dir, `${String(gateway.id)}.yaml`);
  writeFileSync(path, stringify({ cluster: 'west', region: 'us', zones: ['a'], trustDomain: 'mesh.test', etcd: { endpoints: ['http://127.0.0.1:2379'] }, gateways: [gateway] }));
  return path;
}

describe('the gateway admin address', () => {
  // What it tells (callers, SNIs, endpoints) is for this machine and operators, not for the other
  // clusters that reach the gateway's own address.
  test.each([
    ['an address other clusters reach: loopback instead', '10.1.2.3:15443', { host: '127.0.0.1', port: 15021 }],
    ['a loopback address: the same one (a dev mesh gives each gateway its own)', '127.0.122.1:15443', { host: '127.0.122.1', port: 15021 }],
  ])('unset, with %s', (_what, address, admin) => {
    expect(loadGatewayConfig(clusterYaml({ id: `gw-${admin.host.replace(/\./g, '-')}`, address }), undefined).admin).toEqual(admin);
  });

  test('set, it is used as given', () => {
    expect(loadGatewayConfig(clusterYaml({ id: 'gw-set', address: '10.1.2.3:15443', admin: '10.1.2.3:15099' }), undefined).admin).toEqual({ host: '10.1.2.3', port: 15099 });
  });
});
