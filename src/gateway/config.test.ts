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

describe('the advertised address (what other clusters dial, published in the gateway\'s record)', () => {
  test('unset: none, the listen address is published', () => {
    expect(loadGatewayConfig(clusterYaml({ id: 'adv-unset', address: '10.1.2.3:15443' }), undefined).advertise).toBeUndefined();
  });

  test('set in the entry, it is used; --advertise overrides it', () => {
    const path = clusterYaml({ id: 'adv-set', address: '0.0.0.0:15443', advertise: 'gw.west.example.org:443' });
    expect(loadGatewayConfig(path, undefined).advertise).toEqual({ host: 'gw.west.example.org', port: 443 });
    expect(loadGatewayConfig(path, undefined, { advertise: '10.9.9.9:30443' }).advertise).toEqual({ host: '10.9.9.9', port: 30443 });
  });

  test.each([
    ['a wildcard listen address with nothing advertised', 'adv-0', { address: '0.0.0.0:15443' }, {}, /gateways\[adv-0\]\.address listens on every interface \(0\.0\.0\.0\).*set advertise/],
    ['an advertised wildcard address', 'adv-1', { address: '10.1.2.3:15443', advertise: '0.0.0.0:15443' }, {}, /gateways\[adv-1\]\.advertise is "0\.0\.0\.0:15443": expected host:port that other clusters can dial/],
    ['an advertised port 0', 'adv-2', { address: '10.1.2.3:15443', advertise: 'gw.example.org:0' }, {}, /advertise is "gw\.example\.org:0"/],
    ['an advertised port above 65535', 'adv-3', { address: '10.1.2.3:15443', advertise: 'gw.example.org:70000' }, {}, /port from 1 to 65535/],
    ['--advertise without a port', 'adv-4', { address: '10.1.2.3:15443' }, { advertise: 'gw.example.org' }, /^--advertise is "gw\.example\.org": expected host:port/],
    ['--advertise of [::]', 'adv-5', { address: '10.1.2.3:15443' }, { advertise: '[::]:15443' }, /^--advertise is "\[::\]:15443"/],
  ])('refused: %s', (_what, id, entry, overrides, message) => {
    let error: unknown;
    try {
      loadGatewayConfig(clusterYaml({ id, ...entry }), undefined, overrides);
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ code: 'ISTHMUS_ERR_CONFIG_INVALID' });
    expect((error as Error).message).toMatch(message);
  });

  test('the schema refuses an advertise that is not host:port, naming the field', () => {
    expect(() => loadGatewayConfig(clusterYaml({ id: 'adv-schema', address: '10.1.2.3:15443', advertise: 'no port here' }), undefined)).toThrow(/\/gateways\/0\/advertise/);
  });
});

describe('drainTimeout (how long the connections carried have to end on SIGTERM)', () => {
  test('5 s unless set; 0s turns the drain off; a malformed value is refused naming the field', () => {
    expect(loadGatewayConfig(clusterYaml({ id: 'drain-default', address: '10.1.2.3:15443' }), undefined).drainTimeoutMs).toBe(5000);
    expect(loadGatewayConfig(clusterYaml({ id: 'drain-zero', address: '10.1.2.3:15443', drainTimeout: '0s' }), undefined).drainTimeoutMs).toBe(0);
    expect(loadGatewayConfig(clusterYaml({ id: 'drain-long', address: '10.1.2.3:15443', drainTimeout: '1m' }), undefined).drainTimeoutMs).toBe(60_000);
    expect(() => loadGatewayConfig(clusterYaml({ id: 'drain-bad', address: '10.1.2.3:15443', drainTimeout: '5 seconds' }), undefined)).toThrow(/\/gateways\/0\/drainTimeout/);
  });
});

describe('one replica of a gateway Deployment (flags set from the pod; docs/kubernetes.md)', () => {
  const path = () => clusterYaml({ id: 'replica', address: '0.0.0.0:15443', advertise: 'gw.west.example.org:15443', admin: '0.0.0.0:15021' });

  test('--admin-advertise is the admin address it publishes, --zone its zone; unset, the entry\'s', () => {
    const replica = loadGatewayConfig(path(), undefined, { adminAdvertise: '10.1.0.9:15021', zone: 'b' });
    expect(replica.adminAdvertise).toEqual({ host: '10.1.0.9', port: 15021 });
    expect(replica.zone).toBe('b');
    const plain = loadGatewayConfig(path(), undefined);
    expect(plain.adminAdvertise).toBeUndefined();
    expect(plain.zone).toBe('a');
  });

  test('empty values (a downward API field the pod lacks) are ignored', () => {
    const replica = loadGatewayConfig(path(), undefined, { adminAdvertise: '', zone: '', advertise: '' });
    expect(replica.zone).toBe('a');
    expect(replica.adminAdvertise).toBeUndefined();
    expect(replica.advertise).toEqual({ host: 'gw.west.example.org', port: 15443 });
  });

  test('--admin-advertise of a wildcard address, or without a port, is refused', () => {
    expect(() => loadGatewayConfig(path(), undefined, { adminAdvertise: '0.0.0.0:15021' })).toThrow(/^--admin-advertise is "0\.0\.0\.0:15021": expected host:port/);
    expect(() => loadGatewayConfig(path(), undefined, { adminAdvertise: '10.1.0.9' })).toThrow(/^--admin-advertise is "10\.1\.0\.9"/);
  });
});
