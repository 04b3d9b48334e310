import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { isthmus } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'isthmus-gateway-advertise-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function clusterYaml(name: string, gateway: Record<string, unknown>): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, stringify({ cluster: 'west', region: 'us', zones: ['a'], trustDomain: 'mesh.test', etcd: { endpoints: ['http://127.0.0.1:1'] }, gateways: [{ id: 'gw-1', ...gateway }] }));
  return path;
}

describe('isthmus gateway --advertise: an address other clusters can dial, or a clear refusal', () => {
  test('--help names the flag', async () => {
    const result = await isthmus(['gateway', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/--advertise <host:port>/);
    expect(result.stdout).toMatch(/--admin-advertise <host:port>/);
    expect(result.stdout).toMatch(/--zone <zone>/);
  });

  test.each([
    ['a wildcard listen address and nothing advertised', { address: '0.0.0.0:15443' }, [], /gateways\[gw-1\]\.address listens on every interface \(0\.0\.0\.0\)/],
    ['--advertise of a wildcard address', { address: '127.0.0.1:15443' }, ['--advertise', '0.0.0.0:15443'], /--advertise is "0\.0\.0\.0:15443": expected host:port that other clusters can dial/],
    ['--admin-advertise of a wildcard address (a pod without its IP)', { address: '127.0.0.1:15443' }, ['--admin-advertise', '0.0.0.0:15021'], /--admin-advertise is "0\.0\.0\.0:15021": expected host:port/],
    ['advertise in the file without a port', { address: '127.0.0.1:15443', advertise: 'gw.example.org' }, [], /\/gateways\/0\/advertise/],
  ])('refused before anything starts: %s', async (name, gateway, flags, message) => {
    const result = await isthmus(['gateway', '--config', clusterYaml(name.replace(/\W+/g, '-'), gateway), ...flags], {}, { timeoutMs: 20_000 });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/^isthmus gateway: /);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
