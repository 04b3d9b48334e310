import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Connector } from '../core/undici.js';
import { HTTPParser, releaseParser, type NativeParser, type ParseError } from './native-http-parser.js';
import { bodyTrailers, forwardableTrailers, lastChunkWith } from './body-trailers.js';
import { onlyChunked } from './chunked-decoder.js';
import { fieldsObject, invalidFieldName, invalidFieldValue } from './headers.js';
import { RawBody } from './raw-body.js';
import { keepsView, lendView, socketHolds, viewsLength } from './lent-views.js';
import { readOwnBuffer, readSharedBuffer, readSocket } from './shared-reads.js';

/** The callback's return value that tells llhttp the response has no body (an answer to HEAD). */
const skipBody = 1;
/**
 * The callback's return value that tells llhttp to stop after the head, as for an upgrade: the
 * parser reports how far it read, and the bytes after that are the connection's to read (a body
 * relayed as views, below).
 */
const stopAfterHead = 2;

/**
 * A handler that may be handed body chunks as views of a read buffer that a later read reuses,
 * lent (lent-views.ts): it hands each one on before its onResponseData returns, or, when
 * something still holds it, says so with `keepsView(chunk)`. Such a handler gets a long body with
 * a length, or a chunked one, without Node's parser copying each chunk into a buffer of its own
 * (response-relay.ts).
 */
export interface ViewReader {
  readonly takesViews: true;
}

/**
 * A handler that takes an answer's head as the parser gave it, names and values alternating, in
 * place of onResponseStart's object: names as the upstream spelled them, each one already checked
 * by llhttp (a token; a value without CR, LF or NUL). A 1xx head never reaches it.
 */
export interface FieldsReader {
  onResponseFields(controller: Dispatcher.DispatchController, status: number, fields: readonly string[], statusMessage: string): void;
}

type Controller = Dispatcher.DispatchController;
type Handler = Dispatcher.DispatchHandler;
type Headers = Record<string, string | string[]>;

export interface H1ConnectionOptions {
  /** Opens the socket: undici's connector (TLS options, session cache, connect timeout, no delay). */
  connect: Connector;
  /** An idle connection is closed after this; a shorter `Keep-Alive: timeout=` from the server wins. */
  idleMs: number;
}

/** How much sooner than the server's announced keep-alive timeout an idle connection is closed. */
const keepAliveMarginMs = 1_000;

/** Methods whose request carries content: sent with `content-length: 0` when they have no body (as undici does). */
const payloadMethods = new Set(['POST', 'PUT', 'PATCH']);

/**
 * undici's dispatch options and one of this connection's own: how long an open-ended answer
 * (timeouts.ts openEndedAnswer: no content-length) may be silent once its head has come, in place
 * of `bodyTimeout` (the sidecars give timeouts.tunnelIdle). Unset, `bodyTimeout` holds throughout.
 *
 * `headers` may be a flat array, names and values alternating (a form undici takes too): those
 * fields are written as they are, unchecked, so they must be fields a head's parser gave (llhttp
 * checks every name and value) or the sidecar's own. An object's fields are checked one by one.
 */
export type H1DispatchOptions = Dispatcher.DispatchOptions & { openEndedTimeout?: number };

const crlf = Buffer.from('\r\n', 'latin1');
const lastChunk = Buffer.from('0\r\n\r\n', 'latin1');

/**
 * One chunk of a chunked request body, in one corked write of three Buffers; false when the
 * socket asks the writer to wait. No strings: a corked write that mixes them is first copied
 * whole into a fresh buffer that JavaScript keeps until the write is done (node's
 * StreamBase::Writev), which V8 counts as external memory, and for a large upload those copies
 * started a major collection every few megabytes. Buffers go to plain TCP as they are; TLS copies
 * them into one short-lived buffer of its own and encrypts that in one go, which measured cheaper
 * than a write (and a record, and a system call) per piece (docs/benchmark-history.md).
 */
function writeChunk(socket: Socket, data: Buffer): boolean {
  socket.cork();
  socket.write(Buffer.from(`${data.length.toString(16)}\r\n`, 'latin1'));
  socket.write(data);
  const ok = socket.write(crlf);
  socket.uncork();
  return ok;
}

/** An error with the code the attempt layer classifies by (retry-policy.ts): the same codes undici uses. */
function failure(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * One request in flight on a connection; it is also the handler's controller (pause, resume,
 * abort), as undici's new handler interface expects.
 */
class Exchange implements Controller {
  aborted = false;
  paused = false;
  reason: Error | null = null;
  /** The head of the final answer arrived (1xx heads do not count). */
  headDone = false;
  /** An informational (1xx) head is being parsed: its end is not the answer's end. */
  informational = false;
  keepAlive = true;
  finished = false;
  /** The body comes past the parser, as views of the reads (H1Connection.rawBytes). */
  views = false;
  /** The request's body was written to its end. */
  bodySent: boolean;
  body: Readable | undefined;
  /**
   * When the last byte moved (performance.now()), for the idle timeouts: of the request body
   * while it streams out, then of the answer's body.
   */
  lastActivity = 0;

  constructor(
    private readonly connection: H1Connection,
    readonly handler: Handler,
    /** The request is a HEAD: its answer has no body whatever its head says. */
    readonly headRequest: boolean,
    readonly headersTimeout: number,
    /** Silence allowed on the request body going out and on the answer's body (openEndedTimeout may lengthen the latter). */
    public bodyTimeout: number,
    hasBody: boolean,
    readonly openEndedTimeout: number | undefined,
  ) {
    this.bodySent = !hasBody;
  }

  abort(reason: Error): void {
    if (this.finished) return;
    this.aborted = true;
    this.reason = reason;
    this.connection.fail(this, reason);
  }

  pause(): void {
    this.paused = true;
    this.connection.pauseReading();
  }

  resume(): void {
    this.paused = false;
    this.connection.resumeReading();
  }
}

/**
 * One keep-alive HTTP/1.1 connection to one upstream, one request at a time: the part of undici's
 * Client that upstream-pool.ts uses (`dispatch` with undici's handler interface; the `connect`,
 * `connectionError`, `disconnect` and `drain` events; `close`, `destroy`), built on Node's native
 * parser. It opens its socket at once, not at the first request. Requests are written as one head
 * string and the body as it streams (chunked when it has no length, its trailers after the last
 * chunk); the answer is handed to the handler as it is parsed, with back-pressure through the
 * controller. Timeouts: the answer's head
 * must start arriving within `headersTimeout` of the request's end (its last body byte written,
 * as Envoy counts its route timeout: an upload that takes minutes is not cut for want of an
 * answer nobody could give yet), a streamed request body may be silent for at most
 * `bodyTimeout` while it goes out, and so may the answer's body; failures carry undici's error
 * codes, so the retry table classifies them alike.
 */
export class H1Connection extends EventEmitter {
  private socket: Socket | undefined;
  private readonly parser: NativeParser;
  private current: Exchange | undefined;
  /** A request dispatched while the socket was still connecting. */
  private waiting: { opts: Dispatcher.DispatchOptions; handler: Handler } | undefined;
  private state: 'connecting' | 'open' | 'closed' = 'connecting';
  private closing = false;
  private closed: Promise<void>;
  private markClosed!: () => void;
  /** Field names and values read since the last head (kOnHeaders): a long head, or the trailers. */
  private pendingFields: string[] = [];
  /**
   * One timer per connection for all three deadlines, and not re-set per request: a phase moves
   * the deadline (a number), and the timer, which wakes no later than the earliest deadline set
   * since it was armed, compares and re-arms when it fires. A request then costs a clock read,
   * not two timers created and cleared.
   */
  private timer: NodeJS.Timeout | undefined;
  /** When the pending timer fires (performance.now() time). */
  private timerAt = 0;
  private phase: 'upload' | 'headers' | 'body' | 'idle' | undefined;
  /** The headers' or the idle deadline (performance.now() time); the body's follows its last byte. */
  private deadline = 0;
  private idleMs: number;
  /** Set while the parser runs: a finished answer's 'drain' waits until the parser has returned. */
  private parsing = false;
  private drainAfterParse = false;
  private readonly hostHeader: string;
  /**
   * Where an answer whose body is read past the parser (onHead) ends: its chunks go to the
   * handler as they were read, with no copy. Not pending when the parser reads.
   */
  private readonly rawBody = new RawBody();
  /** The last Keep-Alive field read (keepAliveHint). */
  private lastHint: string | undefined;
  /** Why the socket closed, when it closed with an error. */
  private socketError: Error | undefined;

  constructor(private readonly origin: string, private readonly options: H1ConnectionOptions) {
    super();
    this.idleMs = options.idleMs;
    this.closed = new Promise<void>((resolve) => { this.markClosed = resolve; });
    const url = new URL(origin);
    this.hostHeader = url.host;
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.RESPONSE, {}, 0, 0);
    parser[HTTPParser.kOnHeaders] = (fields: string[]) => {
      for (const f of fields) this.pendingFields.push(f);
    };
    parser[HTTPParser.kOnHeadersComplete] = (
      _major: number, _minor: number, fields: string[] | undefined, _method: unknown, _url: unknown,
      status: number, statusMessage: string, _upgrade: boolean, keepAlive: boolean,
    ) => this.onHead(fields ?? this.takeFields(), status, statusMessage, keepAlive);
    parser[HTTPParser.kOnBody] = (chunk: Buffer) => this.onBody(chunk);
    parser[HTTPParser.kOnMessageComplete] = () => this.onAnswerEnd();
    this.parser = parser;
    const port = url.port || (url.protocol === 'https:' ? '443' : '80');
    // WHATWG URLs keep an IPv6 literal's brackets in hostname; sockets want the address alone.
    const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    options.connect({ hostname, host: url.host, protocol: url.protocol, port }, (err, socket) => {
      if (err || !socket) return this.onConnectError(err ?? failure('UND_ERR_SOCKET', 'no socket'));
      this.onConnected(socket as Socket);
    });
  }

  /**
   * Sends a request: false means the connection takes nothing more until it emits 'drain'. The
   * handler speaks undici's newer interface (onRequestStart, onResponseStart, ...); upstream-pool.ts
   * adapts an older one.
   */
  dispatch(opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
    if (this.state === 'closed' || this.closing) {
      failHandler(handler, failure('UND_ERR_CLOSED', 'the upstream connection is closed'));
      return false;
    }
    if (this.current || this.waiting) {
      failHandler(handler, failure('UND_ERR_INFO', 'the upstream connection is busy (one request at a time)'));
      return false;
    }
    if (this.state === 'connecting') this.waiting = { opts, handler };
    else this.start(opts, handler);
    return false;
  }

  /** Closes once the request in flight (if any) has its answer. */
  close(): Promise<void> {
    this.closing = true;
    if (!this.current && !this.waiting) this.socket?.destroy();
    if (this.state === 'connecting' && !this.waiting) this.finishClose();
    return this.closed;
  }

  /** Closes now; a request in flight or waiting fails with `err`. */
  destroy(err?: Error | null): Promise<void> {
    this.closing = true;
    const reason = err ?? failure('UND_ERR_DESTROYED', 'the upstream connection was destroyed');
    if (this.waiting) {
      const { handler } = this.waiting;
      this.waiting = undefined;
      failHandler(handler, reason);
    }
    if (this.current) this.fail(this.current, reason);
    this.socket?.destroy();
    if (this.state === 'connecting') this.finishClose();
    return this.closed;
  }

  private onConnectError(err: Error): void {
    if (this.state === 'closed') return;
    this.finishClose();
    this.emit('connectionError', this.origin, [this], err);
    if (this.waiting) {
      const { handler } = this.waiting;
      this.waiting = undefined;
      failHandler(handler, err);
    }
  }

  private onConnected(socket: Socket): void {
    if (this.state === 'closed') {
      socket.destroy();
      return;
    }
    this.socket = socket;
    this.state = 'open';
    readSocket(socket, (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: Error) => { this.socketError = err; });
    socket.on('close', () => this.onClose());
    this.emit('connect', this.origin, [this]);
    // A pool hands a waiting request over as soon as it hears of the connection: it runs already.
    if (this.current) return;
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) this.start(waiting.opts, waiting.handler);
    else if (this.closing) socket.destroy();
    else this.arm('idle', this.idleMs);
  }

  private start(opts: Dispatcher.DispatchOptions, handler: Handler): void {
    const socket = this.socket as Socket;
    const method = opts.method;
    const body = opts.body as Readable | Buffer | string | null | undefined;
    const exchange = new Exchange(this, handler, method === 'HEAD', opts.headersTimeout ?? 300_000, opts.bodyTimeout ?? 300_000, body !== null && body !== undefined, (opts as H1DispatchOptions).openEndedTimeout);
    this.current = exchange;
    handler.onRequestStart?.(exchange, {});
    if (exchange.finished) return;
    let head = `${method} ${opts.path} HTTP/1.1\r\n`;
    let host = false;
    let length: number | undefined;
    const headers = opts.headers as Record<string, string | string[] | undefined> | readonly string[] | null | undefined;
    if (Array.isArray(headers)) {
      // Fields as a head's parser gave them, and the sidecar's own (H1DispatchOptions): written as they are.
      const fields = headers as readonly string[];
      for (let i = 0; i < fields.length; i += 2) {
        const name = fields[i] as string;
        const n = name.length;
        if (n === 4 && !host) host = name.toLowerCase() === 'host';
        else if (n === 14 && name.toLowerCase() === 'content-length') length = Number(fields[i + 1]);
        head += `${name}: ${fields[i + 1] as string}\r\n`;
      }
    } else for (const name in headers) {
      const value = (headers as Record<string, string | string[] | undefined>)[name];
      if (value === undefined) continue;
      if (invalidFieldName.test(name)) return this.fail(exchange, failure('UND_ERR_INVALID_ARG', `invalid request header name ${JSON.stringify(name)}`));
      const lower = name.length === 4 || name.length === 14 ? name.toLowerCase() : '';
      if (lower === 'host') host = true;
      else if (lower === 'content-length') length = Number(value);
      if (typeof value === 'string') {
        if (invalidFieldValue.test(value)) return this.fail(exchange, failure('UND_ERR_INVALID_ARG', `invalid value of request header ${name}`));
        head += `${name}: ${value}\r\n`;
      } else {
        for (const v of value) {
          if (invalidFieldValue.test(v)) return this.fail(exchange, failure('UND_ERR_INVALID_ARG', `invalid value of request header ${name}`));
          head += `${name}: ${v}\r\n`;
        }
      }
    }
    if (!host) head += `host: ${this.hostHeader}\r\n`;
    // A streamed body replaces this with its own phase, and the head's deadline starts at its end (stream()).
    this.arm('headers', exchange.headersTimeout);
    if (body === null || body === undefined) {
      if (length === undefined && payloadMethods.has(method)) head += 'content-length: 0\r\n';
      socket.write(`${head}\r\n`, 'latin1');
      return;
    }
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      const bytes = typeof body === 'string' ? Buffer.from(body) : body;
      if (length === undefined) head += `content-length: ${bytes.length}\r\n`;
      socket.cork();
      socket.write(`${head}\r\n`, 'latin1');
      socket.write(bytes);
      socket.uncork();
      exchange.bodySent = true;
      return;
    }
    const chunked = length === undefined || !Number.isFinite(length);
    socket.write(chunked ? `${head}transfer-encoding: chunked\r\n\r\n` : `${head}\r\n`, 'latin1');
    this.stream(exchange, body, chunked ? undefined : length);
  }

  /** Writes a streamed request body with back-pressure: as it is when its length is known, chunked (with any trailers it ends with) otherwise. */
  private stream(exchange: Exchange, body: Readable, length: number | undefined): void {
    const socket = this.socket as Socket;
    exchange.body = body;
    // Cut short before this attempt could read it (the caller went away while it waited for a connection).
    if (body.destroyed) {
      this.fail(exchange, body.errored ?? failure('UND_ERR_ABORTED', 'the request body was cut short before it could be sent'));
      return;
    }
    let sent = 0;
    const resume = () => body.resume();
    exchange.lastActivity = performance.now();
    this.arm('upload', exchange.bodyTimeout);
    body.on('data', (chunk: Buffer | string) => {
      if (exchange.finished) return;
      exchange.lastActivity = performance.now();
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (bytes.length === 0) return; // an empty chunk would end a chunked body
      sent += bytes.length;
      if (length !== undefined && sent > length) {
        this.fail(exchange, failure('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', `the request body is longer than its content-length (${length})`));
        return;
      }
      const queued = socket.writableLength > 0 || socket.connecting;
      let ok: boolean;
      if (length === undefined) ok = writeChunk(socket, bytes);
      else ok = socket.write(bytes);
      // A view of the app's read buffer (lent-views.ts) the socket still references.
      if (socketHolds(socket, queued)) keepsView(bytes);
      if (!ok) {
        body.pause();
        socket.once('drain', resume);
      }
    });
    body.once('end', () => {
      if (exchange.finished) return;
      if (length !== undefined && sent !== length) {
        this.fail(exchange, failure('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', `the request body ended after ${sent} of its ${length} bytes`));
        return;
      }
      // The body's trailers (body-trailers.ts) follow its last chunk. A body sent with a length
      // has nowhere to put them (only the chunked coding has a trailer section, RFC 9112 §7.1.2):
      // they are dropped.
      if (length === undefined) {
        const trailers = forwardableTrailers(bodyTrailers(body));
        socket.write(trailers === undefined ? lastChunk : lastChunkWith(trailers));
      }
      exchange.bodySent = true;
      // The request is whole: now the answer is due (unless it came early, while the body went out).
      if (!exchange.headDone) this.arm('headers', exchange.headersTimeout);
    });
    body.once('error', (err: Error) => this.fail(exchange, err));
  }

  private onData(chunk: Buffer): void {
    const exchange = this.current;
    if (!exchange) {
      // Bytes nobody asked for: the connection cannot be trusted with the next request.
      this.socket?.destroy();
      return;
    }
    this.parsing = true;
    let result: number | ParseError;
    try {
      if (this.rawBody.pending) result = this.rawBytes(exchange, chunk);
      else {
        result = this.parser.execute(chunk);
        // The head said the body is read past the parser: what follows it in this read is body. That
        // read may be in the shared buffer, so its part goes as a copy; the reads after it are the
        // socket's own (onHead) and go as views.
        if (typeof result === 'number' && this.rawBody.pending) {
          if (result < chunk.length) result = this.rawBytes(exchange, Buffer.from(chunk.subarray(result)));
          exchange.views = true;
        }
      }
    } catch (err) {
      // A handler threw while the parser called it.
      result = err as ParseError;
    } finally {
      this.parsing = false;
    }
    if (typeof result !== 'number') {
      const current = this.current;
      if (current) this.fail(current, result.code?.startsWith('HPE_') ? failure('UND_ERR_SOCKET', `the upstream's answer is not valid HTTP/1.1: ${result.reason ?? result.message}`) : result);
      this.socket?.destroy();
      return;
    }
    if (this.drainAfterParse) {
      this.drainAfterParse = false;
      this.emit('drain', this.origin, [this]);
    }
  }

  /**
   * Body bytes of an answer read past the parser, framed by its length or chunked (the
   * chunk data of the read, one view; framing llhttp would refuse throws, and fails the answer as
   * the parser's errors do, onData): handed to the handler as they are (views of the read), and
   * the answer ends with its last byte, a chunked one's trailers passed on. Bytes after it are
   * more than the upstream was asked for: the connection is closed.
   */
  private rawBytes(exchange: Exchange, chunk: Buffer): number {
    const part = this.rawBody.take(chunk);
    const end = this.rawBody.end;
    exchange.lastActivity = performance.now();
    if (part && !exchange.finished) {
      // A view still held when its callback returns: the next read goes into a fresh buffer of the
      // socket's own, the held one left to its holder.
      if (!exchange.views) exchange.handler.onResponseData?.(exchange, part);
      else if (lendView(part, (view) => exchange.handler.onResponseData?.(exchange, view)) && this.socket) readOwnBuffer(this.socket);
    }
    if (end < 0) return chunk.length;
    if (exchange.finished) return end;
    const trailers = this.rawBody.trailers;
    if (trailers) this.pendingFields = trailers;
    // The parser stopped after the head as for an upgrade: it starts afresh for the next answer,
    // which is read into the shared buffer again.
    this.parser.initialize(HTTPParser.RESPONSE, {}, 0, 0);
    if (this.socket) readSharedBuffer(this.socket);
    if (end < chunk.length) exchange.keepAlive = false;
    this.onAnswerEnd();
    return end;
  }

  private takeFields(): string[] {
    const fields = this.pendingFields;
    this.pendingFields = [];
    return fields;
  }

  private onHead(fields: string[], status: number, statusMessage: string, keepAlive: boolean): number {
    const exchange = this.current;
    if (!exchange || exchange.finished) return 0;
    if (status < 200) {
      if (status === 101) {
        this.fail(exchange, failure('UND_ERR_SOCKET', 'the upstream switched protocols (101) on a request that asked for no upgrade'));
        return 0;
      }
      exchange.informational = true;
      return 0;
    }
    exchange.headDone = true;
    exchange.keepAlive = keepAlive;
    exchange.lastActivity = performance.now();
    // The fields this connection reads itself, found by their lengths before any name is
    // lower-cased: most of a head's fields cost one comparison here.
    let lengthField: string | undefined;
    let lengths = 0;
    let encoding: string | undefined;
    let encodings = 0;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i] as string;
      const n = name.length;
      if (n !== 10 && n !== 14 && n !== 17) continue;
      const lower = name.toLowerCase();
      if (lower === 'content-length') {
        lengthField = fields[i + 1];
        lengths += 1;
      } else if (lower === 'transfer-encoding') {
        encoding = fields[i + 1];
        encodings += 1;
      } else if (lower === 'keep-alive') this.keepAliveHint(fields[i + 1] as string);
    }
    // An answer without a length is open-ended (timeouts.ts openEndedAnswer).
    if (exchange.openEndedTimeout !== undefined && !exchange.headRequest && status !== 204 && status !== 304 && lengths === 0) {
      exchange.bodyTimeout = exchange.openEndedTimeout;
    }
    this.arm('body', exchange.bodyTimeout);
    // A handler that takes the fields as they came writes them on without an object per head.
    const handler = exchange.handler as Handler & Partial<FieldsReader>;
    if (handler.onResponseFields !== undefined) handler.onResponseFields(exchange, status, fields, statusMessage);
    else handler.onResponseStart?.(exchange, status, fieldsObject(fields), statusMessage);
    if (exchange.headRequest) return skipBody;
    // A body longer than one read (viewsLength), and a chunked one (its framing checked by
    // raw-body.ts as llhttp would), for a handler that takes views, is read past the parser
    // (rawBytes): no copy per chunk, which for a large download was most of a sidecar's garbage.
    // Not for statuses that have no body whatever their head says (RFC 9112 §6.3), nor for a
    // length beside a transfer-encoding, nor for a field given twice.
    if (exchange.finished || status === 204 || status === 304 || (handler as Partial<ViewReader>).takesViews !== true) return 0;
    const length = encodings === 0 && lengths === 1 ? viewsLength(lengthField) : 0;
    if (length > 0) this.rawBody.counted(length);
    else if (encodings === 1 && lengths === 0 && onlyChunked(encoding as string)) this.rawBody.chunked();
    else return 0;
    // Its reads go into a buffer of the socket's own, which only the views of this body use.
    if (this.socket) readOwnBuffer(this.socket);
    return stopAfterHead;
  }

  /** `Keep-Alive: timeout=<seconds>` (RFC 9112 appendix C.2.2 describes the field): close before the server does. */
  private keepAliveHint(value: string): void {
    // A server repeats the same field on every answer: read it once.
    if (value === this.lastHint) return;
    this.lastHint = value;
    const match = /timeout\s*=\s*(\d+)/i.exec(value);
    if (!match) return;
    this.idleMs = Math.min(this.options.idleMs, Number(match[1]) * 1000 - keepAliveMarginMs);
  }

  private onBody(chunk: Buffer): void {
    const exchange = this.current;
    if (!exchange || exchange.finished) return;
    exchange.lastActivity = performance.now();
    exchange.handler.onResponseData?.(exchange, chunk);
  }

  private onAnswerEnd(): void {
    const exchange = this.current;
    if (!exchange || exchange.finished) return;
    // The parser's end of a head it stopped after: the body is still to come (rawBytes).
    if (this.rawBody.pending) return;
    if (exchange.informational) {
      exchange.informational = false;
      this.pendingFields = [];
      return;
    }
    const trailers: Headers = {};
    const fields = this.takeFields();
    for (let i = 0; i < fields.length; i += 2) trailers[(fields[i] as string).toLowerCase()] = fields[i + 1] as string;
    exchange.finished = true;
    this.current = undefined;
    this.disarm();
    // The upstream answered before it had the whole body (an early error): the connection is
    // mid-request and cannot carry another.
    const reusable = exchange.keepAlive && exchange.bodySent && !this.closing && this.idleMs > 0;
    if (!exchange.bodySent) exchange.body?.destroy();
    if (exchange.paused) this.socket?.resume();
    exchange.handler.onResponseEnd?.(exchange, trailers);
    if (!reusable) {
      this.socket?.destroy();
      return;
    }
    this.arm('idle', this.idleMs);
    if (this.parsing) this.drainAfterParse = true;
    else this.emit('drain', this.origin, [this]);
  }

  private onEnd(): void {
    // The server closed its side: an answer delimited by the connection's end is complete now.
    if (this.current && !this.rawBody.pending) {
      try {
        this.parser.finish();
      } catch {
        // a handler threw: the request fails below
      }
    }
    this.socket?.destroy();
  }

  private onClose(): void {
    const exchange = this.current;
    if (exchange) this.fail(exchange, this.socketError ?? failure('UND_ERR_SOCKET', exchange.headDone ? 'the upstream closed the connection before the answer ended' : 'the upstream closed the connection before answering'));
    this.finishClose();
    this.emit('disconnect', this.origin, [this], this.socketError ?? failure('UND_ERR_SOCKET', 'closed'));
  }

  private finishClose(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.disarm();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    releaseParser(this.parser);
    this.markClosed();
  }

  /** Ends `exchange` with `err` (once); the connection is closed, since it may be mid-message. */
  fail(exchange: Exchange, err: Error): void {
    if (exchange.finished) return;
    exchange.finished = true;
    if (this.current === exchange) this.current = undefined;
    this.disarm();
    if (!exchange.bodySent) exchange.body?.destroy();
    this.socket?.destroy();
    exchange.handler.onResponseError?.(exchange, err);
  }

  pauseReading(): void {
    this.socket?.pause();
  }

  resumeReading(): void {
    this.socket?.resume();
  }

  private arm(what: 'upload' | 'headers' | 'body' | 'idle', ms: number): void {
    if (!(ms > 0)) {
      this.phase = undefined;
      return;
    }
    this.phase = what;
    this.deadline = performance.now() + ms;
    this.wakeBy(this.deadline);
  }

  /** Phase over: a pending timer finds nothing to do when it fires. */
  private disarm(): void {
    this.phase = undefined;
  }

  /** Makes sure the timer fires no later than `at`. */
  private wakeBy(at: number): void {
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.onTimer(), Math.max(1, at - performance.now()));
    this.timer.unref();
  }

  private onTimer(): void {
    this.timer = undefined;
    const what = this.phase;
    if (what === undefined || this.state === 'closed') return;
    const now = performance.now();
    const exchange = this.current;
    if (what === 'upload') {
      if (!exchange) return;
      // Bytes of the request body moving (the app sending, the upstream reading) are not silence.
      const due = exchange.lastActivity + exchange.bodyTimeout;
      if (now < due) return this.wakeBy(due);
      this.fail(exchange, failure('UND_ERR_BODY_TIMEOUT', `the request body moved no byte for ${exchange.bodyTimeout} ms, and no answer came`));
      return;
    }
    if (what === 'body') {
      if (!exchange) return;
      // The body's timeout counts from its last byte; an answer held back by a full app socket is not silent.
      if (exchange.paused) exchange.lastActivity = now;
      const due = exchange.lastActivity + exchange.bodyTimeout;
      if (now < due) return this.wakeBy(due);
      this.fail(exchange, failure('UND_ERR_BODY_TIMEOUT', `the upstream's answer was silent for ${exchange.bodyTimeout} ms`));
      return;
    }
    if (now < this.deadline) return this.wakeBy(this.deadline);
    if (what === 'idle') {
      if (!exchange) this.socket?.destroy();
      return;
    }
    if (exchange) this.fail(exchange, failure('UND_ERR_HEADERS_TIMEOUT', `the upstream sent no answer within ${exchange.headersTimeout} ms`));
  }
}

/** Ends a request that never reached the wire. */
export function failHandler(handler: Handler, err: Error): void {
  const controller = { aborted: true, paused: false, reason: err, abort: () => undefined, pause: () => undefined, resume: () => undefined };
  handler.onResponseError?.(controller as unknown as Controller, err);
}
