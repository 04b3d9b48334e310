import { createServer, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { h2Preface } from './h2-preface.js';
import { H2Connection } from '../h2/connection.js';
import { servePriorKnowledgeH2, type H2Acceptor } from './protocol-sniff.js';

let http1: Server;
let h2: H2Acceptor;
let accepted = 0;
let port: number;
const sockets: Socket[] = [];

// A real HTTP/1.1 server sharing its port with a real HTTP/2 one, as the outbound proxy does.
beforeEach(async () => {
  http1 = createServer((req, res) => res.end(`http1 ${req.method} ${req.url}`));
  const connections: H2Connection[] = [];
  accepted = 0;
  h2 = {
    accept: (socket) => (accepted += 1) && connections.push(new H2Connection(socket, {
      role: 'server',
      onStream: (stream) => {
        stream.attach({ onHeaders: () => undefined, onData: (st, piece) => st.consumed(piece.length), onClose: () => undefined });
        stream.sendHeaders([':status', '200'], false);
        stream.write(Buffer.from('h2'), true);
      },
    })),
    destroySessions: () => { for (const c of connections) c.destroy(); },
  };
  servePriorKnowledgeH2(http1, h2, 300);
  await new Promise<void>((resolve) => http1.listen(0, '127.0.0.1', resolve));
  port = (http1.address() as AddressInfo).port;
});

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  http1.closeAllConnections();
  await new Promise<void>((resolve) => http1.close(() => resolve()));
});

/** Writes `pieces` with a pause between them, as a slow client would, and collects what comes back until `until` says enough or the server closes. */
function exchange(pieces: Buffer[], until: (received: Buffer) => boolean): Promise<{ received: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (until(received)) resolve({ received, closed: false });
    });
    socket.on('close', () => resolve({ received, closed: true }));
    socket.on('error', reject);
    let i = 0;
    const next = () => {
      const piece = pieces[i++];
      if (!piece) return;
      socket.write(piece);
      setTimeout(next, 30);
    };
    socket.once('connect', next);
  });
}

const emptySettings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

test('the HTTP/2 preface arriving in two pieces still reaches the HTTP/2 server, which answers with its SETTINGS frame', async () => {
  const { received } = await exchange([h2Preface.subarray(0, 10), Buffer.concat([h2Preface.subarray(10), emptySettings])], (r) => r.length >= 9);
  expect(received[3]).toBe(0x4); // frame type SETTINGS (RFC 9113 §6.5)
});

test('only a connection that sends the preface reaches the HTTP/2 side; HTTP/1.1 ones never do', async () => {
  const { received } = await exchange([Buffer.from('GET /x HTTP/1.1\r\nhost: a\r\n\r\n')], (r) => r.includes('http1 GET /x'));
  expect(received.toString()).toContain('http1 GET /x');
  expect(accepted).toBe(0);
  await exchange([Buffer.concat([h2Preface, emptySettings])], (r) => r.length >= 9);
  expect(accepted).toBe(1);
});

test('an HTTP/1.1 request whose first byte looks like the preface is served by the HTTP/1.1 server, bytes intact', async () => {
  const { received } = await exchange([Buffer.from('P'), Buffer.from('UT /kept HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n')], (r) => r.includes('http1 PUT /kept'));
  expect(received.toString()).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*http1 PUT \/kept$/);
});

test('a connection that sends nothing is closed after the first-bytes timeout', async () => {
  const { received, closed } = await exchange([], () => false);
  expect(closed).toBe(true);
  expect(received.length).toBe(0);
});

test('closeAllConnections also closes HTTP/2 sessions', async () => {
  await exchange([Buffer.concat([h2Preface, emptySettings])], (r) => r.length >= 9);
  const closed = new Promise<boolean>((resolve) => sockets[0]!.once('close', () => resolve(true)));
  http1.closeAllConnections();
  expect(await closed).toBe(true);
});

describe('an HTTP/1.1 server that is handed its sockets (a fixed listener whose protocol the catalog decides)', () => {
  // Node times heads only on a server that listens; this one never does, as in tcp-listener.ts.
  let front: NetServer;
  let handed: Server;

  beforeEach(async () => {
    handed = createServer((req, res) => res.end(`handed ${req.url}`));
    servePriorKnowledgeH2(handed, { accept: (socket) => socket.destroy(), destroySessions: () => undefined }, 300);
    front = createNetServer((socket) => handed.emit('connection', socket));
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  });

  afterEach(async () => {
    handed.closeAllConnections();
    await new Promise<void>((resolve) => front.close(() => resolve()));
  });

  /** Writes `pieces` a pause apart, then ends (or, with `end` false, keeps silent); resolves with what came back once closed. */
  const talk = (pieces: string[], pauseMs: number, end = true) => new Promise<string>((resolve) => {
    const socket = connect((front.address() as AddressInfo).port, '127.0.0.1');
    sockets.push(socket);
    let received = '';
    socket.on('data', (chunk: Buffer) => { received += chunk.toString(); });
    socket.on('close', () => resolve(received));
    socket.on('error', () => undefined);
    setTimeout(() => socket.destroy(), 5_000).unref(); // a server that never closes fails the test, not its timeout
    let i = 0;
    const next = () => {
      const piece = pieces[i++];
      if (piece === undefined) return void (end && setTimeout(() => socket.end(), pauseMs));
      socket.write(piece);
      setTimeout(next, pauseMs);
    };
    socket.once('connect', next);
  });

  test('a head that stalls past timeouts.requestHeaders gets 408 with ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT', async () => {
    const received = await talk(['GET /never-finished HTTP/1.1\r\nhost: x\r\n'], 10, false);
    expect(received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(received).toContain('x-isthmus-error: ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT');
  });

  test('the control: a connection whose first head came in time keeps serving after the limit', async () => {
    const received = await talk(['GET /one HTTP/1.1\r\nhost: x\r\n\r\n', 'GET /two HTTP/1.1\r\nhost: x\r\n\r\n'], 400);
    expect(received).toContain('handed /one');
    expect(received).toContain('handed /two');
    expect(received).not.toContain('408');
  });
});
