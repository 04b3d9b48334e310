import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { Duplex } from 'node:stream';
import { sniffPreface } from './h2-preface.js';
import { FirstHeads } from './protocol-sniff.js';
import type { H2Acceptor } from './protocol-sniff.js';

/** The first byte of every TLS connection: a handshake record (RFC 8446 §5.1, content type 22). */
const tlsHandshake = 0x16;

/**
 * What a permissive listener does with a connection that does not start with a TLS handshake:
 * `undecided` while more bytes are needed, else the handler it goes to. The handler gets the
 * socket paused, with the bytes read so far put back first.
 */
export type PlaintextHandover = (seen: Buffer) => ((socket: Socket) => void) | 'undecided';

/**
 * Lets an mTLS listener (the HTTP inbound, the TCP inbound) also take plain-text callers on the
 * same port while its namespace is `permissive` (docs/authorization.md, "mTLS mode"): each new
 * connection's first bytes are read; a TLS handshake goes on to TLS as before, anything else to
 * `handOver`. Plain-text callers carry no identity. While `permissive()` is false (strict, the
 * default) nothing is read: every connection goes to TLS at once, exactly as without this, and a
 * plain-text caller fails the handshake (counted through `isPlaintextCaller`).
 *
 * Why a stream in between for TLS in permissive mode: Node's TLS socket reads straight from the
 * TCP handle, so a byte already read in JavaScript (the sniffed one) would be lost; wrapped in a
 * JavaScript Duplex that gives the byte back first, the TLS socket reads through the stream
 * instead (Node 20.20's TLSSocket takes any Duplex). That costs a copy per chunk, only while a
 * namespace migrates. As in protocol-sniff.ts, the TLS server's own 'connection' listener
 * (the one that starts TLS, added by its constructor) is taken and called here.
 */
export function acceptPlaintextWhen(server: TlsServer, permissive: () => boolean, firstBytesTimeoutMs: number, handOver: PlaintextHandover): void {
  const [tlsAccept] = server.listeners('connection') as ((socket: Duplex) => void)[];
  if (!tlsAccept) throw new Error('the TLS server has no connection handler to share');
  server.removeListener('connection', tlsAccept);
  server.prependListener('connection', (socket: Socket) => {
    if (!permissive()) return void tlsAccept.call(server, socket);
    const timer = setTimeout(() => socket.destroy(), firstBytesTimeoutMs);
    const onError = () => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.once('error', onError);
    socket.once('end', onError);
    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const handler = seen[0] === tlsHandshake ? 'tls' : handOver(seen);
      if (handler === 'undecided') return;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('end', onError);
      socket.pause();
      if (handler === 'tls') return void tlsAccept.call(server, new Replayed(socket, seen));
      socket.unshift(seen);
      handler(socket);
    };
    socket.on('data', onData);
  });
}

/**
 * The HTTP inbound's plain-text side: the HTTP/2 preface (h2c with prior knowledge, as gRPC
 * clients send it) goes to `h2`, anything else to `plain` (HTTP/1.1), whose first head is timed
 * (protocol-sniff.ts, FirstHeads).
 */
export function acceptPlaintextHttpWhen(https: HttpsServer, plain: HttpServer, h2: H2Acceptor, permissive: () => boolean, firstBytesTimeoutMs: number): void {
  const firstHeads = new FirstHeads(plain, firstBytesTimeoutMs);
  acceptPlaintextWhen(https, permissive, firstBytesTimeoutMs, (seen) => {
    const protocol = sniffPreface(seen);
    if (protocol === 'undecided') return 'undecided';
    if (protocol === 'h2') return (socket) => h2.accept(socket);
    return (socket) => {
      plain.emit('connection', socket);
      firstHeads.arm(socket);
      socket.resume();
    };
  });
}

/**
 * Whether a failed TLS handshake (a server's 'tlsClientError') was a plain-text caller: OpenSSL
 * found no TLS record where the first one should be (ssl3_get_record: an HTTP method, `CONNECT`,
 * or a record header whose version is not 3.x, which is what any other plain-text protocol's
 * first five bytes give: the HTTP/2 preface, a redis command, NULs). A TLS client that fails
 * later (no certificate, an unknown CA, a wrong ALPN) gives other codes, and a peer that leaves
 * before sending five bytes gives ECONNRESET: neither is counted as plain text.
 */
export function isPlaintextCaller(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ERR_SSL_HTTP_REQUEST' || err.code === 'ERR_SSL_HTTPS_PROXY_REQUEST' || err.code === 'ERR_SSL_WRONG_VERSION_NUMBER';
}

/** `socket` as a Duplex whose first chunk is `first` again. */
class Replayed extends Duplex {
  constructor(private readonly socket: Socket, first: Buffer) {
    super({ allowHalfOpen: true });
    // The TLS socket above decides when its side ends (a TCP tunnel passes the caller's FIN on
    // and keeps answering); the raw socket must not end its own side when the caller's FIN arrives.
    socket.allowHalfOpen = true;
    this.push(first);
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.socket.write(chunk, encoding, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy();
    callback(err);
  }
}
