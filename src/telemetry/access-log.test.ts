import { randomBytes } from 'node:crypto';
import { existsSync, fstatSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect as netConnect } from 'node:net';
import { connect as connectH2, constants as h2constants } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { clientId, sidecarChain, testPki, type SidecarChain } from '../../test/helpers/sidecar-fixtures.js';
import { answerStatus } from '../sidecar/tunnel-exchange.js';
import { openAccessLog, requestFields, tcpRecord, textLine, type AccessLog, type AccessRecord } from './access-log.js';

const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('what a line says of a request', () => {
  test.each<[string, Parameters<typeof requestFields>[0], object]>([
    ['absolute-form, as an app sends to its proxy', { method: 'GET', url: 'http://ledger.demo.mesh/accounts?id=7', headers: { host: 'ledger.demo.mesh' } },
      { method: 'GET', authority: 'ledger.demo.mesh', path: '/accounts?id=7', protocol: 'HTTP/1.1' }],
    ['absolute-form with a port and no path', { method: 'GET', url: 'http://ledger.demo.mesh:8080', headers: {} },
      { method: 'GET', authority: 'ledger.demo.mesh:8080', path: '/', protocol: 'HTTP/1.1' }],
    ['origin-form: the authority is the Host field', { method: 'POST', url: '/orders', headers: { host: 'ledger' } },
      { method: 'POST', authority: 'ledger', path: '/orders', protocol: 'HTTP/1.1' }],
    ['CONNECT: the target is the authority, there is no path', { method: 'CONNECT', url: 'ledger.demo.mesh:443', headers: { host: 'ledger.demo.mesh:443' } },
      { method: 'CONNECT', authority: 'ledger.demo.mesh:443', protocol: 'HTTP/1.1' }],
    ['HTTP/2: the pseudo-headers', { method: 'POST', headers: { ':method': 'POST', ':authority': 'echo.demo.mesh', ':path': '/grpc.Echo/Say' } },
      { method: 'POST', authority: 'echo.demo.mesh', path: '/grpc.Echo/Say', protocol: 'HTTP/2' }],
    ['CONNECT over HTTP/2 (outbound-h2.ts): :authority is the target, there is no :path', { method: 'CONNECT', url: 'redis.demo.mesh:6379', headers: { ':method': 'CONNECT', ':authority': 'redis.demo.mesh:6379' } },
      { method: 'CONNECT', authority: 'redis.demo.mesh:6379', protocol: 'HTTP/2' }],
    ['a traceparent gives its trace id; x-request-id and user-agent are kept', { method: 'GET', url: '/', headers: { host: 'a', traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'x-request-id': 'r-1', 'user-agent': 'curl/7.88.1' } },
      { method: 'GET', authority: 'a', path: '/', protocol: 'HTTP/1.1', traceId, requestId: 'r-1', userAgent: 'curl/7.88.1' }],
    ['a malformed traceparent gives none', { method: 'GET', url: '/', headers: { host: 'a', traceparent: 'not-a-trace' } },
      { method: 'GET', authority: 'a', path: '/', protocol: 'HTTP/1.1' }],
    ['an all-zero trace id is invalid (W3C) and gives none', { method: 'GET', url: '/', headers: { host: 'a', traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01` } },
      { method: 'GET', authority: 'a', path: '/', protocol: 'HTTP/1.1' }],
  ])('%s', (_what, facts, expected) => {
    expect(requestFields(facts)).toEqual(expected);
  });

  test('the text format: a fixed head, then the fields present, quoted when they hold a space, a quote or =', () => {
    const record: AccessRecord = {
      time: '2026-12-05T18:00:00.000Z', direction: 'outbound', kind: 'http', method: 'GET', authority: 'ledger.demo.mesh', path: '/a?b=c', protocol: 'HTTP/1.1',
      status: 200, durationMs: 1.234, service: 'demo/ledger', cluster: 'west', endpoint: '127.0.2.1:15443', userAgent: 'Mozilla/5.0 (X11)',
    };
    expect(textLine(record)).toBe('2026-12-05T18:00:00.000Z outbound "GET ledger.demo.mesh/a?b=c HTTP/1.1" 200 1.234ms service=demo/ledger cluster=west endpoint=127.0.2.1:15443 userAgent="Mozilla/5.0 (X11)"');
    expect(textLine({ time: 't', direction: 'outbound', kind: 'http', error: 'connect_error', durationMs: 3 })).toBe('t outbound "- - -" connect_error 3ms');
    const tcp = tcpRecord({ origin: {}, end: 'closed', sentBytes: 10, receivedBytes: 2048, seconds: 1.5, service: 'demo/redis', cluster: 'west' }, 'outbound', new Date(0));
    expect(textLine(tcp)).toBe('1970-01-01T00:00:00.000Z outbound tcp closed 1500ms service=demo/redis cluster=west sentBytes=10 receivedBytes=2048');
  });
});

/** Waits (5 s at most) until `file` holds `count` lines of aborted exchanges: they are written when the connections close. */
async function abortedLines(file: string, count: number): Promise<void> {
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if ((text.match(/"end":"aborted"/g) ?? []).length >= count) return;
  }
}

/** The JSON lines of `file`, found by direction and path. */
function lineOf(file: string): (direction: string, path: string) => AccessRecord | undefined {
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AccessRecord);
  return (direction, path) => lines.find((l) => l.direction === direction && l.path === path);
}

/** Every request in this worker: the chain's outbound and inbound are the only publishers. */
const started = (log: AccessLog): AccessLog => {
  log.start();
  return log;
};

describe('the access log of a real outbound → inbound chain', () => {
  let chain: SidecarChain;
  let dir: string;
  beforeAll(async () => {
    chain = await sidecarChain(testPki());
    dir = mkdtempSync(join(tmpdir(), 'isthmus-access-log-'));
  });
  afterAll(async () => {
    await chain?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function viaOutbound(method: string, url: string, headers: Record<string, string> = {}): Promise<number> {
    const [host, port] = chain.outbound.split(':') as [string, string];
    return new Promise((resolve, reject) => {
      const req = request({ host, port: Number(port), method, path: url, headers: { host: new URL(url).host, ...headers } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(method === 'POST' ? 'body' : undefined);
    });
  }

  test('each request gets an outbound and an inbound line, with where it went, who called and its trace id; a name not in the mesh gets its refusal', async () => {
    const file = join(dir, 'logs', 'access.json');
    const log = started(openAccessLog({ file, given: 'accessLog.file' }));
    let unknown = 0;
    try {
      expect(await viaOutbound('GET', 'http://echo.demo.mesh/items?id=7', { traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'user-agent': 'test-client' })).toBe(200);
      expect(await viaOutbound('POST', 'http://echo.demo.mesh/orders')).toBe(200);
      unknown = await viaOutbound('GET', 'http://nowhere.demo.mesh/');
      expect(unknown).toBeGreaterThanOrEqual(400);
    } finally {
      await log.close();
    }
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AccessRecord);
    const outbound = lines.filter((l) => l.direction === 'outbound');
    const inbound = lines.filter((l) => l.direction === 'inbound');
    expect(outbound).toEqual([
      expect.objectContaining({ kind: 'http', method: 'GET', authority: 'echo.demo.mesh', path: '/items?id=7', protocol: 'HTTP/1.1', status: 200, service: 'demo/echo', cluster: 'west', endpoint: chain.inbound, traceId, userAgent: 'test-client' }),
      expect.objectContaining({ method: 'POST', path: '/orders', status: 200, service: 'demo/echo', endpoint: chain.inbound }),
      expect.objectContaining({ method: 'GET', authority: 'nowhere.demo.mesh', path: '/', status: unknown }),
    ]);
    expect(outbound[2]).not.toHaveProperty('endpoint');
    // The inbound line carries the caller's verified identity and the same trace (the outbound's span continues it).
    expect(inbound).toEqual([
      expect.objectContaining({ kind: 'http', method: 'GET', path: '/items?id=7', status: 200, caller: clientId, traceId }),
      expect.objectContaining({ method: 'POST', path: '/orders', status: 200, caller: clientId }),
    ]);
    for (const line of lines) {
      expect(Number.isFinite(line.durationMs) && line.durationMs >= 0).toBe(true);
      expect(new Date(line.time).toISOString()).toBe(line.time);
    }
  });

  test('an HTTP/1.1 line is written when the answer ends: body bytes both ways, the whole duration beside the time to the head, and whether it was cut short', async () => {
    const file = join(dir, 'exchanges.json');
    const log = started(openAccessLog({ file, given: 'accessLog.file' }));
    const [host, port] = chain.outbound.split(':') as [string, string];
    const body = randomBytes(300_000);
    try {
      // 300 kB up, echoed back as it arrives.
      const echoed = await new Promise<Buffer>((resolve, reject) => {
        const req = request({ host, port: Number(port), method: 'POST', path: 'http://echo.demo.mesh/test/echo-body', headers: { host: 'echo.demo.mesh' } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve(Buffer.concat(chunks)));
        });
        req.on('error', reject);
        req.end(body);
      });
      expect(echoed.equals(body)).toBe(true);
      // An answer whose first 1000 bytes arrive and whose caller then leaves.
      await new Promise<void>((resolve, reject) => {
        const req = request({ host, port: Number(port), method: 'GET', path: 'http://echo.demo.mesh/test/stall', headers: { host: 'echo.demo.mesh' } }, (res) => {
          let got = 0;
          res.on('data', (c: Buffer) => {
            got += c.length;
            if (got >= 1000) req.destroy();
          });
          res.on('close', () => resolve());
        });
        req.on('error', () => undefined);
        req.on('close', () => resolve());
        req.end();
        setTimeout(() => reject(new Error('the stalled answer never reached the caller')), 5000).unref();
      });
      // The inbound's line comes once the outbound's connection to it closes, the app's after that.
      await abortedLines(file, 2);
    } finally {
      await log.close();
    }
    const of = lineOf(file);
    for (const direction of ['outbound', 'inbound']) {
      const echo = of(direction, '/test/echo-body');
      expect(echo).toEqual(expect.objectContaining({ method: 'POST', status: 200, requestBytes: 300_000, responseBytes: 300_000, end: 'complete' }));
      expect(echo?.durationMs).toBeGreaterThanOrEqual(echo?.headMs ?? Infinity);
      const stalled = of(direction, '/test/stall');
      expect(stalled).toEqual(expect.objectContaining({ method: 'GET', status: 200, requestBytes: 0, end: 'aborted' }));
      expect(stalled?.responseBytes).toBeGreaterThanOrEqual(1000);
      expect(stalled?.responseBytes).toBeLessThan(30_000);
    }
  });

  test('an HTTP/2 stream (h2c from the app) gets its line when the stream closes, with its bytes and a gRPC answer\'s status; a stream the app resets is aborted', async () => {
    const file = join(dir, 'h2-exchanges.json');
    const log = started(openAccessLog({ file, given: 'accessLog.file' }));
    const session = connectH2(`http://${chain.outbound}`);
    session.on('error', () => undefined);
    const body = randomBytes(200_000);
    try {
      const echoed = await new Promise<Buffer>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/test/echo-body', ':authority': 'echo.demo.mesh' });
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => resolve(Buffer.concat(chunks)));
        stream.on('error', reject);
        stream.end(body);
      });
      expect(echoed.equals(body)).toBe(true);
      const grpcStatus = await new Promise<string | undefined>((resolve) => {
        const stream = session.request({ ':method': 'POST', ':path': '/pkg.Svc/Call', ':authority': 'echo.demo.mesh', 'content-type': 'application/grpc', te: 'trailers' });
        stream.on('response', (headers) => resolve(headers['grpc-status'] as string | undefined));
        stream.on('error', () => resolve(undefined));
        stream.resume();
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      });
      expect(grpcStatus).toBe('12');
      await new Promise<void>((resolve) => {
        const stream = session.request({ ':method': 'GET', ':path': '/test/stall', ':authority': 'echo.demo.mesh' });
        let got = 0;
        stream.on('data', (c: Buffer) => {
          got += c.length;
          if (got >= 1000) stream.close(h2constants.NGHTTP2_CANCEL);
        });
        stream.on('error', () => undefined);
        stream.on('close', () => resolve());
      });
      await abortedLines(file, 2);
    } finally {
      session.close();
      await log.close();
    }
    const of = lineOf(file);
    // The inbound refuses gRPC to an HTTP/1.1 app (501, UNIMPLEMENTED, trailers-only); the outbound relays that.
    // Its 5-byte message is counted on both sides, although the inbound read it only to drop it.
    for (const direction of ['outbound', 'inbound']) expect(of(direction, '/pkg.Svc/Call')).toEqual(expect.objectContaining({ protocol: 'HTTP/2', grpcStatus: 12, requestBytes: 5, end: 'complete' }));
    for (const direction of ['outbound', 'inbound']) {
      expect(of(direction, '/test/echo-body')).toEqual(expect.objectContaining({ protocol: 'HTTP/2', method: 'POST', status: 200, requestBytes: 200_000, responseBytes: 200_000, end: 'complete' }));
      const stalled = of(direction, '/test/stall');
      expect(stalled).toEqual(expect.objectContaining({ protocol: 'HTTP/2', status: 200, requestBytes: 0, end: 'aborted' }));
      expect(stalled?.responseBytes).toBeGreaterThanOrEqual(1000);
      expect(stalled?.durationMs).toBeGreaterThanOrEqual(stalled?.headMs ?? Infinity);
    }
  });

  test('a CONNECT tunnel gets its line when it closes, with the bytes it carried each way', async () => {
    const file = join(dir, 'tunnels.json');
    const log = started(openAccessLog({ file, given: 'accessLog.file' }));
    // The request through the tunnel comes with its opening head; the app answers it and closes.
    const inside = 'GET /through-the-tunnel HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n';
    let answered = '';
    try {
      answered = await chain.send('outbound', `CONNECT echo.demo.mesh:80 HTTP/1.1\r\nhost: echo.demo.mesh:80\r\n\r\n${inside}`);
      expect(answered).toMatch(/^HTTP\/1\.1 200 [^]*HTTP\/1\.1 200 OK[^]*app answered$/);
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await log.close();
    }
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AccessRecord);
    const outbound = lines.find((l) => l.direction === 'outbound' && l.method === 'CONNECT');
    const inbound = lines.find((l) => l.direction === 'inbound' && l.method === 'CONNECT');
    // Back to the caller: the inbound's 200 and the app's whole answer, which the outbound passes on unread.
    expect(outbound).toEqual(expect.objectContaining({ status: 200, requestBytes: inside.length, responseBytes: answered.length, end: 'complete', service: 'demo/echo' }));
    const appAnswer = answered.slice(answered.indexOf('HTTP/1.1 200 OK'));
    expect(inbound).toEqual(expect.objectContaining({ status: 200, requestBytes: inside.length, responseBytes: appAnswer.length, end: 'complete', caller: clientId }));
  });

  test('an upgrade the app does not take: the tunnel\'s lines give the status the caller got, not the 101 it asked for', async () => {
    const file = join(dir, 'upgrade.json');
    const log = started(openAccessLog({ file, given: 'accessLog.file' }));
    let answered = '';
    try {
      // The chain's app is a plain node:http server with no 'upgrade' handler: it answers as to
      // any request. The caller reads the first bytes back and leaves.
      const [host, port] = chain.outbound.split(':') as [string, string];
      answered = await new Promise<string>((resolve, reject) => {
        const socket = netConnect({ host, port: Number(port) }, () => socket.write('GET http://echo.demo.mesh/ws HTTP/1.1\r\nhost: echo.demo.mesh\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n'));
        socket.once('data', (first: Buffer) => {
          socket.destroy();
          resolve(first.toString('latin1'));
        });
        socket.once('close', () => resolve(''));
        socket.once('error', reject);
      });
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await log.close();
    }
    const status = answerStatus(Buffer.from(answered, 'latin1'));
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AccessRecord);
    const outbound = lines.find((l) => l.direction === 'outbound' && l.path === '/ws');
    const inbound = lines.find((l) => l.direction === 'inbound' && l.path === '/ws');
    // An answer with a status line passes it on; none (the app closed) is a 502 in both lines.
    expect(status === undefined ? answered : status).not.toBe(101);
    expect([outbound?.status, inbound?.status]).toEqual([status ?? 502, status ?? 502]);
  });

  test('a file that cannot be written is refused at once, naming it and why; /dev/stdout is the process\'s own descriptor, left open when the log closes', () => {
    expect(() => openAccessLog({ file: '/proc/isthmus-access.log', given: '--access-log' })).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_CONFIG_PATH_UNUSABLE', message: expect.stringMatching(/\/proc\/isthmus-access\.log/),
    }));
    expect(() => openAccessLog({ file: dir, given: '--access-log' })).toThrow(expect.objectContaining({ message: expect.stringContaining('it is a directory') }));
    // Its own descriptor: closing the log does not close the process's standard output.
    return openAccessLog({ file: '/dev/stdout', given: '--access-log' }).close().then(() => expect(fstatSync(1).isFile() || fstatSync(1).isFIFO() || fstatSync(1).isCharacterDevice() || fstatSync(1).isSocket()).toBe(true));
  });

  test('a log that cannot be written (a full disk: /dev/full) turns itself off and says so once; the sidecar serves on', async () => {
    const problems: string[] = [];
    const log = started(openAccessLog({ file: '/dev/full', given: 'accessLog.file', onProblem: (p) => problems.push(p) }));
    try {
      for (let i = 0; i < 3; i += 1) expect(await viaOutbound('GET', 'http://echo.demo.mesh/full')).toBe(200);
      // Written at the periodic flush (every second).
      const until = Date.now() + 5000;
      while (problems.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(problems).toEqual([expect.stringMatching(/^the access log cannot be written \(.*ENOSPC.*\); it is off until the sidecar restarts$/)]);
      expect(await viaOutbound('GET', 'http://echo.demo.mesh/after')).toBe(200);
      await new Promise((r) => setTimeout(r, 1200));
      expect(problems).toHaveLength(1);
    } finally {
      await log.close();
    }
  });

  test('text format, and nothing more is written once closed', async () => {
    const file = join(dir, 'access.txt');
    const log = started(openAccessLog({ file, given: 'accessLog.file', format: 'text' }));
    expect(await viaOutbound('GET', 'http://echo.demo.mesh/plain')).toBe(200);
    await log.close();
    expect(await viaOutbound('GET', 'http://echo.demo.mesh/after-close')).toBe(200);
    // The inbound answers first (when the app's head arrives), the outbound once it relayed it.
    const lines = readFileSync(file, 'utf8').trim().split('\n').sort();
    expect(lines).toHaveLength(2);
    // 'app answered' is 12 bytes.
    expect(lines.find((l) => l.includes(' outbound '))).toMatch(/^\S+Z outbound "GET echo\.demo\.mesh\/plain HTTP\/1\.1" 200 [\d.]+ms service=demo\/echo cluster=west endpoint=\S+ headMs=[\d.]+ requestBytes=0 responseBytes=12 end=complete$/);
    expect(lines.find((l) => l.includes(' inbound '))).toMatch(/^\S+Z inbound "GET echo\.demo\.mesh\/plain HTTP\/1\.1" 200 [\d.]+ms caller=spiffe:\/\/example\.org\/ns\/demo\/sa\/client headMs=[\d.]+ requestBytes=0 responseBytes=12 end=complete$/);
  });
});
