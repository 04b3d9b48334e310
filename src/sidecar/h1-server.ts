import { EventEmitter } from 'node:events';
import { STATUS_CODES, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { httpDateNow } from '../core/utc-text.js';
import type { ExchangeEnd } from '../core/channels.js';
import { adoptReads, readsAdoptable } from '../core/splice.js';
import { setBodyTrailers } from './body-trailers.js';
import { onlyChunked } from './chunked-decoder.js';
import { lendView, socketHolds, viewsLength } from './lent-views.js';
import { RawBody } from './raw-body.js';
import { HTTPParser, parserMethods, releaseParser, type NativeParser, type ParseError, type StreamHandle } from './native-http-parser.js';
import { headersCheckInterval } from './request-head-timeout.js';
import { fieldsObject, forwardableHeaders, isField, isHopByHop, withoutNominated } from './headers.js';

/**
 * The sidecar's HTTP/1.1 server side, on Node's own parser (native-http-parser.ts), in place of
 * node:http's connection handler on the listeners that carry an app's traffic (the outbound's
 * proxy port and fixed listeners, the inbound). It does what the proxy needs of a server and no
 * more: a request is a head and, only when one follows, a body stream; a response is a head
 * written with its first bytes. node:http builds an IncomingMessage (a Readable) and a
 * ServerResponse (a Writable-like OutgoingMessage) per request, with their state machines and
 * several ticks; on loopback that cost about as much CPU as the rest of the hop's JavaScript
 * (docs/benchmark-history.md, "Where the CPU goes").
 *
 * The http.Server or https.Server stays the listener and the place handlers are registered: this
 * takes its connection listener (as protocol-sniff.ts does) and emits the same events on it:
 * 'request' (H1Request, H1Response), 'upgrade' and 'connect' (H1Request, socket, head),
 * 'clientError' (error, socket), 'checkExpectation' (H1Request, H1Response).
 *
 * What node:http did that this keeps, checked by h1-server.test.ts against node:http itself:
 * - request heads as llhttp strictly parses them (the request-smuggling shapes are parse errors,
 *   reported as 'clientError'); the fields joined into `headers` by node:http's rules;
 * - `Expect: 100-continue` answered with 100 before the request is handed on;
 * - responses framed by Content-Length, chunked for HTTP/1.1 when they have none, delimited by
 *   the connection's close for HTTP/1.0; no body for HEAD, 204, 304;
 * - keep-alive as the request asks, announced with `Keep-Alive: timeout=`; pipelined requests
 *   answered in order (one at a time: the next is handed on when the answer before it ends);
 * - the three limits: a head must be complete within `requestHeadersMs` of the connection's
 *   start or the request's first byte (else 'clientError' with ERR_HTTP_REQUEST_TIMEOUT), an idle
 *   kept connection is closed after `keepAliveMs`, a connection silent both ways for
 *   `streamIdleMs` is closed. The first two are checked by one sweep per server, every
 *   headersCheckInterval of the shorter (as node:http's connectionsCheckingInterval does), so a
 *   request costs two clock reads and no timer;
 * - a request body read with back-pressure: the socket pauses while the body's reader does not
 *   read; a body left unread when the answer ends is read and dropped, so the connection stays
 *   usable;
 * - a chunked body's trailer fields in `trailers` and `rawTrailers`, there before its end.
 */
export interface H1ServerOptions {
  requestHeadersMs: number;
  keepAliveMs: number;
  streamIdleMs: number;
  /**
   * Once the head of an open-ended answer (timeouts.ts openEndedAnswer: no content-length, a
   * body) is written, the connection may be silent this long instead of `streamIdleMs`, until
   * that answer ends. The sidecars give timeouts.tunnelIdle. Unset: `streamIdleMs` throughout.
   */
  openEndedIdleMs?: number;
  /**
   * Long request bodies with a length, and chunked ones, are read past the parser and handed to
   * the body's reader as views of the connection's own read buffer (see H1ServerConnection.startRaw): every
   * 'request' handler of the server then hands each chunk on inside its 'data' callback, or
   * copies it, or says it keeps it (lent-views.ts). The outbound and the inbound do.
   */
  bodyViews?: boolean;
}

type AnyServer = HttpServer | HttpsServer;

/** node:http's limit on header lines kept (`server.maxHeadersCount`); lines beyond it are dropped. */
const maxHeaderPairs = 2000;
const continueExpression = /(?:^|\W)100-continue(?:$|\W)/i;
// node:http's own checks for what goes into a response head.
const tokenPattern = /^[\^_`a-zA-Z\-0-9!#$%&'*+.|~]+$/;
const invalidValuePattern = /[^\t\x20-\x7e\x80-\xff]/;

const crlf = Buffer.from('\r\n', 'latin1');

/** Marks the connection listeners made here: they time request heads themselves. */
export const timesOwnHeads = Symbol('isthmus.h1-server.times-own-heads');

/**
 * Replaces `server`'s node:http connection handler by this module's. Call it right after the
 * server is made and before anything else takes that listener (protocol-sniff.ts, the inbound's
 * ALPN routing): they then hand HTTP/1.1 connections to this one.
 */
export function serveHttp1(server: AnyServer, options: H1ServerOptions): void {
  const event = 'setSecureContext' in server ? 'secureConnection' : 'connection';
  const [nodeAccept] = server.listeners(event) as ((socket: Socket) => void)[];
  if (!nodeAccept) throw new Error('the HTTP server has no connection handler to replace');
  server.removeListener(event, nodeAccept);
  const connections = new Set<H1ServerConnection>();
  const drain = { draining: false };
  drainStates.set(server, drain);
  let sweep: NodeJS.Timeout | undefined;
  const sweepEvery = Math.min(headersCheckInterval(options.requestHeadersMs), headersCheckInterval(options.keepAliveMs));
  const accept = (socket: Socket) => {
    const connection = new H1ServerConnection(server, socket, options, () => {
      connections.delete(connection);
      if (connections.size === 0 && sweep) {
        clearInterval(sweep);
        sweep = undefined;
      }
    }, drain);
    connections.add(connection);
    if (!sweep) {
      sweep = setInterval(() => {
        const now = performance.now();
        for (const c of connections) c.check(now);
      }, sweepEvery);
      sweep.unref();
    }
  };
  Object.defineProperty(accept, timesOwnHeads, { value: true });
  server.prependListener(event, accept);
  // node:http's closeAllConnections and closeIdleConnections (which close() calls) know only
  // connections node:http tracks.
  const closeAll = server.closeAllConnections.bind(server);
  server.closeAllConnections = () => {
    closeAll();
    for (const c of connections) c.socket.destroy();
  };
  const closeIdle = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = () => {
    closeIdle();
    for (const c of connections) c.closeIfIdle();
  };
}

const drainStates = new WeakMap<AnyServer, { draining: boolean }>();

/**
 * From now on no connection of `server` (one given to serveHttp1) is kept after the answer it is
 * writing or about to write: each such answer says `connection: close`, and the connection closes
 * once it is sent. Idle kept connections close now (through the closeIdleConnections above, which
 * a listening server's close() also calls; a server that is only handed connections, like the
 * inbound's plain-text one, is never closed). For a drain: the sockets then end by themselves.
 */
export function drainHttp1(server: AnyServer): void {
  const drain = drainStates.get(server);
  if (!drain) return;
  drain.draining = true;
  server.closeIdleConnections();
}

/** Shared by every request without trailers: no object per request. */
const noTrailers: Readonly<IncomingHttpHeaders> = Object.freeze({});
const noRawTrailers: readonly string[] = Object.freeze([]);

/** A request as the handlers see it: its head, and a body stream only when a body follows. */
export class H1Request {
  /** Present when the request has content (a Content-Length above 0, or Transfer-Encoding). */
  body: H1RequestBody | undefined;
  /** The whole request has been read (its body to the end). */
  complete = false;
  /**
   * A chunked body's trailer fields, joined as `headers` are (node:http's IncomingMessage.trailers),
   * names lower-cased; set when the body has ended, before its end is pushed, and carried on the
   * body stream too (body-trailers.ts). Empty (and frozen) when it had none.
   */
  trailers: Readonly<IncomingHttpHeaders> = noTrailers;
  /**
   * The trailer fields as they arrived, name and value alternating (node:http's `rawTrailers`).
   * Names keep their case when the parser read the body; a body read past it (chunked-decoder.ts)
   * gives them lower-cased.
   */
  rawTrailers: readonly string[] = noRawTrailers;
  /** Body bytes read so far (the access log's `requestBytes`). */
  bodyBytes = 0;
  /** The answer once the request is handed on, or its tunnel's (the access log waits for its end). */
  response: ExchangeEnd | undefined;
  private joined: IncomingHttpHeaders | undefined;

  constructor(
    readonly socket: Socket,
    readonly method: string,
    readonly url: string,
    /** Names and values as they arrived, alternating (node:http's `rawHeaders`). */
    readonly rawHeaders: string[],
    readonly httpVersionMajor: number,
    readonly httpVersionMinor: number,
    /** llhttp's verdict: the connection may carry another request after this one. */
    readonly keepAlive: boolean,
    readonly upgrade: boolean,
  ) {}

  /**
   * The fields joined into one object as node:http's IncomingMessage has them (joinFields), built
   * the first time something asks: the request path reads the few fields it needs with `field`.
   */
  get headers(): IncomingHttpHeaders {
    return (this.joined ??= joinFields(this.rawHeaders));
  }

  /**
   * One field's value as `headers` has it, looked up in `rawHeaders` without building the
   * object when the field came at most once: `lower` is a lower-case name other than set-cookie.
   */
  field(lower: string): string | undefined {
    if (this.joined !== undefined) return this.joined[lower] as string | undefined;
    const raw = this.rawHeaders;
    let found: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      if (!isField(raw[i] as string, lower)) continue;
      // Given twice: joined as joinFields joins it (first wins, or a list).
      if (found !== undefined) return this.headers[lower] as string | undefined;
      found = raw[i + 1] as string;
    }
    return found;
  }

  get httpVersion(): string {
    return `${this.httpVersionMajor}.${this.httpVersionMinor}`;
  }

  /** What is left of the body is read and dropped (a request answered without being forwarded). */
  resume(): void {
    this.body?.resume();
  }
}

/** A request's body: bytes as the parser hands them, the socket paused while nobody reads. */
export class H1RequestBody extends Readable {
  constructor(private readonly connection: H1ServerConnection) {
    super();
  }

  /** Its reader paused it (pause()). */
  private held = false;
  /** Readable asked for more while the reader held it: asked again at resume(). */
  private asked = false;

  override _read(): void {
    // Readable asks for more to fill its buffer even while its reader has paused it: a paused
    // body reads nothing, and asks once resumed (Readable asks no more until something is pushed).
    if (this.held) this.asked = true;
    else this.connection.bodyWanted();
  }

  override pause(): this {
    super.pause();
    if (!this.held) {
      this.held = true;
      this.connection.bodyPaused(this);
    }
    return this;
  }

  override resume(): this {
    const held = this.held;
    this.held = false;
    super.resume();
    if (held) this.connection.bodyResumed(this.asked);
    this.asked = false;
    return this;
  }

  /**
   * A body cut short (the caller went away, bytes that are not HTTP) is an 'error' only for a
   * reader that listens for one, as with node:http's IncomingMessage: a body nobody reads (a
   * request answered without being forwarded, or still waiting behind another) must not throw.
   */
  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    process.nextTick(() => callback(this.listenerCount('error') > 0 ? err : null));
  }
}

/**
 * The answer to one request. The head is written with the first body bytes (one `writev`); the
 * writes of one tick go out together (the socket is corked until the next tick, as node:http
 * does), and an answer that ends goes out at once.
 */
export class H1Response extends EventEmitter {
  statusCode = 200;
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  private extra: Record<string, string | string[] | number> | undefined;
  /** The head, built and not yet written. */
  private head: string | undefined;
  private chunked = false;
  private bodyless = false;
  private trailers = '';
  /** The connection closes once this answer is written. */
  closeAfter = false;
  /** Body bytes written so far (the access log's `responseBytes`). */
  bodyBytes = 0;
  /** The socket still held bytes of earlier writes when the last body chunk was written (flushHolds). */
  private queuedBefore = false;
  /** 'close' was emitted: the answer ended, or its connection closed before it did. */
  closed = false;
  /**
   * Told once, before 'close', when the connection closes before this answer ended: the relay
   * writing the answer (response-relay.ts) stops its upstream without a listener per request.
   */
  cutWatcher: { responseCut(): void } | undefined;

  constructor(private readonly connection: H1ServerConnection, readonly req: H1Request) {
    super();
    req.response = this;
  }

  get socket(): Socket {
    return this.connection.socket;
  }

  get destroyed(): boolean {
    return this.connection.socket.destroyed;
  }

  setHeader(name: string, value: string | string[] | number): this {
    (this.extra ??= {})[name.toLowerCase()] = value;
    return this;
  }

  writeHead(status: number, reason?: string | Readonly<Record<string, string | string[] | number | undefined>>, fields?: Readonly<Record<string, string | string[] | number | undefined>>, knownLength?: number): this {
    if (typeof reason === 'object') {
      fields = reason;
      reason = undefined;
    }
    let head = this.statusLine(status, reason);
    let length = false;
    let encoding: string | undefined;
    let date = false;
    let connection: string | undefined;
    const add = (name: string, value: string | string[] | number | undefined) => {
      if (value === undefined) return;
      if (!tokenPattern.test(name)) throw Object.assign(new TypeError(`invalid header name ${JSON.stringify(name)}`), { code: 'ERR_INVALID_HTTP_TOKEN' });
      switch (name.length) {
        case 4: date ||= name.toLowerCase() === 'date'; break;
        case 10: if (name.toLowerCase() === 'connection') connection = String(value).toLowerCase(); break;
        case 14: length ||= name.toLowerCase() === 'content-length'; break;
        case 17: if (name.toLowerCase() === 'transfer-encoding') encoding = String(value).toLowerCase(); break;
        default: break;
      }
      if (Array.isArray(value)) {
        for (const v of value) head += headerLine(name, v);
      } else head += headerLine(name, value);
    };
    if (this.extra) for (const name in this.extra) if (fields?.[name] === undefined) add(name, this.extra[name]);
    if (fields) for (const name in fields) add(name, fields[name]);
    return this.endHead(head, length, date, encoding, connection, knownLength);
  }

  /**
   * The head of an answer relayed as the upstream's parser gave it (FieldsReader in
   * h1-connection.ts: names and values alternating, each checked by llhttp already), minus the
   * connection-specific fields (those its Connection field names too) and `drop` (any case): no
   * object per head and no second check of each field. Names keep the upstream's case, as nginx
   * and HAProxy pass them.
   */
  writeFields(status: number, reason: string, fields: readonly string[], drop: string | undefined): this {
    // setHeader's fields are merged by name: the object form does that (an error path's, rare).
    if (this.extra !== undefined) return this.writeHead(status, reason, forwardableHeaders(fieldsObject(fields), drop));
    let head = this.statusLine(status, reason);
    let length = false;
    let date = false;
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i] as string;
      if (isHopByHop(name)) {
        // A Connection field that names fields of its own (RFC 9110 §7.6.1): written without them (rare).
        const nominating = name.length === 10 && isField(name, 'connection') ? withoutNominated(fields) : undefined;
        if (nominating !== undefined) return this.writeFields(status, reason, nominating, drop);
        continue;
      }
      if (drop !== undefined && isField(name, drop)) continue;
      date ||= isField(name, 'date');
      length ||= isField(name, 'content-length');
      head += `${name}: ${fields[i + 1] as string}\r\n`;
    }
    return this.endHead(head, length, date, undefined, undefined, undefined);
  }

  /** What every head starts with, once: the status checked and kept, and its line. */
  private statusLine(status: number, reason: string | undefined): string {
    if (this.headersSent) throw Object.assign(new Error('the response head was written already'), { code: 'ERR_HTTP_HEADERS_SENT' });
    if (!Number.isInteger(status) || status < 100 || status > 999) throw Object.assign(new RangeError(`invalid status code ${status}`), { code: 'ERR_HTTP_INVALID_STATUS_CODE' });
    this.statusCode = status;
    return `HTTP/1.1 ${status} ${reason || STATUS_CODES[status] || 'unknown'}\r\n`;
  }

  /** What every head ends with: date, framing, connection; then it waits for the first body bytes. */
  private endHead(start: string, length: boolean, date: boolean, encoding: string | undefined, connection: string | undefined, knownLength: number | undefined): this {
    let head = start;
    const req = this.req;
    const status = this.statusCode;
    this.bodyless = req.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    if (!date) head += `date: ${httpDateNow()}\r\n`;
    if (encoding !== undefined) this.chunked = encoding.endsWith('chunked');
    else if (!this.bodyless && !length) {
      if (knownLength !== undefined) head += `content-length: ${knownLength}\r\n`;
      else if (req.httpVersionMinor >= 1 && req.httpVersionMajor >= 1) {
        head += 'transfer-encoding: chunked\r\n';
        this.chunked = true;
      } else this.closeAfter = true; // HTTP/1.0: the body ends with the connection
    }
    if (connection?.includes('close')) this.closeAfter = true;
    if (!this.bodyless && !length && knownLength === undefined) this.connection.openEndedAnswer();
    const keep = req.keepAlive && !this.closeAfter && this.connection.mayKeep();
    if (keep) {
      if (connection === undefined) head += `connection: keep-alive\r\nkeep-alive: timeout=${Math.floor(this.connection.options.keepAliveMs / 1000)}\r\n`;
    } else {
      this.closeAfter = true;
      if (connection === undefined) head += 'connection: close\r\n';
    }
    this.head = `${head}\r\n`;
    this.headersSent = true;
    return this;
  }

  write(chunk: Buffer | string, callback?: (err?: Error | null) => void): boolean {
    if (this.writableEnded) {
      callback?.(Object.assign(new Error('write after end'), { code: 'ERR_STREAM_WRITE_AFTER_END' }));
      return false;
    }
    if (!this.headersSent) this.writeHead(this.statusCode);
    const socket = this.connection.socket;
    if (socket.destroyed || socket.writableEnded) {
      if (callback) process.nextTick(callback, Object.assign(new Error('the connection is closed'), { code: 'ERR_STREAM_DESTROYED' }));
      return false;
    }
    const length = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    if (this.bodyless || length === 0) {
      if (this.head !== undefined) this.flushHead();
      if (callback) process.nextTick(callback);
      return true;
    }
    this.bodyBytes += length;
    this.queuedBefore = socket.writableLength > 0;
    this.connection.cork();
    if (this.head !== undefined) this.flushHead();
    if (!this.chunked) return socket.write(chunk, callback);
    // Buffers only: a corked write that mixes in strings is first copied whole into a fresh buffer
    // (h1-connection.ts writeChunk says more).
    socket.write(Buffer.from(`${length.toString(16)}\r\n`, 'latin1'));
    socket.write(chunk);
    return socket.write(crlf, callback);
  }

  /**
   * Writes out what this tick's writes corked, and says whether the socket still holds bytes it
   * could not hand on at once (so a chunk written from a read buffer is still referenced:
   * response-relay.ts then says it keeps it, lent-views.ts).
   */
  flushHolds(): boolean {
    this.connection.uncorkNow();
    return socketHolds(this.connection.socket, this.queuedBefore);
  }

  /** Sent after a chunked body (RFC 9112 §7.1.2); an answer with a length has nowhere to put them. */
  addTrailers(fields: Readonly<Record<string, string | string[] | undefined>>): void {
    for (const name in fields) {
      const value = fields[name];
      if (value === undefined) continue;
      if (!tokenPattern.test(name)) throw Object.assign(new TypeError(`invalid trailer name ${JSON.stringify(name)}`), { code: 'ERR_INVALID_HTTP_TOKEN' });
      if (Array.isArray(value)) for (const v of value) this.trailers += headerLine(name, v);
      else this.trailers += headerLine(name, value);
    }
  }

  end(chunk?: Buffer | string, callback?: () => void): this {
    if (this.writableEnded) return this;
    if (!this.headersSent) this.writeHead(this.statusCode, undefined, undefined, chunk === undefined ? 0 : typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length);
    if (chunk !== undefined) this.write(chunk);
    const socket = this.connection.socket;
    if (!socket.destroyed && !socket.writableEnded) {
      if (this.head !== undefined) this.flushHead();
      if (this.chunked && !this.bodyless) {
        this.connection.cork();
        socket.write(`0\r\n${this.trailers}\r\n`, 'latin1');
      }
      // The answer is whole: it goes out now rather than after whatever else this tick runs (the
      // bookkeeping below, the upstream connection going back to its pool, the parser's return).
      this.connection.uncorkNow();
    }
    this.writableEnded = true;
    this.writableFinished = true;
    if (callback) process.nextTick(callback);
    this.connection.answered(this);
    this.emit('finish');
    this.closed = true;
    this.emit('close');
    return this;
  }

  destroy(err?: Error): void {
    this.connection.socket.destroy(err);
  }

  private flushHead(): void {
    this.connection.cork();
    this.connection.socket.write(this.head as string, 'latin1');
    this.head = undefined;
  }
}

function headerLine(name: string, value: string | number): string {
  const text = typeof value === 'number' ? String(value) : value;
  if (invalidValuePattern.test(text)) throw Object.assign(new TypeError(`invalid character in header ${JSON.stringify(name)}`), { code: 'ERR_INVALID_CHAR' });
  return `${name}: ${text}\r\n`;
}


/**
 * node:http's joining of repeated fields (IncomingMessage's `headers`): a field that must occur
 * once keeps its first value, set-cookie collects an array, cookie joins with "; ", the rest with ", ".
 */
const firstWins = new Set([
  'content-type', 'content-length', 'user-agent', 'referer', 'host', 'authorization', 'proxy-authorization',
  'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards', 'retry-after', 'etag',
  'last-modified', 'server', 'age', 'expires',
]);

export function joinFields(raw: readonly string[]): IncomingHttpHeaders {
  const headers: IncomingHttpHeaders = {};
  const fields = headers as Record<string, string | string[] | undefined>;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    const seen = fields[name];
    if (seen === undefined) {
      fields[name] = name === 'set-cookie' ? [value] : value;
    } else if (name === 'set-cookie') {
      (seen as string[]).push(value);
    } else if (!firstWins.has(name)) {
      fields[name] = `${seen as string}${name === 'cookie' ? '; ' : ', '}${value}`;
    }
  }
  return headers;
}

/** Why the socket does not read: the body's buffer is full; requests wait behind an answer; the body's reader paused it. */
const pausedForBody = 1;
const pausedForQueue = 2;
const pausedByReader = 4;

/**
 * Pure. Whether a request's Upgrade field asks only for h2c (`curl --http2` on an http:// URL
 * sends one): RFC 9113 §3.1 retired that upgrade, and a server may ignore an Upgrade it does not
 * take (RFC 9110 §7.8), so the request is served as the HTTP/1.1 request it also is, and its
 * Connection, Upgrade and HTTP2-Settings fields go no further (the last as its Connection field
 * names it, headers.ts nominatedFields). An app that
 * wants HTTP/2 speaks it with prior knowledge, which the sidecars take on the same ports.
 */
export function onlyH2c(raw: readonly string[]): boolean {
  let seen = false;
  for (let i = 0; i < raw.length; i += 2) {
    if (!isField(raw[i] as string, 'upgrade')) continue;
    for (const token of (raw[i + 1] as string).split(',')) {
      if (token.trim().toLowerCase() !== 'h2c') return false;
      seen = true;
    }
  }
  return seen;
}

/** The head callback's answer that stops llhttp after the head, as for an upgrade. */
const stopAfterHead = 2;

/** One accepted connection: the parser, the request being read, the answer being written. */
export class H1ServerConnection {
  private readonly parser: NativeParser;
  /** 'head': waiting for (the rest of) a request head since `since`; 'busy': a request is being served; 'idle': kept alive since `since`. */
  private phase: 'head' | 'busy' | 'idle' = 'head';
  private since: number;
  /** The request whose message the parser is reading (its body, until its end). */
  private reading: H1Request | undefined;
  /** The answer being written. */
  private current: H1Response | undefined;
  /** Requests that arrived (pipelined) while an answer was being written, handed on in order. */
  private readonly queue: H1Request[] = [];
  private paused = 0;
  private corked = false;
  private closed = false;
  private ending = false;
  /** The answer being written is open-ended and the socket's idle limit is `openEndedIdleMs` (openEndedAnswer). */
  private openEnded = false;
  private pendingFields: string[] = [];
  private pendingUrl = '';
  /** An upgrade or CONNECT head was read; the bytes after it belong to the new protocol. */
  private upgrading: H1Request | undefined;
  /**
   * An upgrade to h2c was read and served as a plain request (ignoredUpgrade): llhttp still stops
   * after that request, and what followed it in the same read is parsed again from there.
   */
  private resumeAfterUpgrade = false;
  private readonly onData = (chunk: Buffer) => this.read(chunk);
  private readonly onError = () => this.socket.destroy();
  private freed = false;
  /** The parser reads the socket's handle itself (consume()). */
  private consumed = false;
  /** Where the body read past the parser ends (startRaw); the parser waits for that end. */
  private readonly rawBody = new RawBody();
  /** The body is read past the parser now (rawRead). */
  private raw = false;
  /** The buffer the socket reads into past the parser, once adopted (startRaw). */
  private rawBuffer: Buffer | undefined;

  constructor(
    private readonly server: AnyServer, readonly socket: Socket, readonly options: H1ServerOptions, private readonly onGone: () => void,
    private readonly drain: { readonly draining: boolean },
  ) {
    this.since = performance.now();
    const parser = new HTTPParser();
    parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
    parser[HTTPParser.kOnHeaders] = (fields: string[], url: string) => {
      for (const f of fields) if (this.pendingFields.length < maxHeaderPairs * 2) this.pendingFields.push(f);
      this.pendingUrl += url;
    };
    parser[HTTPParser.kOnHeadersComplete] = (
      major: number, minor: number, fields: string[] | undefined, method: number, url: string | undefined,
      _status: unknown, _message: unknown, upgrade: boolean, keepAlive: boolean,
    ) => this.onHead(major, minor, fields, method, url, upgrade, keepAlive);
    parser[HTTPParser.kOnBody] = (chunk: Buffer) => this.onBody(chunk);
    parser[HTTPParser.kOnMessageComplete] = () => this.onMessageEnd();
    parser[HTTPParser.kOnMessageBegin] = () => this.onMessageBegin();
    this.parser = parser;
    // Bytes already read into the socket's stream (a protocol sniff unshifts them) come as 'data'.
    socket.on('data', this.onData);
    this.consume();
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    if (options.streamIdleMs > 0) {
      socket.setTimeout(options.streamIdleMs);
      socket.on('timeout', this.onIdle);
    }
  }

  private readonly onIdle = () => this.socket.destroy();

  /** The answer being written is open-ended: silence is limited by `openEndedIdleMs` until it ends. */
  openEndedAnswer(): void {
    const ms = this.options.openEndedIdleMs;
    if (ms === undefined || this.options.streamIdleMs <= 0 || this.openEnded) return;
    this.openEnded = true;
    this.socket.setTimeout(ms);
  }

  /** Called by the server's sweep: a head that takes too long is refused, an idle kept connection closed. */
  check(now: number): void {
    if (this.closed || this.upgrading) return;
    if (this.phase === 'head' && now - this.since > this.options.requestHeadersMs) {
      this.refuse(Object.assign(new Error('no complete request head in time'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }));
    } else if (this.phase === 'idle' && now - this.since > this.options.keepAliveMs) {
      this.socket.destroy();
    }
  }

  closeIfIdle(): void {
    if (this.phase === 'idle' || (this.phase === 'head' && !this.reading && !this.current)) this.socket.destroy();
  }

  mayKeep(): boolean {
    return !this.ending && !this.closed && this.options.keepAliveMs > 0 && !this.drain.draining;
  }

  cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(uncork, this);
  }

  uncorkNow(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  bodyWanted(): void {
    this.unpause(pausedForBody);
  }

  /**
   * The body still being read was paused by its reader. A body read past the parser stops the
   * socket now (a read that waited in the body's buffer would hold its view); a short one read by
   * the parser is stopped once its buffer is full, as a Readable is, without a system call per
   * request for a pause its reader lifts at once.
   */
  bodyPaused(body: H1RequestBody): void {
    if (this.reading?.body === body && this.rawBody.pending) this.pause(pausedByReader);
  }

  /** The body's reader resumed it; `asked`: its stream asked for more meanwhile. */
  bodyResumed(asked: boolean): void {
    this.unpause(asked ? pausedByReader | pausedForBody : pausedByReader);
  }

  private pause(why: number): void {
    if (this.paused === 0) {
      this.socket.pause();
      // A consumed handle reads on whatever its stream says: stop it as node:http's server does.
      const handle = this.handle;
      if (this.consumed && handle?.reading) {
        handle.reading = false;
        handle.readStop();
      }
    }
    this.paused |= why;
  }

  private unpause(why: number): void {
    if ((this.paused & why) === 0) return;
    this.paused &= ~why;
    if (this.paused === 0 && !this.closed && !this.upgrading) {
      this.socket.resume();
      const handle = this.handle;
      if (this.consumed && handle && !handle.reading) {
        handle.reading = true;
        handle.readStart();
      }
    }
  }

  private get handle(): StreamHandle | undefined {
    return (this.socket as unknown as { _handle?: StreamHandle | null })._handle ?? undefined;
  }

  /**
   * The parser reads the socket's handle itself, as node:http's server has it do: each read lands
   * in the parser's one shared buffer and is parsed in C++ before JavaScript hears of it, with no
   * per-read allocation and no trip through the socket's Readable stream. With the upstream side's
   * shared reads (shared-reads.ts), this took about 6% off each sidecar's CPU per request at 1000
   * requests/s (docs/benchmark-history.md). End of stream and errors still reach the socket. A
   * socket whose handle is not a native stream, or was consumed before, is read through 'data'.
   */
  private consume(): void {
    const handle = this.handle;
    if (!handle?.isStreamBase || handle._consumed) return;
    handle._consumed = true;
    this.parser[HTTPParser.kOnExecute] = this.afterRead;
    this.parser.consume(handle);
    this.consumed = true;
  }

  /** No more bytes for the parser: the connection is ending, or leaves HTTP. */
  private stopParsing(): void {
    this.socket.removeListener('data', this.onData);
    if (!this.consumed) return;
    this.consumed = false;
    this.parser.unconsume();
  }

  /** After the parser read from the consumed handle: what read() does after `execute`. */
  private readonly afterRead = (result: number | ParseError): void => {
    // Reads that bypass the stream do not touch the socket's idle timer (node:http does the same).
    (this.socket as unknown as { _unrefTimer(): void })._unrefTimer();
    if (typeof result !== 'number') return this.onParseError(result);
    if (this.upgrading && !this.closed) this.startUpgrade(this.parser.getCurrentBuffer().subarray(result));
    else if (this.rawBody.pending && !this.raw) this.startRaw(this.parser.getCurrentBuffer().subarray(result));
    else if (this.resumeAfterUpgrade) this.parseRest(Buffer.from(this.parser.getCurrentBuffer().subarray(result)));
  };

  /** A request's first byte: a kept-alive connection starts timing its next head. */
  private onMessageBegin(): void {
    if (this.phase !== 'idle') return;
    this.phase = 'head';
    this.since = performance.now();
  }

  private read(chunk: Buffer): void {
    let result: number | ParseError;
    try {
      result = this.parser.execute(chunk);
    } catch (err) {
      // A handler threw while the parser called it: that request cannot be answered sanely.
      this.socket.destroy(err as Error);
      return;
    }
    if (typeof result !== 'number') return this.onParseError(result);
    if (this.upgrading && !this.closed) this.startUpgrade(chunk.subarray(result));
    else if (this.rawBody.pending && !this.raw) this.startRaw(Buffer.from(chunk.subarray(result)));
    else if (this.resumeAfterUpgrade) this.parseRest(chunk.subarray(result));
  }

  /**
   * After a request whose upgrade was ignored (onlyH2c) ended: llhttp stopped there as for an
   * upgrade, and parses on as HTTP/1.1 when given the rest. Given it once the current read is
   * over (from the consumed handle's callback the parser is still in that read).
   */
  private parseRest(rest: Buffer): void {
    // The request may still be reading its body: llhttp stops only at its end.
    if (this.reading !== undefined) return;
    this.resumeAfterUpgrade = false;
    if (rest.length === 0 || this.closed) return;
    process.nextTick(() => {
      if (!this.closed) this.read(rest);
    });
  }

  private onHead(major: number, minor: number, fields: string[] | undefined, methodIndex: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): number {
    try {
      return this.takeHead(major, minor, fields, methodIndex, url, upgrade, keepAlive);
    } catch (err) {
      // A handler threw while the parser called it: that request cannot be answered sanely. (The
      // parser may be reading the handle itself, with no read() around it to catch this.)
      this.stopParsing();
      this.socket.destroy(err as Error);
      return 0;
    }
  }

  private takeHead(major: number, minor: number, fields: string[] | undefined, methodIndex: number, url: string | undefined, upgrade: boolean, keepAlive: boolean): number {
    const raw = fields ?? this.takeFields();
    const target = url ?? this.takeUrl();
    const method = parserMethods[methodIndex] ?? 'GET';
    const req = new H1Request(this.socket, method, target, raw, major, minor, keepAlive, upgrade && (method === 'CONNECT' || !onlyH2c(raw)));
    this.phase = 'busy';
    if (upgrade) {
      if (req.upgrade) {
        // The parser stops after this head; read() hands the socket over.
        this.upgrading = req;
        return 2;
      }
      this.resumeAfterUpgrade = true;
    }
    // RFC 9110 §6.4: a request has content when it says so by Content-Length or Transfer-Encoding.
    const length = req.field('content-length');
    const encoding = req.field('transfer-encoding');
    if ((length !== undefined && length !== '0') || encoding !== undefined) req.body = new H1RequestBody(this);
    else req.complete = true;
    this.reading = req.complete ? undefined : req;
    // A body longer than one read (viewsLength), with no transfer-encoding beside its length, and
    // a chunked body (its framing checked as llhttp would, raw-body.ts) are read past the
    // parser when the server's handlers take views: no copy per chunk.
    const chunked = this.options.bodyViews === true && length === undefined && encoding !== undefined && onlyChunked(encoding);
    const viewed = this.options.bodyViews === true && encoding === undefined ? viewsLength(length) : 0;
    const views = (viewed > 0 || chunked) && (this.rawBuffer !== undefined || readsAdoptable(this.socket));
    if (views && chunked) this.rawBody.chunked();
    else if (views) this.rawBody.counted(viewed);
    if (this.current || this.queue.length > 0) {
      this.queue.push(req);
      this.pause(pausedForQueue);
    } else this.dispatch(req);
    return views ? stopAfterHead : 0;
  }

  private onBody(chunk: Buffer): void {
    const req = this.reading;
    if (!req) return;
    req.bodyBytes += chunk.length;
    if (req.body && !req.body.push(chunk)) this.pause(pausedForBody);
  }

  private onMessageEnd(): void {
    const req = this.reading;
    // The parser's end of a head it stopped after: the body is still to come (rawRead).
    if (!req || this.rawBody.pending) return;
    this.reading = undefined;
    // A chunked body's trailers: Node's parser hands them over as fields after the body, and a
    // body read past it leaves them here too (rawBytes). They are this request's, never the next
    // head's; and they are in place before the body's end, which is when its reader looks.
    if (this.pendingFields.length > 0) this.takeTrailers(req);
    req.complete = true;
    req.body?.push(null);
    // Held for the body's reader: with the body whole, no byte more is its, and a stream that has
    // ended asks for no more (no _read), so the hold would never end and the connection's next
    // request would never be read. What follows is the next request's, held only by the queue.
    this.unpause(pausedForBody | pausedByReader);
    // Answered already (an early answer): the next request may come.
    if (!this.current && this.queue.length === 0 && !this.ending) this.becomeIdle();
  }

  private dispatch(req: H1Request): void {
    if (req.httpVersionMajor === 1 && req.httpVersionMinor === 1 && req.field('host') === undefined) {
      this.refuse(new Error('an HTTP/1.1 request without a Host field (RFC 9112 §3.2)'));
      return;
    }
    const res = new H1Response(this, req);
    this.current = res;
    const expect = req.field('expect');
    if (expect !== undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1) {
      if (continueExpression.test(expect)) {
        this.cork();
        this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
      } else if (this.server.listenerCount('checkExpectation') > 0) {
        this.server.emit('checkExpectation', req, res);
        return;
      } else {
        res.writeHead(417);
        res.end();
        return;
      }
    }
    this.server.emit('request', req, res);
  }

  /** The answer `res` was written to its end. */
  answered(res: H1Response): void {
    if (this.current !== res) return;
    this.current = undefined;
    if (this.openEnded) {
      this.openEnded = false;
      this.socket.setTimeout(this.options.streamIdleMs);
    }
    const req = res.req;
    if (res.closeAfter || this.closed) {
      this.ending = true;
      this.stopParsing();
      if (!this.closed) this.socket.end();
      return;
    }
    // The body nobody read is read and dropped, so the next request can follow it.
    if (!req.complete) req.body?.resume();
    const next = this.queue.shift();
    if (next) {
      if (this.queue.length === 0) this.unpause(pausedForQueue);
      this.dispatch(next);
      return;
    }
    if (req.complete && !this.reading) this.becomeIdle();
  }

  /**
   * A long body with a length, or a chunked one, read past the parser: from the read after its
   * head, the socket reads into a buffer of this connection's own (adoptReads: an accepted socket
   * takes no `onread` option) and each read goes to the body's reader as a view of it, lent (lent-views.ts):
   * Node's parser would copy every chunk into a fresh buffer, which for a large upload was most of
   * a sidecar's garbage and the major collections it starts (docs/benchmark-history.md). A view
   * still held after its callback (the body's own buffer, a write not taken whole) leaves that
   * buffer to its holder, and the next read goes into a fresh one. `rest`, what followed the
   * head in its read, is a copy already. At the body's end the parser reads again (endRaw).
   */
  private startRaw(rest: Buffer): void {
    // Refused at dispatch (the connection is ending): nothing more is read for it.
    if (this.closed || !this.reading) return;
    this.raw = true;
    if (this.consumed) {
      this.consumed = false;
      this.parser.unconsume();
    }
    if (!this.rawBuffer) {
      // TLS hands decrypted bytes on a record (16 KiB at most) at a time; plain TCP up to 64 KiB a read.
      const buffer = Buffer.allocUnsafeSlow((this.socket as { encrypted?: boolean }).encrypted ? 16 * 1024 : 64 * 1024);
      if (!adoptReads(this.socket, buffer, this.rawRead, this.nextRawBuffer)) {
        // Checked at the head (readsAdoptable): a socket that still refuses cannot be read.
        this.socket.destroy(new Error('the request body could not be read past the parser'));
        return;
      }
      this.rawBuffer = buffer;
    }
    if (rest.length > 0) this.rawBytes(rest, false);
  }

  /** The buffer of the socket's next read past the parser (net asks right after each read). */
  private readonly nextRawBuffer = (): Buffer => this.rawBuffer as Buffer;

  /** A read past the parser, into rawBuffer. */
  private readonly rawRead = (nread: number, buffer: Uint8Array): boolean => {
    const bytes = (buffer as Buffer).subarray(0, nread);
    // Not in a body (cannot happen while the parser reads the handle in front): parsed as a copy.
    if (!this.raw) this.read(Buffer.from(bytes));
    else this.rawBytes(bytes, true);
    return true;
  };

  /**
   * Bytes of a body read past the parser, framed by its length or chunked (the chunk
   * data of the read, one view; a chunked body's trailers become the request's, as on the
   * parser's own path, and framing llhttp would refuse refuses the request). The body's
   * part goes to its reader, lent when it is a view of rawBuffer; one still held afterwards leaves
   * rawBuffer to its holder.
   */
  private rawBytes(chunk: Buffer, lent: boolean): void {
    const req = this.reading;
    if (!req) return;
    let part: Buffer | undefined;
    try {
      part = this.rawBody.take(chunk);
    } catch (err) {
      return this.refuse(err as Error);
    }
    if (part) {
      req.bodyBytes += part.length;
      if (!lent) this.pushBody(part);
      else if (lendView(part, this.pushBody) || (req.body?.readableLength ?? 0) > 0) this.rawBuffer = Buffer.allocUnsafeSlow((this.rawBuffer as Buffer).length);
    }
    const end = this.rawBody.end;
    if (end < 0) return;
    // A chunked body's trailers, for onMessageEnd as the parser's own would be.
    const trailers = this.rawBody.trailers;
    if (trailers !== undefined && trailers.length > 0) this.pendingFields = trailers;
    this.endRaw(end < chunk.length ? Buffer.from(chunk.subarray(end)) : undefined);
  }

  private readonly pushBody = (chunk: Buffer): void => {
    const body = this.reading?.body;
    if (body && !body.push(chunk)) this.pause(pausedForBody);
  };

  /** The body read past the parser has ended: the parser starts afresh and reads the handle again; `rest` is the next request's. */
  private endRaw(rest: Buffer | undefined): void {
    this.raw = false;
    this.parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
    const handle = this.handle;
    if (handle && !this.closed) {
      this.parser.consume(handle);
      this.consumed = true;
    }
    this.onMessageEnd();
    if (rest && !this.closed) this.read(rest);
  }

  private becomeIdle(): void {
    this.phase = 'idle';
    this.since = performance.now();
  }

  private startUpgrade(head: Buffer): void {
    const req = this.upgrading as H1Request;
    if (this.current) {
      // Pipelined behind an answer still being written: wait for it.
      this.pause(pausedForQueue);
      this.stopParsing();
      const waitFor = this.current;
      waitFor.once('close', () => this.handOver(req, head));
      return;
    }
    this.handOver(req, head);
  }

  /** The socket leaves HTTP: its bytes from now on are the upgraded protocol's (or the tunnel's). */
  private handOver(req: H1Request, head: Buffer): void {
    if (this.closed || this.socket.destroyed) return;
    this.stopParsing();
    this.socket.removeListener('timeout', this.onIdle);
    this.socket.removeListener('end', this.onEnd);
    this.socket.removeListener('close', this.onClose);
    this.socket.removeListener('error', this.onError);
    this.closed = true;
    this.release();
    this.socket.pause();
    (this.socket as unknown as { readableFlowing: boolean | null }).readableFlowing = null;
    const event = req.method === 'CONNECT' ? 'connect' : 'upgrade';
    if (this.server.listenerCount(event) === 0) return void this.socket.destroy();
    this.server.emit(event, req, this.socket, head);
  }

  private onParseError(err: ParseError): void {
    // Bytes after a request that closes the connection are not read; its answer still goes out.
    if (err.code === 'HPE_CLOSED_CONNECTION') {
      this.ending = true;
      this.stopParsing();
      return;
    }
    this.refuse(err);
  }

  /** A request that cannot be served: the server's 'clientError' answers it and closes. */
  private refuse(err: Error): void {
    this.stopParsing();
    this.ending = true;
    this.reading?.body?.destroy(err);
    this.reading = undefined;
    // An answer already under way cannot be followed by another head: the connection just closes.
    if (this.current?.headersSent || this.server.listenerCount('clientError') === 0) return void this.socket.destroy();
    this.server.emit('clientError', err, this.socket);
  }

  private readonly onEnd = (): void => {
    // The caller sent its FIN. As node:http does (without httpAllowHalfOpen), a request not yet
    // read whole is abandoned and the connection is ended once what was written has gone.
    try {
      this.parser.finish();
    } catch {
      // a handler threw; the connection is ending anyway
    }
    this.abandon();
    if (this.socket.writable) this.socket.end();
  };

  private abandon(): void {
    const req = this.reading;
    this.reading = undefined;
    if (req?.body && !req.complete) {
      req.body.emit('aborted');
      req.body.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
    }
  }

  private readonly onClose = (): void => {
    if (this.closed) return;
    this.closed = true;
    this.abandon();
    const res = this.current;
    this.current = undefined;
    this.queue.length = 0;
    if (res && !res.writableEnded) {
      res.closed = true;
      res.cutWatcher?.responseCut();
      res.emit('close');
    }
    this.release();
  };

  private release(): void {
    if (this.freed) return;
    this.freed = true;
    if (this.consumed) {
      this.consumed = false;
      this.parser.unconsume();
    }
    releaseParser(this.parser);
    this.onGone();
  }

  private takeTrailers(req: H1Request): void {
    const raw = this.takeFields();
    req.rawTrailers = raw;
    req.trailers = joinFields(raw);
    if (req.body) setBodyTrailers(req.body, req.trailers);
  }

  private takeFields(): string[] {
    const fields = this.pendingFields;
    this.pendingFields = [];
    return fields;
  }

  private takeUrl(): string {
    const url = this.pendingUrl;
    this.pendingUrl = '';
    return url;
  }
}

function uncork(connection: H1ServerConnection): void {
  connection.uncorkNow();
}
