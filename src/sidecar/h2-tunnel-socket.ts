import { Duplex } from 'node:stream';
import { h2Error } from '../h2/frames.js';
import type { H2Stream } from '../h2/stream.js';
import { hopByHop, withoutNominated } from './headers.js';

/** The longest answer head the tunnel waits for: far beyond any head the mesh writes. */
export const maxTunnelHeadBytes = 16 * 1024;


/**
 * An HTTP/2 CONNECT stream from the app (RFC 9113 §8.5) as a byte stream, so that the tunnel
 * code written for an HTTP/1.1 CONNECT's socket (outbound-tunnel.ts) carries it unchanged.
 *
 * - Reading gives the DATA the app sends; its END_STREAM is the end (a half-close). A piece is
 *   credited to the app (its flow-control window reopened) once this stream's buffer took it, so
 *   a tunnel whose far side is slow holds the app back.
 * - Writing takes what that code writes to an HTTP/1.1 caller: first an answer head
 *   (`HTTP/1.1 200 Connection Established`, the destination's refusal, or the sidecar's own
 *   error answer), which goes out as the stream's HEADERS (`:status`, the fields lower-cased, the
 *   connection-specific ones dropped), then bytes, which go out as DATA. Ending the writable side
 *   sends END_STREAM; after an answer other than 2xx the stream is then reset with NO_ERROR, so
 *   that the app stops sending a request nobody reads (RFC 9113 §8.1).
 * - An RST_STREAM from the app destroys this stream with an error (the tunnel's other side is
 *   torn down with it); destroying it before both sides ended resets the app's stream with
 *   CONNECT_ERROR, as §8.5 asks for a tunnel whose connection failed. HEADERS from the app after
 *   its CONNECT head are a stream error (PROTOCOL_ERROR): a connected stream carries DATA only.
 */
export class H2TunnelSocket extends Duplex {
  /** The answer head's bytes so far; undefined once it has gone out as HEADERS. */
  private headBytes: Buffer | undefined = Buffer.alloc(0);
  /** The answer's status, once its head went out. */
  status = 0;
  /** Octets the app sent that this stream's buffer holds beyond its mark: credited when read. */
  private owed = 0;
  private writeDone: ((err?: Error | null) => void) | undefined;

  constructor(readonly stream: H2Stream, endedWithHead: boolean) {
    super({ allowHalfOpen: true });
    stream.attach({
      onHeaders: () => stream.reset(h2Error.protocolError),
      onData: (_s, piece, end) => this.fromApp(piece, end),
      onWritable: () => this.writableAgain(),
      onClose: (_s, code) => this.streamClosed(code),
    });
    if (endedWithHead) this.push(null);
  }

  private fromApp(piece: Buffer, end: boolean): void {
    if (piece.length > 0) {
      // A view of the connection's read, valid during this call: the buffer keeps a copy.
      if (this.push(Buffer.from(piece))) this.stream.consumed(piece.length);
      else this.owed += piece.length;
    }
    if (end) this.push(null);
  }

  override _read(): void {
    if (this.owed === 0) return;
    const owed = this.owed;
    this.owed = 0;
    this.stream.consumed(owed);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    let data = chunk;
    if (this.headBytes !== undefined) {
      const rest = this.takeHead(chunk);
      if (rest instanceof Error) return done(rest);
      if (rest === undefined) return done();
      data = rest;
    }
    // The app's stream is gone (reset): destroy follows, nothing more can reach the app.
    if (data.length === 0 || !this.stream.localOpen) return done();
    if (this.stream.write(data)) done();
    else this.writeDone = done;
  }

  private writableAgain(): void {
    const done = this.writeDone;
    this.writeDone = undefined;
    done?.();
  }

  override _final(done: (err?: Error | null) => void): void {
    if (this.headBytes !== undefined) return done(new Error('the tunnel ended before a whole answer head'));
    this.stream.end();
    if (this.status >= 300) this.stream.reset(h2Error.noError);
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    if (!this.stream.closed) this.stream.reset(h2Error.connectError);
    this.writableAgain();
    done(err);
  }

  private streamClosed(code: number): void {
    if (code !== h2Error.noError) {
      this.destroy(Object.assign(new Error(`the app reset its CONNECT stream (HTTP/2 error code ${code})`), { code: 'ERR_H2_STREAM_RESET' }));
      return;
    }
    // Closed cleanly (both sides ended, or the app was told NO_ERROR): nothing more comes from it.
    if (!this.readableEnded) this.push(null);
  }

  /**
   * Adds `chunk` to the answer head; once the head is whole, sends it as HEADERS and returns the
   * bytes after it (the tunnel's first bytes, or an error answer's body). Undefined while the
   * head is not whole yet; an Error when it is not an HTTP/1.1 answer head or grows too long.
   */
  private takeHead(chunk: Buffer): Buffer | undefined | Error {
    const bytes = this.headBytes!.length === 0 ? chunk : Buffer.concat([this.headBytes!, chunk]);
    const end = bytes.indexOf('\r\n\r\n');
    if (end < 0) {
      if (bytes.length > maxTunnelHeadBytes) return new Error(`the tunnel's answer head is longer than ${maxTunnelHeadBytes} bytes`);
      this.headBytes = Buffer.from(bytes);
      return undefined;
    }
    const fields = answerFields(bytes.subarray(0, end).toString('latin1'));
    if (fields instanceof Error) return fields;
    this.headBytes = undefined;
    this.status = Number(fields[1]);
    this.stream.sendHeaders(fields, false);
    return bytes.subarray(end + 4);
  }
}

/**
 * Pure. An HTTP/1.1 answer head (without its final empty line) as HTTP/2 fields: `:status`
 * first, names lower-cased, the connection-specific fields dropped (RFC 9113 §8.2.2: headers.ts
 * hopByHop and what a Connection field names), and for a 2xx its length too (RFC 9110 §9.3.6: a
 * 2xx to CONNECT has no content). An Error for a head that is not an HTTP/1.x final answer's.
 */
export function answerFields(head: string): string[] | Error {
  const lines = head.split('\r\n');
  const status = /^HTTP\/1\.[01] ([2-5]\d\d)(?: |$)/.exec(lines[0] ?? '');
  if (!status) return new Error(`the tunnel's answer does not start with an HTTP/1.1 final status line: ${JSON.stringify((lines[0] ?? '').slice(0, 40))}`);
  const code = status[1] as string;
  const success = code.startsWith('2');
  const raw: string[] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return new Error(`the tunnel's answer has a malformed field line: ${JSON.stringify(line.slice(0, 40))}`);
    raw.push(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const fields = [':status', code];
  const named = withoutNominated(raw) ?? raw;
  for (let i = 0; i < named.length; i += 2) {
    const name = named[i] as string;
    if (hopByHop.has(name) || (success && name === 'content-length')) continue;
    fields.push(name, named[i + 1] as string);
  }
  return fields;
}
