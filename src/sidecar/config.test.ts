import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { stringify } from 'yaml';
import { appPortsOf, loadSidecarConfig } from './config.js';
import { inboundKeepAliveMs, resolveTimeouts } from './timeouts.js';

const dir = mkdtempSync(join(tmpdir(), 'isthmus-sidecar-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'root-cert.pem'), 'ROOT\n');
writeFileSync(join(dir, 'token'), 'tok-123\n');

const write = (name: string, extra: Record<string, unknown>) => {
  const path = join(dir, name);
  writeFileSync(path, stringify({
    cluster: 'east', zone: 'east-a', namespace: 'demo', service: 'hello',
    federation: { url: 'https://127.0.0.1:15010', rootCert: 'root-cert.pem' },
    tokenFile: 'token', stateDir: 'state',
    outbound: { listen: '127.0.0.1:15001' }, admin: { listen: '127.0.0.1:15020' },
    ...extra,
  }));
  return path;
};

describe('loadSidecarConfig', () => {
  test('reads the token and root certificate relative to the file; no reportInterval leaves the default to the sidecar', () => {
    const config = loadSidecarConfig(write('plain.yaml', {}));
    expect(config).toMatchObject({ bootstrapToken: 'tok-123', rootCertPem: 'ROOT\n', stateDirPath: join(dir, 'state'), listeners: [] });
    expect(config.reportIntervalMs).toBeUndefined();
    expect(Object.isFrozen(config)).toBe(true);
  });

  test('without an admin section the admin port listens on loopback (docs/security.md)', () => {
    const path = join(dir, 'no-admin.yaml');
    writeFileSync(path, stringify({
      cluster: 'east', zone: 'east-a', namespace: 'demo', service: 'hello',
      federation: { url: 'https://127.0.0.1:15010', rootCert: 'root-cert.pem' }, tokenFile: 'token', stateDir: 'state',
      outbound: { listen: '127.0.0.1:15001' },
    }));
    expect(loadSidecarConfig(path).admin).toEqual({ listen: '127.0.0.1:15020' });
  });

  test.each([['1s', 1000], ['5s', 5000], ['2m', 120_000]])('reportInterval %s is %d ms', (text, ms) => {
    expect(loadSidecarConfig(write(`report-${text}.yaml`, { reportInterval: text })).reportIntervalMs).toBe(ms);
  });

  test.each([['500ms'], ['5'], ['0s'], [5]])('reportInterval %j is refused, naming the field', (value) => {
    expect(() => loadSidecarConfig(write('bad.yaml', { reportInterval: value }))).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_CONFIG_INVALID',
      message: expect.stringContaining('/reportInterval'),
    }));
  });

  test.each([[undefined, 5000], ['0s', 0], ['30s', 30_000]])('timeouts.drain %j: the inbound drains for %d ms on SIGTERM', (drain, ms) => {
    const config = loadSidecarConfig(write(`drain-${String(drain)}.yaml`, drain === undefined ? {} : { timeouts: { drain } }));
    expect(resolveTimeouts(config.timeouts).drainMs).toBe(ms);
  });

  test.each([[undefined, 600_000, 605_000], ['30m', 1_800_000, 1_805_000], ['10s', 10_000, 65_000]])('timeouts.upstreamIdle %j: pools to other sidecars kept %d ms idle, the inbound keeps its side %d ms', (upstreamIdle, ms, inboundMs) => {
    const config = loadSidecarConfig(write(`upstream-idle-${String(upstreamIdle)}.yaml`, upstreamIdle === undefined ? {} : { timeouts: { upstreamIdle } }));
    const timeouts = resolveTimeouts(config.timeouts);
    expect(timeouts.upstreamIdleMs).toBe(ms);
    // Longer than the caller's pool, or than an app's keep-alive (connectionIdle, 60 s by default): the caller closes first.
    expect(inboundKeepAliveMs(timeouts)).toBe(inboundMs);
  });

  test('timeouts.drain that is not a duration is refused, naming the field', () => {
    expect(() => loadSidecarConfig(write('bad-drain.yaml', { timeouts: { drain: '5' } }))).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_CONFIG_INVALID',
      message: expect.stringContaining('/timeouts/drain'),
    }));
  });

  test('outbound.upgradeToHttp2: absent, off; true, read as given; anything but a boolean refused, naming the field', () => {
    expect(loadSidecarConfig(write('no-upgrade.yaml', {})).outbound.upgradeToHttp2).toBeUndefined();
    expect(loadSidecarConfig(write('upgrade.yaml', { outbound: { listen: '127.0.0.1:15001', upgradeToHttp2: true } })).outbound.upgradeToHttp2).toBe(true);
    // --upgrade-to-http2 (what isthmus inject passes for the pod annotation) over a file without it.
    expect(loadSidecarConfig(write('no-upgrade-2.yaml', {}), { upgradeToHttp2: true }).outbound.upgradeToHttp2).toBe(true);
    expect(() => loadSidecarConfig(write('bad-upgrade.yaml', { outbound: { listen: '127.0.0.1:15001', upgradeToHttp2: 'yes' } }))).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_CONFIG_INVALID',
      message: expect.stringContaining('/outbound/upgradeToHttp2'),
    }));
  });

  test('accessLog: absent, none; a file relative to the config; /dev/stdout as is; --access-log over the file\'s; a bad format refused naming the field', () => {
    expect(loadSidecarConfig(write('no-access.yaml', {})).accessLog).toBeUndefined();
    expect(loadSidecarConfig(write('access-file.yaml', { accessLog: { file: 'logs/access.json' } })).accessLog).toEqual({ file: join(dir, 'logs/access.json') });
    const stdout = write('access-stdout.yaml', { accessLog: { file: '/dev/stdout', format: 'text' } });
    expect(loadSidecarConfig(stdout).accessLog).toEqual({ file: '/dev/stdout', format: 'text' });
    expect(loadSidecarConfig(stdout, { accessLog: '/dev/stderr' }).accessLog).toEqual({ file: '/dev/stderr', format: 'text' });
    expect(loadSidecarConfig(write('access-flag.yaml', {}), { accessLog: '/dev/stdout' }).accessLog).toEqual({ file: '/dev/stdout' });
    expect(() => loadSidecarConfig(write('access-bad.yaml', { accessLog: { file: '/dev/stdout', format: 'xml' } }))).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_CONFIG_INVALID',
      message: expect.stringContaining('/accessLog/format'),
    }));
  });

  test('listeners and the inbound may declare protocol tcp and an idle timeout', () => {
    const config = loadSidecarConfig(write('tcp.yaml', {
      inbound: { listen: '127.0.0.1:15006', app: '127.0.0.1:6379', appProtocol: 'tcp', idleTimeout: '10m' },
      listeners: [{ service: 'redis', namespace: 'demo', listen: '127.0.0.1:16379', protocol: 'tcp' }, { service: 'ledger', namespace: 'demo', listen: '127.0.0.1:15101' }],
    }));
    expect(config.inbound).toMatchObject({ appProtocol: 'tcp', idleTimeout: '10m' });
    expect(config.listeners.map((l) => l.protocol)).toEqual(['tcp', undefined]);
  });

  test.each([
    [{ listeners: [{ service: 'redis', namespace: 'demo', listen: '127.0.0.1:16379', protocol: 'udp' }] }, '/listeners/0/protocol'],
    [{ inbound: { listen: '127.0.0.1:15006', app: '127.0.0.1:6379', appProtocol: 'grpc' } }, '/inbound/appProtocol'],
    // The old name of the field is refused, naming it (unknown keys are never ignored).
    [{ inbound: { listen: '127.0.0.1:15006', app: '127.0.0.1:6379', protocol: 'tcp' } }, '/inbound/protocol'],
    [{ inbound: { listen: '127.0.0.1:15006', app: '127.0.0.1:6379', appProtocol: 'tcp', idleTimeout: 'soon' } }, '/inbound/idleTimeout'],
  ])('%j is refused, naming %s', (extra, field) => {
    expect(() => loadSidecarConfig(write('bad-protocol.yaml', extra))).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_CONFIG_INVALID',
      message: expect.stringContaining(field),
    }));
  });

  test.each([['http'], ['h2c'], ['tcp']])('inbound.appProtocol %s is accepted', (appProtocol) => {
    expect(loadSidecarConfig(write(`app-${appProtocol}.yaml`, { inbound: { listen: '127.0.0.1:15006', app: '127.0.0.1:9000', appProtocol } })).inbound?.appProtocol).toBe(appProtocol);
  });

  test.each([['grpc'], ['h2'], ['HTTP']])('inbound.appProtocol %j is refused, naming the field', (appProtocol) => {
    expect(() => loadSidecarConfig(write('bad-app.yaml', { inbound: { listen: '127.0.0.1:15006', app: '127.0.0.1:9000', appProtocol } }))).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_CONFIG_INVALID',
      message: expect.stringContaining('/inbound/appProtocol'),
    }));
  });
});

describe('loadSidecarConfig with command-line values (a config shared by a namespace\'s pods)', () => {
  test('namespace, service, zone and the app address replace the file\'s; inbound.listen stays the file\'s', () => {
    const path = write('shared.yaml', { inbound: { listen: '0.0.0.0:15007', app: '127.0.0.1:8080' } });
    const config = loadSidecarConfig(path, { namespace: 'shop', service: 'cart', zone: 'east-b', inboundApp: '127.0.0.1:9090' });
    expect(config).toMatchObject({ namespace: 'shop', service: 'cart', zone: 'east-b', inbound: { listen: '0.0.0.0:15007', app: '127.0.0.1:9090' } });
  });

  test('empty values (a downward-API variable the pod lacks) leave the file\'s in force', () => {
    const config = loadSidecarConfig(write('shared-empty.yaml', {}), { namespace: '', zone: '', service: '' });
    expect(config).toMatchObject({ namespace: 'demo', service: 'hello', zone: 'east-a' });
    expect(config.inbound).toBeUndefined();
  });

  test('an app address without an inbound section in the file listens on 0.0.0.0:15006; the values are validated like the file\'s', () => {
    expect(loadSidecarConfig(write('no-inbound.yaml', {}), { inboundApp: '127.0.0.1:8080' }).inbound).toEqual({ listen: '0.0.0.0:15006', app: '127.0.0.1:8080' });
    expect(() => loadSidecarConfig(write('bad-zone.yaml', {}), { zone: 'Not A Label' })).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_CONFIG_INVALID', message: expect.stringContaining('/zone'),
    }));
  });
});

describe('several app ports behind one inbound (inbound.ports)', () => {
  test('--inbound-app-protocol and --inbound-port as isthmus inject writes them: each port on inbound.app\'s host', () => {
    const config = loadSidecarConfig(write('ports.yaml', {}), { inboundApp: '127.0.0.1:9090', inboundAppProtocol: 'h2c', inboundPort: ['8081', '6379/tcp'] });
    expect(config.inbound).toEqual({ listen: '0.0.0.0:15006', app: '127.0.0.1:9090', appProtocol: 'h2c', ports: [{ port: 8081 }, { port: 6379, appProtocol: 'tcp' }] });
    expect(appPortsOf(config.inbound!)).toEqual([
      { port: 8081, address: '127.0.0.1:8081', protocol: 'http' },
      { port: 6379, address: '127.0.0.1:6379', protocol: 'tcp' },
    ]);
  });

  test('--inbound-port 9000=9090/h2c: a Service port the app serves on another port', () => {
    const config = loadSidecarConfig(write('ports-mapped.yaml', {}), { inboundApp: '127.0.0.1:8080', inboundPort: ['9000=9090/h2c'] });
    expect(appPortsOf(config.inbound!)).toEqual([{ port: 9000, address: '127.0.0.1:9090', protocol: 'h2c' }]);
  });

  test('a port entry may name the app\'s address (a Service port 80 the app serves on 8080)', () => {
    const config = loadSidecarConfig(write('ports-app.yaml', { inbound: { listen: '127.0.0.1:15006', app: '127.0.0.1:9000', ports: [{ port: 80, app: '127.0.0.1:8080' }] } }));
    expect(appPortsOf(config.inbound!)).toEqual([{ port: 80, address: '127.0.0.1:8080', protocol: 'http' }]);
  });

  test.each([['6379/redis', '/inbound/ports/0/appProtocol'], ['http', '/inbound/ports/0'], ['70000', '/inbound/ports/0/port']])('--inbound-port %j is refused, naming the field', (spec, field) => {
    expect(() => loadSidecarConfig(write('bad-port.yaml', {}), { inboundApp: '127.0.0.1:8080', inboundPort: [spec] })).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_CONFIG_INVALID', message: expect.stringContaining(field),
    }));
  });
});

describe('admin.tls', () => {
  test('a bad certificate file stops loading with an error naming the file and admin.tls', () => {
    writeFileSync(join(dir, 'admin-key.pem'), 'not a key\n');
    const path = write('admin-tls.yaml', { admin: { listen: '127.0.0.1:15020', tls: { cert: 'root-cert.pem', key: 'admin-key.pem' } } });
    expect(() => loadSidecarConfig(path)).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_LISTENER_TLS_FILE_INVALID',
      message: expect.stringMatching(new RegExp(`${join(dir, 'root-cert.pem').replaceAll('.', '\\.')} \\(admin\\.tls in .*admin-tls\\.yaml\\) holds no PEM certificate`)),
    }));
  });
});
