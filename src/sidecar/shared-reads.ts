import type { Socket } from 'node:net';
import { buildConnector, type Connector, type ConnectorOptions } from '../core/undici.js';

/**
 * One read buffer for every pooled upstream connection of the process.
 *
 * By default each read of a Node socket gets a fresh 64 KiB allocation from malloc, shrunk to
 * what was read, wrapped in an ArrayBuffer and pushed through the socket's Readable stream. For a
 * proxy that reads one small answer per request, that is one malloc, one realloc, one backing
 * store and one stream push per read: in a `perf` profile of the client sidecar at 1000
 * requests/s, malloc and free alone took about 6% of its samples (docs/benchmark-history.md).
 *
 * Node's `onread` option (net.connect and tls.connect; for TLS, the decrypted bytes) reads into
 * a buffer given once instead and hands each read to a callback. Reads are delivered one at a
 * time on the main thread, and each is parsed before the next is read, so one buffer serves every
 * connection, as node:http's server shares one for the parsers it feeds. What a reader keeps
 * beyond its callback it must copy, since the next read overwrites the buffer. Node's HTTP parser,
 * the one reader here (h1-connection.ts), already does: a head becomes strings, and each body
 * chunk it hands on is a copy of its own (h1-connection.test.ts keeps every chunk of two
 * interleaved 4 MiB downloads and checks both). A long body with a length that h1-connection.ts
 * relays as views, with no copy, is read into a buffer of its socket's own instead
 * (readOwnBuffer, below).
 */
const sharedSockets = new WeakSet<Socket>();
const readBuffer = Buffer.allocUnsafeSlow(64 * 1024);
const readBytes = readBuffer.length;

/** Sockets that read into a buffer of their own for now (readOwnBuffer). */
const ownBuffers = new WeakMap<Socket, Buffer>();

/** The socket whose read `deliver` handed over last. */
let lastReader: Socket | undefined;

/**
 * The buffer of a socket's next read. Node asks right after each read's callback (`deliver`,
 * called as a method of the socket) and names no socket itself: it is the one `deliver` saw.
 */
function nextReadBuffer(): Buffer {
  const own = lastReader && ownBuffers.get(lastReader);
  lastReader = undefined;
  return own ?? readBuffer;
}

/**
 * From the read after the current one, `socket` reads into a fresh buffer of its own, which no
 * other socket touches: a reader may then hand views of its reads to something that holds them
 * past the callback (a socket write not taken whole), and call this again when one is held, so
 * that the next read goes elsewhere. h1-connection.ts does this for a long body it relays as
 * views. No effect on a socket that does not read into the shared buffer (its reads are fresh).
 */
export function readOwnBuffer(socket: Socket): void {
  if (sharedSockets.has(socket)) ownBuffers.set(socket, Buffer.allocUnsafeSlow(readBytes));
}

/** From the read after the current one, `socket` reads into the shared buffer again. */
export function readSharedBuffer(socket: Socket): void {
  ownBuffers.delete(socket);
}

/** Who reads each socket made by `sharedReadConnector`. */
const readers = new WeakMap<Socket, (chunk: Buffer) => void>();

/** Node's onread callback; `this` is the socket. Returning true keeps the socket reading. */
function deliver(this: Socket, nread: number, buffer: Uint8Array): boolean {
  lastReader = this;
  const reader = readers.get(this);
  if (reader) reader((buffer as Buffer).subarray(0, nread));
  // Bytes before anyone asked for them: the connection cannot be trusted with a request.
  else this.destroy();
  return true;
}

/** undici's connector (TLS, session cache, connect timeout) for sockets that read into the shared buffer. */
export function sharedReadConnector(options: ConnectorOptions): Connector {
  const connect = buildConnector({ ...options, onread: { buffer: nextReadBuffer, callback: deliver } } as ConnectorOptions);
  return (opts, callback) => connect(opts, (err, socket) => {
    if (socket) sharedSockets.add(socket as Socket);
    (callback as (err: Error | null, socket: unknown) => void)(err, socket);
  });
}

/**
 * Reads `socket` with `reader`: a socket of `sharedReadConnector` through the shared buffer (each
 * chunk a view valid only until `reader` returns), any other through its 'data' events.
 */
export function readSocket(socket: Socket, reader: (chunk: Buffer) => void): void {
  if (sharedSockets.has(socket)) readers.set(socket, reader);
  else socket.on('data', reader);
}
