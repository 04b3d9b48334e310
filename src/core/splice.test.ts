import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Writable, type Duplex } from 'node:stream';
import { afterEach, describe, expect, test } from 'vitest';
import { OwnReads, splice, type SpliceEnd, type SplicedBytes } from './splice.js';

/**
 * splice() with its second side read through OwnReads, as the gateway connects to a destination:
 * a caller ↔ relay ↔ destination chain of real sockets on loopback.
 */

const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(resolve));
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/**
 * A relay that splices each caller to `destination`, reading the destination with OwnReads and,
 * with `callerReads`, the accepted caller too (as the gateway does); resolves with how the splice
 * ended.
 */
async function relay(destination: number, idleMs = 10_000, callerReads = false): Promise<{ port: number; ended: Promise<{ how: SpliceEnd; bytes: SplicedBytes }> }> {
  let done: (v: { how: SpliceEnd; bytes: SplicedBytes }) => void = () => undefined;
  const ended = new Promise<{ how: SpliceEnd; bytes: SplicedBytes }>((resolve) => { done = resolve; });
  const port = await listen(createServer({ allowHalfOpen: true, pauseOnConnect: true }, (caller) => {
    const reads = new OwnReads();
    sockets.push(caller);
    const start = (first?: Buffer) => {
      const upstream = connect({ host: '127.0.0.1', port: destination, allowHalfOpen: true, onread: reads.onread });
      sockets.push(upstream);
      upstream.once('connect', () => {
        if (first) upstream.write(first);
        splice(caller, upstream, idleMs, undefined, (how, bytes) => done({ how, bytes }), reads, callerReads ? new OwnReads() : undefined);
        caller.resume();
      });
    };
    if (!callerReads) return start();
    // As the gateway: the first bytes read in flowing mode (its ClientHello), then paused while
    // it connects; what the caller sends meanwhile waits in the socket's readable buffer.
    caller.once('data', (first: Buffer) => {
      caller.pause();
      start(first);
    });
    caller.resume();
  }));
  return { port, ended };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('splice with OwnReads on the destination side', () => {
  test('16 MiB from the destination, sent in small pieces, reach a caller that stops reading now and then: byte for byte, with the relay holding little', async () => {
    const body = randomBytes(16 << 20);
    // Small writes make small reads at the relay: its writes to a caller who is not reading are
    // kept by the socket below the high-water mark, so the next read must go to a fresh buffer.
    const destination = await listen(createServer((socket) => {
      let at = 0;
      const next = (): void => {
        while (at < body.length) {
          const size = 500 + Math.floor(Math.random() * 2500);
          const more = socket.write(body.subarray(at, at + size));
          at += size;
          if (!more) return void socket.once('drain', next);
        }
        socket.end();
      };
      next();
    }));
    const { port, ended } = await relay(destination);
    const callerSide = new Promise<Socket>((resolve) => servers[servers.length - 1]?.once('connection', resolve));
    const caller = connect(port, '127.0.0.1');
    sockets.push(caller);
    const relayToCaller = await callerSide;
    let held = 0;
    const watch = setInterval(() => { held = Math.max(held, relayToCaller.writableLength); }, 2);
    const chunks: Buffer[] = [];
    let paused = 0;
    caller.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (chunks.length % 10 === 0) {
        paused += 1;
        caller.pause();
        setTimeout(() => caller.resume(), 50);
      }
    });
    await new Promise((resolve) => caller.on('end', resolve));
    clearInterval(watch);
    const got = Buffer.concat(chunks);
    expect(got.length).toBe(body.length);
    expect(sha256(got)).toBe(sha256(body));
    expect(paused).toBeGreaterThan(5);
    // Back-pressure: the relay stops reading the destination while the caller does not read.
    expect(held).toBeLessThan(256 * 1024);
    caller.end();
    const { bytes } = await ended;
    expect(bytes.fromB).toBe(body.length);
  });

  test('a write that keeps what it was given sends the next read to a fresh buffer: every piece stays as it was read', async () => {
    const pieces = Array.from({ length: 200 }, () => randomBytes(1000));
    // Small pieces, apart in time, so that each is a read of its own.
    const destination = await listen(createServer((socket) => {
      let i = 0;
      const next = (): void => {
        const piece = pieces[i++];
        if (!piece) return void socket.end();
        socket.write(piece);
        setTimeout(next, 1);
      };
      next();
    }));
    // A writer that holds on to each chunk, as a socket does with a write the kernel did not take whole.
    const held: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 1 << 20,
      write(chunk: Buffer, _encoding, callback) {
        held.push(chunk);
        setTimeout(callback, 5);
      },
    });
    const reads = new OwnReads();
    let counted = 0;
    reads.attach(slow as unknown as Duplex, (n) => { counted += n; });
    const upstream = connect({ host: '127.0.0.1', port: destination, onread: reads.onread });
    sockets.push(upstream);
    await new Promise((resolve) => upstream.on('end', resolve));
    // Every chunk handed to the writer, written at its pace.
    await new Promise((resolve) => slow.end(resolve));
    const all = Buffer.concat(pieces);
    expect(counted).toBe(all.length);
    expect(held.length).toBeGreaterThan(20);
    expect(sha256(Buffer.concat(held))).toBe(sha256(all));
  });

  test('a half-close is passed on both ways: the destination\'s end reaches the caller, who may still send, and the other way round', async () => {
    const destination = await listen(createServer({ allowHalfOpen: true }, (socket) => {
      let heard = '';
      socket.end('bye');
      socket.on('data', (c: Buffer) => { heard += c.toString(); });
      // What the caller sends after the destination's FIN still arrives; then the destination closes.
      socket.on('end', () => socket.destroy(heard === 'late words' ? undefined : new Error(`heard ${heard}`)));
    }));
    const { port, ended } = await relay(destination);
    const caller = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    sockets.push(caller);
    let got = '';
    caller.on('data', (c: Buffer) => { got += c.toString(); });
    await new Promise((resolve) => caller.on('end', resolve));
    expect(got).toBe('bye');
    caller.end('late words');
    const { how, bytes } = await ended;
    expect(how).toBe('closed');
    expect(bytes).toEqual({ fromA: 'late words'.length, fromB: 3 });
  });

  test('bytes from the destination count as activity for the idle timeout; silence closes both', async () => {
    const destination = await listen(createServer((socket) => {
      let n = 0;
      const timer = setInterval(() => {
        socket.write('.');
        if (++n === 8) clearInterval(timer);
      }, 100);
      socket.on('close', () => clearInterval(timer));
    }));
    const { port, ended } = await relay(destination, 300);
    const caller = connect(port, '127.0.0.1');
    sockets.push(caller);
    let got = '';
    caller.on('data', (c: Buffer) => { got += c.toString(); });
    const started = Date.now();
    const { how } = await ended;
    expect(how).toBe('idle');
    // Eight dots 100 ms apart kept it open past 300 ms; it closed once they stopped.
    expect(got).toBe('........');
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
  });
});

describe('splice with OwnReads on both sides (the gateway\'s accepted caller adopted)', () => {
  test('an accepted socket can be adopted on this Node (net.Socket\'s onread keys are where adopt looks)', async () => {
    const adopted = new Promise<boolean>((resolve) => {
      void listen(createServer((socket) => {
        sockets.push(socket);
        resolve(new OwnReads().adopt(socket));
      })).then((port) => sockets.push(connect(port, '127.0.0.1')));
    });
    expect(await adopted).toBe(true);
  });

  test('16 MiB from the caller, in small pieces, after bytes it sent before the splice, reach a destination that stops reading now and then: byte for byte, with the relay holding little', async () => {
    const body = randomBytes(16 << 20);
    let held = 0;
    const received = new Promise<Buffer>((resolve) => {
      void listen(createServer({ allowHalfOpen: true }, (socket) => {
        const chunks: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          if (chunks.length % 10 === 0) {
            socket.pause();
            setTimeout(() => socket.resume(), 50);
          }
        });
        socket.on('end', () => {
          socket.end();
          resolve(Buffer.concat(chunks));
        });
      })).then(async (destination) => {
        const { port } = await relay(destination, 10_000, true);
        const relaySide = new Promise<Socket>((r) => servers[servers.length - 1]?.once('connection', r));
        const caller = connect(port, '127.0.0.1');
        sockets.push(caller);
        // Sent at once: the relay has not spliced yet (it connects to the destination first).
        caller.write(body.subarray(0, 1000));
        const relayIn = await relaySide;
        const upstreams = () => sockets.filter((s) => s !== caller && s !== relayIn);
        const watch = setInterval(() => { for (const u of upstreams()) held = Math.max(held, u.writableLength); }, 2);
        let at = 1000;
        const next = (): void => {
          while (at < body.length) {
            const size = 500 + Math.floor(Math.random() * 2500);
            const more = caller.write(body.subarray(at, at + size));
            at += size;
            if (!more) return void caller.once('drain', next);
          }
          caller.end();
        };
        next();
        caller.on('close', () => clearInterval(watch));
        caller.resume();
      });
    });
    const got = await received;
    expect(got.length).toBe(body.length);
    expect(sha256(got)).toBe(sha256(body));
    // Back-pressure: the relay stops reading the caller while the destination does not read.
    expect(held).toBeLessThan(256 * 1024);
  });

  test('a half-close is passed on both ways, and the caller\'s bytes are counted', async () => {
    const destination = await listen(createServer({ allowHalfOpen: true }, (socket) => {
      let heard = '';
      socket.on('data', (c: Buffer) => { heard += c.toString(); });
      // The caller's FIN arrives; the destination still answers, then ends.
      socket.on('end', () => socket.end(`heard ${heard}`));
    }));
    const { port, ended } = await relay(destination, 10_000, true);
    const caller = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    sockets.push(caller);
    // The first bytes are the relay's to read before it splices (the gateway's ClientHello); the rest after.
    caller.write('hi ');
    await new Promise((resolve) => setTimeout(resolve, 200));
    caller.end('words');
    let got = '';
    caller.on('data', (c: Buffer) => { got += c.toString(); });
    await new Promise((resolve) => caller.on('end', resolve));
    expect(got).toBe('heard hi words');
    caller.destroy();
    const { bytes } = await ended;
    expect(bytes).toEqual({ fromA: 5, fromB: 14 });
  });

  test('bytes from the caller count as activity for the idle timeout', async () => {
    const destination = await listen(createServer((socket) => socket.resume()));
    const { port, ended } = await relay(destination, 300, true);
    const caller = connect(port, '127.0.0.1');
    sockets.push(caller);
    let n = 0;
    const timer = setInterval(() => {
      caller.write('.');
      if (++n === 8) clearInterval(timer);
    }, 100);
    const started = Date.now();
    const { how, bytes } = await ended;
    clearInterval(timer);
    expect(how).toBe('idle');
    // The first dot was read before the splice, as the gateway reads a ClientHello.
    expect(bytes.fromA).toBe(7);
    expect(Date.now() - started).toBeGreaterThanOrEqual(800);
  });
});
