import type { IncomingHttpHeaders } from 'node:http2';
import type { Duplex } from 'node:stream';
import { errorCodes, type ErrorCode } from '../core/errors.js';
import { H2Connection } from '../h2/connection.js';
import type { HeaderBlock } from '../h2/hpack.js';
import { h2Error } from '../h2/frames.js';
import type { H2Stream } from '../h2/stream.js';
import { encodeGrpcMessage, grpcStatusOf } from './grpc-status.js';
import type { H2Exchange } from './h2-exchange.js';

/**
 * What the sidecar's listeners on its own HTTP/2 (outbound-h2.ts, inbound-h2.ts) share: header
 * blocks as the objects the request path reads, objects back as blocks, the sidecar's own
 * answers on its streams, and what the relay tells an exchange's telemetry.
 */

/** A header block as node:http2 hands one over: repeated fields joined (cookie with "; ", others with ", "). */
export function headersOf(fields: readonly string[]): IncomingHttpHeaders {
  const out: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    const had = out[name];
    out[name] = had === undefined ? value : `${had}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return out;
}

/** A header object (pseudo-headers among its keys) as a block's fields, pseudo-headers first. */
export function fieldsOf(headers: Record<string, string | string[] | number | undefined>): string[] {
  const pseudo: string[] = [];
  const regular: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    const list = name.charCodeAt(0) === 58 ? pseudo : regular;
    if (Array.isArray(value)) for (const v of value) list.push(name, v);
    else list.push(name, String(value));
  }
  return pseudo.concat(regular);
}

/**
 * The sidecar's own answer on a stream of ours, as replyH2 gives on node:http2: the JSON error
 * and `x-isthmus-error`, or for gRPC a trailers-only answer with the mapped grpc-status and the
 * message. A stream whose head went out already is reset instead.
 */
export function replyOwnH2(stream: H2Stream, code: ErrorCode, message: string, grpc: boolean, exchange: H2Exchange | undefined, override?: { status: number; grpcStatus?: number; headers?: Record<string, string> }): void {
  if (stream.closed) return;
  if (stream.headSent) return void stream.reset(h2Error.internalError);
  const status = override?.status ?? errorCodes[code].status;
  if (grpc) {
    const grpcStatus = override?.grpcStatus ?? grpcStatusOf(status);
    if (exchange) exchange.grpcStatus = grpcStatus;
    stream.sendHeaders(fieldsOf({
      ':status': 200, ...override?.headers, 'content-type': 'application/grpc', 'grpc-status': String(grpcStatus),
      'grpc-message': encodeGrpcMessage(message), 'x-isthmus-error': code,
    }), true);
    return;
  }
  const body = Buffer.from(JSON.stringify({ error: { code, message } }));
  if (exchange) exchange.responseBytes += body.length;
  stream.sendHeaders(fieldsOf({ ':status': status, ...override?.headers, 'content-type': 'application/json', 'content-length': body.length, 'x-isthmus-error': code }), false);
  stream.write(body, true);
}


/**
 * The connections one listener serves on our HTTP/2 (outbound-h2.ts for the app's h2c,
 * inbound-h2.ts for other sidecars): each must open its first stream within `requestHeadersMs`
 * (as an HTTP/1.1 connection must send its first head), or is closed with GOAWAY (NO_ERROR,
 * nothing processed) whose debug data names the code; one idle for `idleMs` is closed
 * gracefully.
 */
export class H2Listener {
  private readonly connections = new Set<H2Connection>();

  /** `failed`: a connection ended by a failure of the sidecar's own code (a stream handler threw), which must not pass unseen. */
  constructor(
    private readonly limits: { requestHeadersMs: number; idleMs: number },
    private readonly onStream: (socket: Duplex, stream: H2Stream, head: HeaderBlock, endStream: boolean) => void,
    private readonly failed?: (err: Error) => void,
  ) {}

  accept(socket: Duplex): void {
    let first = true;
    const connection: H2Connection = new H2Connection(socket, {
      role: 'server',
      onStream: (stream, head, endStream) => {
        if (first) {
          first = false;
          clearTimeout(headTimer);
        }
        this.onStream(socket, stream, head, endStream);
      },
      onClose: (err) => {
        clearTimeout(headTimer);
        this.connections.delete(connection);
        if (err && (err as Error & { cause?: unknown }).cause !== undefined) this.failed?.(err);
      },
    });
    this.connections.add(connection);
    const headTimer = setTimeout(() => {
      connection.destroy(h2Error.noError, `ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT: no request head within ${this.limits.requestHeadersMs} ms (timeouts.requestHeaders)`);
    }, this.limits.requestHeadersMs);
    (socket as { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(this.limits.idleMs, () => connection.close());
  }

  /** GOAWAY to every connection: the streams they carry finish, no new one is taken (a draining inbound). */
  closeSessions(): void {
    for (const connection of this.connections) connection.close();
  }

  /** Closes every connection now (the listener's closeAllConnections). */
  destroySessions(): void {
    for (const connection of this.connections) connection.destroy();
  }
}

/** A field's value in a decoded block (the first, if repeated), without building an object. */
export function fieldOf(block: HeaderBlock, name: string): string | undefined {
  for (let i = 0; i < block.fields.length; i += 2) if (block.fields[i] === name) return block.fields[i + 1];
  return undefined;
}

/** What relayStream tells the caller's telemetry: the answer's grpc-status (head or trailers) and, while an access log reads them, its body's bytes. */
export function exchangeNotes(exchange: H2Exchange | undefined) {
  if (!exchange) return {};
  const note = (block: HeaderBlock) => exchange.noteGrpcStatus(fieldOf(block, 'grpc-status'));
  return {
    onHead: note,
    onTrailers: note,
    onAnswerBytes: exchange.countsBytes ? (n: number) => { exchange.responseBytes += n; } : undefined,
  };
}
