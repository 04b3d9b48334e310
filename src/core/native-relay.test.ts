import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { nativeRelay, NativeRelay, relayModule, type RelayedPair } from './native-relay.js';
import type { SpliceEnd, SplicedBytes } from './splice.js';

/**
 * A caller `c` and a destination `d`, each connected to a socket the "gateway" holds (`a` and
 * `b`), as the gateway holds them once it has dialled the destination.
 */
interface Wiring { c: Socket; a: Socket; b: Socket; d: Socket }

const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const server of servers.splice(0)) await new Promise((r) => server.close(r));
});

async function acceptedPair(): Promise<{ outer: Socket; inner: Socket }> {
  const server = createServer({ allowHalfOpen: true });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const outer = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await once(outer, 'connect');
  const [inner] = await accepted;
  sockets.push(outer, inner);
  return { outer, inner };
}

async function wiring(): Promise<Wiring> {
  const caller = await acceptedPair();
  const destination = await acceptedPair();
  return { c: caller.outer, a: caller.inner, b: destination.outer, d: destination.inner };
}

function relay(): NativeRelay {
  const loaded = nativeRelay();
  if (!(loaded instanceof NativeRelay)) throw new Error(`${relayModule} should be built by npm run build (scripts/native.mjs): ${loaded.unavailable}`);
  return loaded;
}

function ended(pair: RelayedPair): Promise<[SpliceEnd, SplicedBytes]> {
  return once(pair, 'close') as Promise<[SpliceEnd, SplicedBytes]>;
}

/** Everything `socket` reads until its end, hashed; `slow` pauses it now and then (back-pressure). */
function readAll(socket: Socket, slow = false): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      if (slow && bytes % 7 === 0) {
        socket.pause();
        setTimeout(() => socket.resume(), 2);
      }
    });
    socket.once('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
    socket.once('error', reject);
  });
}

/** Resolves once `socket` has read `n` bytes (and no more are expected). */
async function readExactly(socket: Socket, n: number): Promise<void> {
  let got = 0;
  while (got < n) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    got += chunk.length;
  }
  expect(got).toBe(n);
}

/** Writes `total` random bytes in pieces, with back-pressure, then ends; resolves with their hash. */
async function writeAll(socket: Socket, total: number): Promise<string> {
  const hash = createHash('sha256');
  let left = total;
  while (left > 0) {
    const piece = randomBytes(Math.min(left, 256 * 1024));
    hash.update(piece);
    left -= piece.length;
    if (!socket.write(piece)) await once(socket, 'drain');
  }
  socket.end();
  return hash.digest('hex');
}

describe('the native relay', () => {
  it('carries 64 MiB each way at once, with back-pressure, byte for byte, and counts them', async () => {
    const { c, a, b, d } = await wiring();
    const pair = relay().splice(a, b, undefined, 60_000);
    expect(pair).toBeDefined();
    const end = ended(pair as RelayedPair);
    const total = 64 * 1024 * 1024;
    // The destination reads slowly: the relay must hold back, not buffer the upload whole.
    const [atD, atC, sentByC, sentByD] = await Promise.all([readAll(d, true), readAll(c), writeAll(c, total), writeAll(d, total)]);
    expect(atD).toEqual({ bytes: total, sha256: sentByC });
    expect(atC).toEqual({ bytes: total, sha256: sentByD });
    const [how, bytes] = await end;
    expect(how).toBe('closed');
    expect(bytes).toEqual({ fromA: total, fromB: total });
  });

  it('says how many bytes each side has sent while the pair is still open, then the totals', async () => {
    const { c, a, b, d } = await wiring();
    const pair = relay().splice(a, b, Buffer.from('hello;'), 60_000) as RelayedPair;
    const end = ended(pair);
    // What was handed over counts from the start, before the thread has read anything.
    expect(pair.bytes()).toEqual({ fromA: 6, fromB: 0 });
    c.write('x'.repeat(1000));
    await readExactly(d, 1006);
    d.write('y'.repeat(300));
    await readExactly(c, 300);
    // Open still: the counts are those of the bytes that went through, not zero until the end.
    expect(pair.closed).toBe(false);
    expect(pair.bytes()).toEqual({ fromA: 1006, fromB: 300 });
    c.end();
    d.end();
    const [, bytes] = await end;
    expect(bytes).toEqual({ fromA: 1006, fromB: 300 });
    expect(pair.bytes()).toEqual({ fromA: 1006, fromB: 300 });
  });

  it('gives an ended pair\'s count slot to the next pair, counted from zero', async () => {
    const first = await wiring();
    const one = relay().splice(first.a, first.b, undefined, 60_000) as RelayedPair;
    first.c.write('abc');
    await readExactly(first.d, 3);
    first.c.end();
    first.d.end();
    await ended(one);
    const second = await wiring();
    const two = relay().splice(second.a, second.b, undefined, 60_000) as RelayedPair;
    expect(two.slot).toBe(one.slot);
    expect(two.bytes()).toEqual({ fromA: 0, fromB: 0 });
    second.d.write('z');
    await readExactly(second.c, 1);
    expect(two.bytes()).toEqual({ fromA: 0, fromB: 1 });
    two.destroy();
    await ended(two);
  });

  it('keeps 100 pairs at once apart, each byte to its own peer', async () => {
    const pairs = await Promise.all(Array.from({ length: 100 }, () => wiring()));
    const results = await Promise.all(pairs.map(async ({ c, a, b, d }, i) => {
      const pair = relay().splice(a, b, undefined, 60_000) as RelayedPair;
      const end = ended(pair);
      const size = 64 * 1024 + i * 997;
      const back = Math.floor(size / 2);
      const [atD, atC, sentByC, sentByD] = await Promise.all([readAll(d), readAll(c), writeAll(c, size), writeAll(d, back)]);
      const [how] = await end;
      return { how, up: atD.sha256 === sentByC && atD.bytes === size, down: atC.sha256 === sentByD && atC.bytes === back };
    }));
    expect(results.filter((r) => r.how !== 'closed' || !r.up || !r.down)).toEqual([]);
    expect(relay().size).toBe(0);
  });

  it('sends what the gateway read first, then what the caller\'s socket still held, before anything else', async () => {
    const { c, a, b, d } = await wiring();
    a.pause();
    c.write('held-in-a;');
    // Let a read it into its own buffer, unread.
    await new Promise((r) => setTimeout(r, 50));
    expect(a.readableLength).toBeGreaterThan(0);
    const pair = relay().splice(a, b, Buffer.from('hello;'), 60_000) as RelayedPair;
    c.end('after;');
    const got = await readAll(d);
    d.end();
    await ended(pair);
    expect(got.bytes).toBe('hello;held-in-a;after;'.length);
    expect(got.sha256).toBe(createHash('sha256').update('hello;held-in-a;after;').digest('hex'));
  });

  it('passes a half-close on while the other direction keeps flowing', async () => {
    const { c, a, b, d } = await wiring();
    const pair = relay().splice(a, b, undefined, 60_000) as RelayedPair;
    const end = ended(pair);
    let closedEarly = false;
    void end.then(() => { closedEarly = true; });
    const atD = readAll(d);
    c.end('question');
    expect((await atD).bytes).toBe('question'.length);
    // The caller has finished sending; the destination still answers, in pieces, after a while.
    const atC = readAll(c);
    for (const piece of ['an', 'sw', 'er']) {
      await new Promise((r) => setTimeout(r, 30));
      d.write(piece);
    }
    expect(closedEarly).toBe(false);
    d.end();
    expect((await atC).bytes).toBe('answer'.length);
    const [how, bytes] = await end;
    expect(how).toBe('closed');
    expect(bytes).toEqual({ fromA: 8, fromB: 6 });
  });

  it('closes both sides when one is reset', async () => {
    const { c, a, b, d } = await wiring();
    const pair = relay().splice(a, b, undefined, 60_000) as RelayedPair;
    const end = ended(pair);
    // The caller's side is closed (its FIN, or a reset) rather than left open.
    const cDone = new Promise((resolve) => { c.once('end', resolve); c.once('error', resolve); });
    d.write('x');
    await once(c, 'data');
    d.resetAndDestroy();
    const [how] = await end;
    expect(how).toBe('error');
    await cDone;
  });

  it('closes both sides after idleMs with no byte either way, and not while bytes flow', async () => {
    const { c, a, b, d } = await wiring();
    const started = performance.now();
    const pair = relay().splice(a, b, undefined, 300) as RelayedPair;
    const end = ended(pair);
    const cEnded = once(c, 'end');
    const dEnded = once(d, 'end');
    c.resume();
    d.resume();
    // Bytes every 100 ms for 600 ms keep it open past its idle limit.
    for (let i = 0; i < 6; i += 1) {
      await new Promise((r) => setTimeout(r, 100));
      c.write('.');
    }
    const [how, bytes] = await end;
    expect(how).toBe('idle');
    expect(bytes.fromA).toBe(6);
    expect(performance.now() - started).toBeGreaterThan(850);
    await Promise.all([cEnded, dEnded]);
  });

  it('closes both sides when the pair is destroyed (a gateway that stops)', async () => {
    const { c, a, b, d } = await wiring();
    const pair = relay().splice(a, b, undefined, 60_000) as RelayedPair;
    const end = ended(pair);
    c.resume();
    d.resume();
    const closed = Promise.all([once(c, 'end'), once(d, 'end')]);
    pair.destroy();
    const [how] = await end;
    expect(how).toBe('error');
    await closed;
    expect(relay().size).toBe(0);
  });

  it('leaves sockets it cannot take (writes still queued) untouched', async () => {
    const { a, b } = await wiring();
    b.cork();
    b.write('queued');
    expect(relay().splice(a, b, undefined, 60_000)).toBeUndefined();
    expect(a.destroyed || b.destroyed).toBe(false);
  });
});
