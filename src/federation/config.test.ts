import { describe, expect, test } from 'vitest';
import { parseClusterConfig } from './config.js';
import { isIsthmusError } from '../core/errors.js';

const minimal = `
cluster: east
region: us-east
zones: [a, b]
trustDomain: east.example
etcd: { endpoints: [http://127.0.0.1:2379] }
`;

function errorOf(text: string) {
  try {
    parseClusterConfig(text, '/tmp/cluster.yaml');
  } catch (err) {
    if (isIsthmusError(err)) return err;
    throw err;
  }
  throw new Error('expected the config to be refused');
}

describe('cluster config', () => {
  test('applies defaults and freezes the result', () => {
    const loaded = parseClusterConfig(minimal, '/tmp/x/cluster.yaml');
    expect(loaded.config.federation.apiPort).toBe(15010);
    expect(loaded.leaseTtlSeconds).toBe(15);
    expect(loaded.workloadTtlSeconds).toBe(86400);
    expect(loaded.caDir).toBe('/tmp/x');
    expect(Object.isFrozen(loaded.config.federation)).toBe(true);
    expect(() => { (loaded.config as { cluster: string }).cluster = 'west'; }).toThrow();
  });

  test.each([
    ['an unknown key', `${minimal}\nfederaton: {}\n`, 'ISTHMUS_ERR_CONFIG_INVALID', '/federaton: unknown field'],
    ['a bad cluster name', minimal.replace('cluster: east', 'cluster: East_1'), 'ISTHMUS_ERR_CONFIG_INVALID', '/cluster'],
    ['a missing field', minimal.replace('region: us-east\n', ''), 'ISTHMUS_ERR_CONFIG_INVALID', '/region'],
    ['a bad duration', `${minimal}\nfederation: { leaseTtl: 15 }\n`, 'ISTHMUS_ERR_CONFIG_INVALID', '/federation/leaseTtl'],
    ['broken YAML', 'cluster: [east\n', 'ISTHMUS_ERR_CONFIG_UNREADABLE', 'not valid YAML'],
    ['a list instead of a mapping', '- a\n- b\n', 'ISTHMUS_ERR_CONFIG_INVALID', 'must be a YAML mapping'],
    ['an instance in a zone the cluster lacks', `${minimal}\nservices: [{ name: hello, instances: [{ address: "127.0.0.1:1", zone: c }] }]\n`, 'ISTHMUS_ERR_CONFIG_INVALID', 'zone "c"'],
  ])('refuses %s, naming the field', (_name, text, code, fragment) => {
    const err = errorOf(text);
    expect(err.code).toBe(code);
    expect(err.message).toContain('/tmp/cluster.yaml');
    expect(err.message).toContain(fragment);
  });
});
