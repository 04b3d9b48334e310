import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { connect as http2Connect } from 'node:http2';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { redisListenerPort, startDevMesh, type DevMesh } from '../../src/dev/dev-mesh.js';
import { apiClient, isthmus, isthmusOk, waitFor } from '../helpers/cli.js';
import { testOperator } from '../helpers/mesh.js';
import { etcdEnv } from '../helpers/etcd.js';

let mesh: DevMesh;
let stateDir: string;

// The mesh `isthmus dev up` builds, on 127.0.141.1 (east) / 127.0.142.1 (west): hostBase 141 is
// used by no other test. redis-server runs only in west; east's client sidecar has a fixed TCP
// listener for it on port 16379.
beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'isthmus-tcp-'));
  mesh = await startDevMesh({ clusters: ['east', 'west'], stateDir, trustDomain: 'dev.test', hostBase: 141, reportIntervalMs: 1000, progress: () => undefined });
}, 120_000);

afterAll(async () => {
  await mesh?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

// East's client (the caller) and west's redis sidecar, as their TCP metrics label them.
const route = 'source_cluster="east",destination_cluster="west",destination_service="demo/redis"';
const caller = 'destination_cluster="west",destination_service="demo/redis",source_namespace="demo",source_service_account="client"';

/** The admin addresses of east's client sidecar and of west's redis sidecar. */
function redisAdmins(): { east: string; west: string } {
  const redis = mesh.workloads.find((w) => w.spec.service === 'redis')!;
  return { east: mesh.file.clusters.east!.client.admin, west: `${redis.spec.host}:${redis.spec.adminPort}` };
}

const eastListener = () => mesh.file.clusters.east!.client.listeners['demo/redis']!;
const redisInbound = () => mesh.workloads.find((w) => w.spec.service === 'redis')!.inbound;

describe('a plain TCP service (redis in west) used from another cluster', () => {
  test('mesh.json lists east\'s fixed TCP listener for demo/redis, and the redis instance in west', () => {
    expect(eastListener()).toBe(`127.0.141.1:${redisListenerPort}`);
    expect(mesh.file.clusters.west!.client.listeners['demo/redis']).toBeUndefined();
    expect(mesh.file.clusters.west!.services.find((s) => s.name === 'redis')?.instances).toEqual(['127.0.142.1:18083']);
  });

  test('west\'s export record carries protocol tcp, and east\'s catalog shows it', async () => {
    const api = apiClient(join(stateDir, 'ca', 'root-cert.pem'), testOperator(join(stateDir, 'operator')).tls);
    try {
      const { value: redis } = await waitFor(async () => {
        const catalog = (await api.get(`https://${mesh.file.clusters.east!.federation}/v1/catalog`)).body;
        return catalog.services.find((s: { name: string }) => s.name === 'redis') as { clusters: { cluster: string; ports: unknown[] }[] } | undefined;
      }, 10_000, 'demo/redis in east\'s catalog');
      expect(redis.clusters.map((c) => ({ cluster: c.cluster, ports: c.ports }))).toEqual([{ cluster: 'west', ports: [{ port: 19083, protocol: 'tcp' }] }]);
    } finally {
      await api.close();
    }
  });

  test('isthmus register --protocol tcp records the instance\'s port as tcp; a bad protocol is refused', async () => {
    const config = mesh.file.clusters.west!.config;
    const out = JSON.parse((await isthmusOk(['register', 'cache', '-n', 'demo', '-c', config, '--address', '127.0.142.1:19500', '--protocol', 'tcp', '-o', 'json'])).stdout);
    expect(out).toMatchObject({ service: 'cache', protocol: 'tcp' });
    const registry = JSON.parse(readFileSync(join(dirname(config), 'registry.json'), 'utf8')) as { instances: { service: string; ports?: unknown }[] };
    expect(registry.instances.find((i) => i.service === 'cache')?.ports).toEqual([{ port: 19500, protocol: 'tcp' }]);
    await isthmusOk(['deregister', 'cache', '-n', 'demo', '-c', config, '--address', '127.0.142.1:19500']);
    const bad = await isthmus(['register', 'cache', '-n', 'demo', '-c', config, '--address', '127.0.142.1:19500', '--protocol', 'udp']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--protocol "udp" is not http or tcp/);
  });

  test('redis-cli in east sets and gets a value through its fixed listener, crossing west\'s gateway', async () => {
    const before = await gatewayConnections('west', 'demo/redis');
    const [host, port] = eastListener().split(':') as [string, string];
    expect((await redisCli(['-h', host, '-p', port, 'SET', 'greeting', 'hello from east'])).trim()).toBe('OK');
    expect((await redisCli(['-h', host, '-p', port, 'GET', 'greeting'])).trim()).toBe('hello from east');
    // Each redis-cli run is one TCP connection, and each went through west's gateway by SNI.
    expect(await gatewayConnections('west', 'demo/redis') - before).toBeGreaterThanOrEqual(2);
    // Both sidecars counted them: east's listener spliced to west, west's inbound accepted east's client.
    const east = await (await fetch(`http://${mesh.file.clusters.east!.client.admin}/metrics`)).text();
    expect(counter(east, 'isthmus_tcp_connections_total', 'destination_cluster="west",destination_service="demo/redis",result="connected"')).toBeGreaterThanOrEqual(2);
    const redis = mesh.workloads.find((w) => w.spec.service === 'redis')!;
    const west = await (await fetch(`http://${redis.spec.host}:${redis.spec.adminPort}/metrics`)).text();
    expect(counter(west, 'isthmus_inbound_tcp_connections_total', 'source_namespace="demo",source_service_account="client",result="accepted"')).toBeGreaterThanOrEqual(2);
  });

  test('each redis-cli connection shows exactly in both sidecars\' /metrics: connections, bytes each way, durations, none left open', async () => {
    const { east, west } = redisAdmins();
    const read = async () => {
      const [e, w] = await Promise.all([east, west].map(async (admin) => (await fetch(`http://${admin}/metrics`)).text())) as [string, string];
      return {
        connected: counter(e, 'isthmus_tcp_connections_total', `${route},result="connected"`),
        open: counter(e, 'isthmus_tcp_open_connections', route),
        sent: counter(e, 'isthmus_tcp_bytes_total', `${route},direction="sent"`),
        received: counter(e, 'isthmus_tcp_bytes_total', `${route},direction="received"`),
        closed: counter(e, 'isthmus_tcp_connection_duration_seconds_count', `${route},end="closed"`),
        accepted: counter(w, 'isthmus_inbound_tcp_connections_total', `${caller},result="accepted"`),
        inboundOpen: counter(w, 'isthmus_inbound_tcp_open_connections', caller),
        appReceived: counter(w, 'isthmus_inbound_tcp_bytes_total', `${caller},direction="received"`),
        appSent: counter(w, 'isthmus_inbound_tcp_bytes_total', `${caller},direction="sent"`),
        inboundClosed: counter(w, 'isthmus_inbound_tcp_connection_duration_seconds_count', 'destination_cluster="west",destination_service="demo/redis",end="closed"'),
      };
    };
    // Connections of earlier tests may still be closing: start from a quiet mesh.
    const { value: before } = await waitFor(async () => {
      const now = await read();
      return now.open === 0 && now.inboundOpen === 0 ? now : undefined;
    }, 10_000, 'no TCP connection open through the mesh');
    const [host, port] = eastListener().split(':') as [string, string];
    expect((await redisCli(['-h', host, '-p', port, 'SET', 'greeting', 'hello from east'])).trim()).toBe('OK');
    expect((await redisCli(['-h', host, '-p', port, 'GET', 'greeting'])).trim()).toBe('hello from east');
    // What redis-cli writes and redis answers, in RESP: the bytes each sidecar must count.
    const set = '*3\r\n$3\r\nSET\r\n$8\r\ngreeting\r\n$15\r\nhello from east\r\n';
    const get = '*2\r\n$3\r\nGET\r\n$8\r\ngreeting\r\n';
    const answers = '+OK\r\n' + '$15\r\nhello from east\r\n';
    // A connection is counted closed once both sidecars have seen both ends go.
    const { value: after } = await waitFor(async () => {
      const now = await read();
      return now.closed - before.closed === 2 && now.inboundClosed - before.inboundClosed === 2 ? now : undefined;
    }, 10_000, 'both connections closed in both sidecars\' metrics');
    const delta = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k as keyof typeof before]]));
    expect(delta).toEqual({
      connected: 2, open: 0, sent: set.length + get.length, received: answers.length, closed: 2,
      accepted: 2, inboundOpen: 0, appReceived: set.length + get.length, appSent: answers.length, inboundClosed: 2,
    });
    expect(after.open).toBe(0);
    expect(after.inboundOpen).toBe(0);
  });

  test('a connection held open (a client\'s pool) shows its bytes in both sidecars\' and the gateway\'s /metrics before it closes, each byte once', async () => {
    const { east, west } = redisAdmins();
    const read = async () => {
      const [e, w, g] = await Promise.all([east, west, gatewayAdmin('west')].map(async (admin) => (await fetch(`http://${admin}/metrics`)).text())) as [string, string, string];
      return {
        open: counter(e, 'isthmus_tcp_open_connections', route),
        sent: counter(e, 'isthmus_tcp_bytes_total', `${route},direction="sent"`),
        received: counter(e, 'isthmus_tcp_bytes_total', `${route},direction="received"`),
        appReceived: counter(w, 'isthmus_inbound_tcp_bytes_total', `${caller},direction="received"`),
        appSent: counter(w, 'isthmus_inbound_tcp_bytes_total', `${caller},direction="sent"`),
        gatewayFromCaller: counter(g, 'isthmus_gateway_bytes_total', 'destination_service="demo/redis",direction="from_caller"'),
        gatewayFromEndpoint: counter(g, 'isthmus_gateway_bytes_total', 'destination_service="demo/redis",direction="from_endpoint"'),
      };
    };
    const { value: before } = await waitFor(async () => {
      const now = await read();
      return now.open === 0 ? now : undefined;
    }, 10_000, 'no TCP connection open through the mesh');
    const [host, port] = eastListener().split(':') as [string, string];
    const socket = tcpConnect({ host, port: Number(port) });
    let answers = '';
    socket.on('data', (chunk: Buffer) => { answers += chunk.toString('latin1'); });
    try {
      // RESP inline commands: 6 bytes up, 7 back each.
      socket.write('PING\r\n');
      await waitFor(async () => answers === '+PONG\r\n' || undefined, 10_000, 'the first PONG');
      const first = await read();
      expect(first.open - before.open).toBe(1);
      expect({ sent: first.sent - before.sent, received: first.received - before.received, appReceived: first.appReceived - before.appReceived, appSent: first.appSent - before.appSent })
        .toEqual({ sent: 6, received: 7, appReceived: 6, appSent: 7 });
      // West's gateway carries the connection's TLS: its handshake and records, more than the payload either way.
      expect(first.gatewayFromCaller - before.gatewayFromCaller).toBeGreaterThan(6);
      expect(first.gatewayFromEndpoint - before.gatewayFromEndpoint).toBeGreaterThan(7);
      socket.write('PING\r\n');
      await waitFor(async () => answers === '+PONG\r\n+PONG\r\n' || undefined, 10_000, 'the second PONG');
      const second = await read();
      expect({ sent: second.sent - before.sent, received: second.received - before.received, appReceived: second.appReceived - before.appReceived, appSent: second.appSent - before.appSent })
        .toEqual({ sent: 12, received: 14, appReceived: 12, appSent: 14 });
      expect(second.gatewayFromCaller).toBeGreaterThan(first.gatewayFromCaller);
      expect(second.gatewayFromEndpoint).toBeGreaterThan(first.gatewayFromEndpoint);
    } finally {
      socket.end();
    }
    // Closed: what was counted while it was open is not counted again.
    const { value: after } = await waitFor(async () => {
      const now = await read();
      return now.open === before.open ? now : undefined;
    }, 10_000, 'the held connection closed');
    expect({ sent: after.sent - before.sent, received: after.received - before.received, appReceived: after.appReceived - before.appReceived, appSent: after.appSent - before.appSent })
      .toEqual({ sent: 12, received: 14, appReceived: 12, appSent: 14 });
  });

  test('`isthmus stat` and the dashboard\'s overview show redis as a TCP service: connections, the one held open, bytes each way, served from west', async () => {
    const [host, port] = eastListener().split(':') as [string, string];
    const held = tcpConnect({ host, port: Number(port) });
    let answers = '';
    held.on('data', (chunk: Buffer) => { answers += chunk.toString('latin1'); });
    try {
      held.write('PING\r\n');
      await waitFor(async () => answers === '+PONG\r\n' || undefined, 10_000, 'the held connection\'s PONG');
      // Two more that come and go, through redis-cli.
      for (let i = 0; i < 2; i += 1) expect((await redisCli(['-h', host, '-p', port, 'PING'])).trim()).toBe('PONG');
      type Tcp = { connections: number; connectionsPerSecond: number; successPercent: number | null; open: number; sentBytesPerSecond: number; receivedBytesPerSecond: number; servedFrom: { cluster: string; share: number }[] };
      // Sidecars report every second here; the dashboard keeps a sample every few seconds.
      const { value: redis } = await waitFor(async () => {
        const out = await isthmus(['stat', '--output', 'json', '--from', 'east'], etcdEnv(mesh.file));
        if (out.code !== 0) return undefined;
        const services = (JSON.parse(out.stdout) as { services: { name: string; protocols: string[]; traffic: unknown; tcp: Tcp | null }[] }).services;
        const found = services.find((x) => x.name === 'redis');
        return found?.tcp && found.tcp.connections >= 3 && found.tcp.open >= 1 ? found : undefined;
      }, 30_000, 'demo/redis with 3 connections, one open, in isthmus stat');
      expect(redis.protocols).toEqual(['tcp']);
      expect(redis.traffic).toBeNull();
      const tcp = redis.tcp!;
      expect(tcp.successPercent).toBe(100);
      expect(tcp.servedFrom).toEqual([{ cluster: 'west', share: 1 }]);
      expect(tcp.connectionsPerSecond).toBeGreaterThan(0);
      // Bytes from the callers' side: PINGs up, PONGs back (and whatever earlier tests moved within the window).
      expect(tcp.sentBytesPerSecond).toBeGreaterThan(0);
      expect(tcp.receivedBytesPerSecond).toBeGreaterThan(0);
      const table = await isthmus(['stat'], etcdEnv(mesh.file));
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(/^TCP SERVICE\s+SERVED FROM\s+CONN\/S\s+ESTABLISHED\s+OPEN\s+SENT\/S\s+RECEIVED\/S$/m);
      expect(table.stdout).toMatch(/^demo\/redis\s+west 100%\s+[0-9.]+\s+100\.0%\s+[1-9][0-9]*\s+[0-9.]+ [kMG]?B\s+[0-9.]+ [kMG]?B$/m);
    } finally {
      held.end();
    }
    // Closed: the dashboard's next samples say none is open.
    await waitFor(async () => {
      const overview = (await (await fetch(`http://${mesh.file.clusters.east!.metrics}/api/overview`)).json()) as { services: { name: string; tcp: { open: number } | null }[] };
      return overview.services.find((x) => x.name === 'redis')?.tcp?.open === 0 || undefined;
    }, 30_000, 'no redis connection open in the overview');
  }, 70_000);

  test('CONNECT redis.demo.mesh:6379 on east\'s proxy port reaches redis in west as TCP: curl\'s telnet through the proxy, and bytes sent with the CONNECT head; counted as TCP connections', async () => {
    const proxy = mesh.file.clusters.east!.client.proxy;
    const connected = async () => counter(await (await fetch(`http://${mesh.file.clusters.east!.client.admin}/metrics`)).text(), 'isthmus_tcp_connections_total', `${route},result="connected"`);
    const before = await connected();
    // curl -p (proxytunnel) to a telnet:// URL: CONNECT, then stdin's bytes up and redis's answers back; QUIT makes redis close.
    const telnet = await new Promise<string>((resolve, reject) => {
      const child = execFile('curl', ['-sS', '--max-time', '10', '-p', '-x', `http://${proxy}`, 'telnet://redis.demo.mesh:6379'], (err, stdout, stderr) => (err ? reject(new Error(`curl: ${err.message} ${stderr}`)) : resolve(stdout)));
      child.stdin?.end('PING\r\nQUIT\r\n');
    });
    expect(telnet).toBe('+PONG\r\n+OK\r\n');
    // The first bytes in the same write as the CONNECT head: they reach redis first, after the 200.
    const [host, port] = proxy.split(':') as [string, string];
    const raw = tcpConnect({ host, port: Number(port) });
    let answer = '';
    raw.on('data', (chunk: Buffer) => { answer += chunk.toString('latin1'); });
    raw.on('error', () => undefined); // a reset shows as the answer's absence below
    try {
      raw.write('CONNECT redis.demo.mesh:6379 HTTP/1.1\r\nhost: redis.demo.mesh:6379\r\n\r\nPING\r\n');
      await waitFor(async () => answer.endsWith('+PONG\r\n') || undefined, 10_000, 'the PONG after the 200');
      expect(answer).toBe('HTTP/1.1 200 Connection Established\r\n\r\n+PONG\r\n');
    } finally {
      raw.destroy();
    }
    // Counted as TCP connections through the client sidecar (not as requests).
    await waitFor(async () => ((await connected()) >= before + 2) || undefined, 10_000, 'two more connected TCP connections in east\'s metrics');
  });

  test('CONNECT redis.demo.mesh:6379 over HTTP/2 on east\'s proxy port (Node\'s HTTP/2 client, h2c) reaches redis in west as TCP', async () => {
    const session = http2Connect(`http://${mesh.file.clusters.east!.client.proxy}`);
    session.on('error', () => undefined);
    try {
      const stream = session.request({ ':method': 'CONNECT', ':authority': 'redis.demo.mesh:6379' }, { endStream: false });
      let answer = '';
      stream.on('data', (c: Buffer) => { answer += c.toString('latin1'); });
      const head = await new Promise<Record<string, unknown>>((resolve, reject) => {
        stream.once('response', resolve);
        stream.once('error', reject);
      });
      expect(head[':status']).toBe(200);
      stream.write('PING\r\nSET h2-tunnel yes\r\nGET h2-tunnel\r\nQUIT\r\n');
      // QUIT makes redis close: its end comes back as the stream's end (END_STREAM), and the app ends its side.
      await new Promise((resolve) => stream.once('end', resolve));
      stream.end();
      await new Promise((resolve) => stream.once('close', resolve));
      expect(answer).toBe('+PONG\r\n+OK\r\n$3\r\nyes\r\n+OK\r\n');
      expect(stream.rstCode).toBe(0);
    } finally {
      session.destroy();
    }
  });

  test('isthmus explain says demo/redis is a TCP service, how apps reach it, and shares connections, not requests', async () => {
    const explained = await isthmusOk(['explain', 'redis', '-n', 'demo', '--sidecar', mesh.file.clusters.east!.client.admin]);
    expect(explained.stdout).toContain('a TCP service: apps reach it through a fixed TCP listener, or CONNECT redis.demo.mesh:<port> on the proxy port');
    expect(explained.stdout).toMatch(/^ {2}P3 {2}100% of connections {2}1\/1 healthy/m);
    const json = JSON.parse((await isthmusOk(['explain', 'redis', '-n', 'demo', '--sidecar', mesh.file.clusters.east!.client.admin, '-o', 'json'])).stdout) as { protocol?: string };
    expect(json.protocol).toBe('tcp');
    // An HTTP service says requests, as before.
    const ledger = await isthmusOk(['explain', 'ledger', '-n', 'demo', '--sidecar', mesh.file.clusters.east!.client.admin]);
    expect(ledger.stdout).toMatch(/% of requests/);
    expect(ledger.stdout).not.toContain('a TCP service');
  });

  test('a 1 MiB value goes up and comes back intact (checked by hash)', async () => {
    const value = randomBytes(512 * 1024).toString('hex');
    const [host, port] = eastListener().split(':') as [string, string];
    // -x: the last argument is read from stdin.
    expect((await redisCli(['-h', host, '-p', port, '-x', 'SET', 'big'], value)).trim()).toBe('OK');
    expect((await redisCli(['-h', host, '-p', port, 'STRLEN', 'big'])).trim()).toBe(String(1024 * 1024));
    const back = await redisCli(['-h', host, '-p', port, '--raw', 'GET', 'big']);
    expect(sha256(back.replace(/\n$/, ''))).toBe(sha256(value));
  });

  test('without a mesh certificate, nothing gets through the inbound: neither directly nor through west\'s gateway', async () => {
    const gateway = mesh.file.clusters.west!.gateways[0]!;
    const noCert = { servername: 'redis.demo.svc.west.isthmus', rejectUnauthorized: false, ALPNProtocols: ['isthmus-tcp'] };
    expect(await pingOverTls(redisInbound(), noCert)).toBe('');
    expect(await pingOverTls(gateway, noCert)).toBe('');
    // West's redis sidecar counted the refusals (the caller had no identity to label them with).
    const redis = mesh.workloads.find((w) => w.spec.service === 'redis')!;
    const metrics = await (await fetch(`http://${redis.spec.host}:${redis.spec.adminPort}/metrics`)).text();
    expect(counter(metrics, 'isthmus_inbound_tcp_connections_total', 'source_namespace="unauthenticated",source_service_account="unauthenticated",result="refused"')).toBeGreaterThanOrEqual(2);
  });

  test('with the east client\'s own mesh certificate, the inbound lets PING through only with ALPN isthmus-tcp', async () => {
    const saved = JSON.parse(readFileSync(join(stateDir, 'sidecars', 'east', 'client', 'identity.json'), 'utf8')) as { cert: string; chain: string[]; key: string; trustBundle: string[] };
    // Mesh certificates name no DNS host: the chain is checked against the mesh roots, not the name.
    const withCert = { servername: 'redis.demo.svc.west.isthmus', cert: [saved.cert, ...saved.chain].join('\n'), key: saved.key, ca: saved.trustBundle, checkServerIdentity: () => undefined };
    // The positive control: the same socket code gets an answer once it has a certificate, so
    // the empty answers above are the inbound refusing, not a broken test.
    expect(await pingOverTls(mesh.file.clusters.west!.gateways[0]!, { ...withCert, ALPNProtocols: ['isthmus-tcp'] })).toBe('+PONG\r\n');
    expect(await pingOverTls(redisInbound(), { ...withCert, ALPNProtocols: ['http/1.1'] })).toBe('');
  });
});

/** The value of the one series of `name` whose labels contain `labels`, 0 if none. */
function counter(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return Number(line?.split(' ').pop() ?? 0);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

async function redisCli(args: string[], input?: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = execFile('redis-cli', args, { maxBuffer: 8 * 1024 * 1024, timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
    child.stdin?.end(input ?? '');
  });
}

/** Connects with TLS, sends a RESP PING, and returns whatever came back before the connection closed. */
async function pingOverTls(address: string, options: ConnectionOptions): Promise<string> {
  const split = address.lastIndexOf(':');
  return await new Promise((resolve) => {
    let received = '';
    const socket = tlsConnect({ host: address.slice(0, split), port: Number(address.slice(split + 1)), ...options });
    const done = () => {
      socket.destroy();
      resolve(received);
    };
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      if (received.includes('\r\n')) done();
    });
    socket.once('secureConnect', () => socket.write('PING\r\n'));
    socket.on('error', done);
    socket.on('close', done);
    setTimeout(done, 5_000).unref();
  });
}

/** The admin address (host:port) of the cluster's first gateway. */
function gatewayAdmin(cluster: string): string {
  const g = mesh.gateways.find((x) => x.cluster === cluster);
  if (!g) throw new Error(`no gateway in ${cluster}`);
  return adminOf(g.address);
}

/** A gateway's admin port is as far from 15021 as its listener is from 15443 in a dev mesh. */
function adminOf(address: string): string {
  return address.replace(/:(\d+)$/, (_m, p) => `:${Number(p) - 15443 + 15021}`);
}

/** Connections the cluster's gateways routed to `service`, from their /metrics. */
async function gatewayConnections(cluster: string, service: string): Promise<number> {
  let total = 0;
  for (const g of mesh.gateways.filter((x) => x.cluster === cluster)) {
    const admin = adminOf(g.address);
    const text = await (await fetch(`http://${admin}/metrics`)).text();
    const match = new RegExp(`^isthmus_gateway_connections_total\\{[^}]*destination_service="${service}"[^}]*\\} (\\d+)`, 'm').exec(text);
    total += Number(match?.[1] ?? 0);
  }
  return total;
}
