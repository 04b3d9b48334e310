import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Http2Server } from 'node:http2';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { sniffPreface } from './h2-preface.js';
import { FirstHeads } from './protocol-sniff.js';

/** The first byte of every TLS connection: a handshake record (RFC 8446 §5.1, content type 22). */
const tlsHandshake = 0x16;

/**
 * Lets the mTLS inbound also take plain-text callers on the same port while its namespace is
 * `permissive` (docs/authorization.md, "mTLS mode"): each new connection's first bytes are
 * read; a TLS handshake goes on to TLS as before, the HTTP/2 preface (h2c with prior knowledge,
 * as gRPC clients send it) to `h2`, anything else to `plain` (HTTP/1.1). Their requests carry
 * no identity. While `permissive()` is false (strict, the default) nothing is
 * read: every connection goes to TLS at once, exactly as without this, and a plain-text caller
 * fails the handshake.
 *
 * Why a stream in between for TLS in permissive mode: Node's TLS socket reads straight from the
 * TCP handle, so a byte already read in JavaScript (the sniffed one) would be lost; wrapped in a
 * JavaScript Duplex that gives the byte back first, the TLS socket reads through the stream
 * instead (Node 20.20's TLSSocket takes any Duplex). That costs a copy per chunk, only while a
 * namespace migrates. As in protocol-sniff.ts, the HTTPS server's own 'connection' listener
 * (the one that starts TLS, added by its constructor) is taken and called here.
 */
export function acceptPlaintextWhen(https: HttpsServer, plain: HttpServer, h2: Http2Server, permissive: () => boolean, firstBytesTimeoutMs: number): void {
  const [tlsAccept] = https.listeners('connection') as ((socket: Duplex) => void)[];
  if (!tlsAccept) throw new Error('the HTTPS server has no connection handler to share');
  https.removeListener('connection', tlsAccept);
  const firstHeads = new FirstHeads(plain, firstBytesTimeoutMs);
  https.prependListener('connection', (socket: Socket) => {
    if (!permissive()) return void tlsAccept.call(https, socket);
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
      const tls = seen[0] === tlsHandshake;
      const protocol = tls ? 'tls' : sniffPreface(seen);
      if (protocol === 'undecided') return;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('end', onError);
      socket.pause();
      if (protocol === 'tls') return void tlsAccept.call(https, new Replayed(socket, seen));
      socket.unshift(seen);
      if (protocol === 'h2') return void h2.emit('connection', socket);
      plain.emit('connection', socket);
      firstHeads.arm(socket);
      socket.resume();
    };
    socket.on('data', onData);
  });
}

/** `socket` as a Duplex whose first chunk is `first` again. */
class Replayed extends Duplex {
  constructor(private readonly socket: Socket, first: Buffer) {
    super({ allowHalfOpen: true });
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
