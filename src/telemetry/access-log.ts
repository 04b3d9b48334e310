import { closeSync, openSync } from 'node:fs';
import pino from 'pino';
import { dirname } from 'node:path';
import { ensureDirectory, pathError } from '../core/user-paths.js';
import { isoTime } from '../core/utc-text.js';
import { channels, countExchangeBytes, type InboundRequestMessage, type OutboundRequestMessage, type RequestFacts, type TcpInboundClosedMessage, type TcpOutboundClosedMessage } from '../core/channels.js';
import { originListener } from './shared.js';

/**
 * The sidecar's access log (docs/sidecar.md, "Access log"): one line per HTTP request its
 * outbound or inbound answered and one per TCP connection that closed, to the container's
 * standard output or a file, as JSON or as a line for people. Off unless `accessLog` is
 * configured; then it subscribes to the same diagnostics channels the metrics read
 * (core/channels.ts), so the request path pays for it only when it is on. The request's own
 * fields (method, authority, path, the trace id) are read from the request object the channel
 * message refers to, only here.
 */

export type AccessLogFormat = 'json' | 'text';

/** One line of the access log, before it is written. Absent fields are left out. */
export interface AccessRecord {
  time: string;
  /** outbound: the app called through this sidecar; inbound: a caller reached the app. */
  direction: 'outbound' | 'inbound';
  /** http: a request (WebSocket and CONNECT included, logged when the tunnel opens); tcp: a connection, logged when it closed. */
  kind: 'http' | 'tcp';
  method?: string;
  authority?: string;
  path?: string;
  protocol?: 'HTTP/1.1' | 'HTTP/2';
  /** The status the app (outbound) or the caller (inbound) was answered; absent when no endpoint answered. */
  status?: number;
  /** Why there is no status: `connect_error` (no endpoint could be reached). */
  error?: string;
  /**
   * HTTP: until the answer's last byte was written (or its connection or stream closed first);
   * WebSocket and CONNECT: until the tunnel closed; TCP: until the connection's end. Retries
   * included.
   */
  durationMs: number;
  /** HTTP: until the response head was written, retries included (the rest is the body's transfer). */
  headMs?: number;
  /** HTTP: body bytes of the request as read from its sender, and of the answer as written to it. */
  requestBytes?: number;
  responseBytes?: number;
  /** gRPC: the `grpc-status` of the answer's trailers (0 OK, 14 UNAVAILABLE, ...). */
  grpcStatus?: number;
  /** Outbound: the catalog's `<ns>/<name>` (left out for a name the catalog does not know). */
  service?: string;
  /** Outbound: the cluster of the endpoint that answered (or was tried last). */
  cluster?: string;
  /** Outbound: host:port of that endpoint, a local instance or a remote gateway. */
  endpoint?: string;
  /** Inbound: the caller's SPIFFE ID (absent: a plain-text caller in a permissive namespace, or refused before it was known). */
  caller?: string;
  /** The W3C trace id of the request's traceparent, to find its spans. */
  traceId?: string;
  requestId?: string;
  userAgent?: string;
  /** TCP: what the local workload sent and got back. */
  sentBytes?: number;
  receivedBytes?: number;
  /**
   * How it ended. TCP: `closed`, `idle` or `error`. HTTP: `complete` (the whole answer was
   * written) or `aborted` (the connection closed or the stream was reset first: the sender left,
   * or the answer was cut short).
   */
  end?: 'closed' | 'idle' | 'error' | 'complete' | 'aborted';
}

const first = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);

/** method, authority, path and protocol of an HTTP/1.1 request (its request target in any form) or of HTTP/2 headers. */
export function requestFields(request: RequestFacts): Pick<AccessRecord, 'method' | 'authority' | 'path' | 'protocol' | 'traceId' | 'requestId' | 'userAgent'> {
  const { headers } = request;
  const h2 = headers[':method'] !== undefined;
  const method = request.method ?? first(headers[':method']);
  let authority = first(h2 ? headers[':authority'] : headers.host);
  let path = h2 ? first(headers[':path']) : request.url;
  if (!h2 && path !== undefined) {
    if (method === 'CONNECT') {
      // authority-form: host:port is the whole target.
      authority = path;
      path = undefined;
    } else if (!path.startsWith('/') && path !== '*') {
      // absolute-form, as an app sends to a proxy: http://host[:port]/path?query
      const scheme = path.indexOf('://');
      const slash = scheme < 0 ? -1 : path.indexOf('/', scheme + 3);
      if (scheme >= 0) {
        authority = slash < 0 ? path.slice(scheme + 3) : path.slice(scheme + 3, slash);
        path = slash < 0 ? '/' : path.slice(slash);
      }
    }
  }
  const traceparent = first(headers.traceparent);
  // W3C: version-traceid-parentid-flags; the trace id is 32 lowercase hex digits, not all zero.
  const traceId = traceparent !== undefined && /^[0-9a-f]{2}-[0-9a-f]{32}-/.test(traceparent) && !traceparent.startsWith('00000000000000000000000000000000', 3) ? traceparent.slice(3, 35) : undefined;
  // A field it does not have is undefined, left out of the line (httpRecord).
  return {
    method, authority, path, protocol: h2 ? 'HTTP/2' : 'HTTP/1.1', traceId,
    requestId: first(headers['x-request-id']), userAgent: first(headers['user-agent']),
  };
}

function optional<K extends string>(key: K, value: string | undefined): Partial<Record<K, string>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, string>);
}

const ms = (seconds: number) => Math.round(seconds * 1e6) / 1e3;
const round3 = (milliseconds: number) => Math.round(milliseconds * 1e3) / 1e3;

/** How an HTTP exchange ended, when the access log waited for its end. */
export interface ExchangeOutcome {
  /** From the request's start to the end of its answer. */
  durationMs: number;
  requestBytes: number;
  responseBytes: number;
  /** The whole answer was written. */
  complete: boolean;
  /** A gRPC answer's status. */
  grpcStatus?: number | undefined;
}

export function outboundRecord(m: OutboundRequestMessage, now: Date, ended?: ExchangeOutcome): AccessRecord {
  const failed = typeof m.code === 'number' ? undefined : m.code;
  const record = httpRecord('outbound', m.request, failed === undefined ? m.code as number : undefined, failed, m.seconds, now, ended);
  record.service = m.service;
  record.cluster = m.cluster;
  record.endpoint = m.endpoint;
  return record;
}

export function inboundRecord(m: InboundRequestMessage, now: Date, ended?: ExchangeOutcome): AccessRecord {
  const record = httpRecord('inbound', m.request, m.code, undefined, m.seconds, now, ended);
  record.caller = m.peer;
  return record;
}

/**
 * The fields of an HTTP line both directions share, in the order a line shows them (each
 * direction's own come after). One object per request, no spreads: a field it lacks is
 * undefined, which JSON.stringify and textLine leave out.
 */
function httpRecord(direction: 'outbound' | 'inbound', request: RequestFacts | undefined, status: number | undefined, error: string | undefined, seconds: number, now: Date, ended: ExchangeOutcome | undefined): AccessRecord {
  const r = request ? requestFields(request) : undefined;
  return {
    time: isoTime(now), direction, kind: 'http',
    method: r?.method, authority: r?.authority, path: r?.path, protocol: r?.protocol, traceId: r?.traceId, requestId: r?.requestId, userAgent: r?.userAgent,
    status, error,
    durationMs: ended ? round3(ended.durationMs) : ms(seconds), headMs: ended ? ms(seconds) : undefined,
    requestBytes: ended?.requestBytes, responseBytes: ended?.responseBytes, end: ended ? (ended.complete ? 'complete' : 'aborted') : undefined, grpcStatus: ended?.grpcStatus,
  };
}

/**
 * Calls `write` with the exchange's outcome once its answer has ended (at once if it has): an
 * HTTP/1.1 request carries its answer or its tunnel's (WebSocket, CONNECT), an HTTP/2 stream
 * itself. A request that carries none (no answer was begun for it) is written at once.
 */
export function whenExchangeEnds(m: { request?: RequestFacts | undefined; seconds: number }, write: (ended: ExchangeOutcome | undefined) => void): void {
  const response = m.request?.response;
  if (!response) return write(undefined);
  const outcome = (sinceHeadMs: number): ExchangeOutcome => ({
    durationMs: m.seconds * 1000 + sinceHeadMs, requestBytes: m.request?.bodyBytes ?? 0,
    responseBytes: response.bodyBytes, complete: response.writableFinished, grpcStatus: response.grpcStatus,
  });
  if (response.closed) return write(outcome(0));
  const headAt = performance.now();
  response.once('close', () => write(outcome(performance.now() - headAt)));
}

export function tcpRecord(m: TcpOutboundClosedMessage | TcpInboundClosedMessage, direction: 'outbound' | 'inbound', now: Date): AccessRecord {
  return {
    time: isoTime(now), direction, kind: 'tcp', durationMs: ms(m.seconds),
    ...('service' in m ? { service: m.service, cluster: m.cluster } : optional('caller', m.peer)),
    sentBytes: m.sentBytes, receivedBytes: m.receivedBytes, end: m.end,
  };
}

/**
 * A line for people, fields in a fixed order, as web servers' combined logs have them:
 * `<time> <direction> "<method> <authority><path> <protocol>" <status> <ms>ms` and then the
 * fields that are present as key=value (values with a space or quote are JSON-quoted).
 */
export function textLine(r: AccessRecord): string {
  const head = r.kind === 'tcp'
    ? `${r.time} ${r.direction} tcp ${r.end ?? '-'} ${r.durationMs}ms`
    : `${r.time} ${r.direction} "${r.method ?? '-'} ${`${r.authority ?? ''}${r.path ?? ''}` || '-'} ${r.protocol ?? '-'}" ${r.status ?? r.error ?? '-'} ${r.durationMs}ms`;
  const rest: string[] = [];
  for (const key of ['service', 'cluster', 'endpoint', 'caller', 'headMs', 'requestBytes', 'responseBytes', 'grpcStatus', 'end', 'sentBytes', 'receivedBytes', 'traceId', 'requestId', 'userAgent'] as const) {
    const value = r[key];
    // A TCP line says how it ended in its head.
    if (value === undefined || (key === 'end' && r.kind === 'tcp')) continue;
    const text = String(value);
    rest.push(`${key}=${/[\s"=]/.test(text) || text === '' ? JSON.stringify(text) : text}`);
  }
  return rest.length === 0 ? head : `${head} ${rest.join(' ')}`;
}

export interface AccessLog {
  /**
   * Starts writing: a line for each request and TCP connection published by `origins` (every
   * one in the process when undefined; several sidecars share a process in `isthmus dev up`).
   */
  start(origins?: readonly object[]): void;
  /** Stops listening, writes what is buffered (1 s at most) and closes its own file. */
  close(): Promise<void>;
}

/** Lines waiting to be written beyond this (a reader that does not keep up) are dropped, not held. */
export const accessLogMaxBuffered = 8 * 1024 * 1024;

/**
 * Opens the access log's file, first thing at start, so that a path that cannot be written is
 * refused at once, naming it (`given`: the flag or field it came from), before the sidecar asks
 * for a certificate or listens; start() begins the lines once its listeners exist.
 * `/dev/stdout` and `/dev/stderr` are the process's own descriptors (opening the device again
 * would write at offset 0 of a redirected file); any other path is created if missing (its
 * directory too) and appended to.
 *
 * Lines are buffered up to 4 KiB and written at least every second. When more than
 * `accessLogMaxBuffered` bytes wait (the pipe behind /dev/stdout is not read), new lines are
 * dropped. A write that fails (a full disk, a reader gone) turns the log off, never the sidecar.
 * `onProblem` is told once of each.
 */
export function openAccessLog(opts: { file: string; given: string; format?: AccessLogFormat | undefined; onProblem?: (problem: string) => void }): AccessLog {
  const fd = openDescriptor(opts.file, opts.given);
  let destination: ReturnType<typeof pino.destination> | undefined;
  let failed = false;
  let stopped = false;
  let unsubscribe = (): void => undefined;
  return {
    start(origins) {
      if (destination) return;
      const out = pino.destination({ fd, sync: false, minLength: 4096, maxLength: accessLogMaxBuffered, periodicFlush: 1000 });
      destination = out;
      let dropping = false;
      out.on('drop', () => {
        if (dropping) return;
        dropping = true;
        opts.onProblem?.(`the access log's reader does not keep up: lines beyond ${accessLogMaxBuffered} bytes waiting are dropped`);
      });
      out.on('error', (err: Error) => {
        if (failed) return;
        failed = true;
        opts.onProblem?.(`the access log cannot be written (${err.message}); it is off until the sidecar restarts`);
      });
      const text = opts.format === 'text';
      const write = (record: AccessRecord) => {
        if (failed || stopped) return;
        out.write(`${text ? textLine(record) : JSON.stringify(record)}\n`);
      };
      const line = <T>(toRecord: (message: T, now: Date) => AccessRecord) => (message: T) => {
        if (!failed) write(toRecord(message, new Date()));
      };
      // An HTTP exchange is written when its answer ends, with its bytes and whole duration.
      const exchange = <T extends { request?: RequestFacts | undefined; seconds: number }>(toRecord: (message: T, now: Date, ended?: ExchangeOutcome) => AccessRecord) => (message: T) => {
        if (!failed) whenExchangeEnds(message, (ended) => write(toRecord(message, new Date(), ended)));
      };
      const { listen, close } = originListener(origins);
      const stopCounting = countExchangeBytes();
      unsubscribe = () => {
        close();
        stopCounting();
      };
      listen(channels.outboundRequest, exchange(outboundRecord));
      listen(channels.inboundRequest, exchange(inboundRecord));
      listen(channels.tcpOutboundClosed, line((m: TcpOutboundClosedMessage, now) => tcpRecord(m, 'outbound', now)));
      listen(channels.tcpInboundClosed, line((m: TcpInboundClosedMessage, now) => tcpRecord(m, 'inbound', now)));
    },
    close() {
      unsubscribe();
      // Exchanges still open when the sidecar stops are not written: the file is closing.
      stopped = true;
      const out = destination;
      if (!out) {
        if (fd > 2) closeSync(fd);
        return Promise.resolve();
      }
      if (failed) {
        out.destroy();
        return Promise.resolve();
      }
      // Asynchronous, and bounded: a synchronous flush would spin for as long as a pipe nobody
      // reads stays full (sonic-boom retries EAGAIN, and other errors, without end).
      return new Promise<void>((resolve) => {
        // Not written within a second: what is left is dropped, and its retries stop.
        const timer = setTimeout(() => {
          try {
            out.destroy();
          } catch {
            // Closed meanwhile.
          }
          resolve();
        }, 1000);
        timer.unref();
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        out.once('close', done);
        out.once('error', done);
        out.end();
      });
    },
  };
}

function openDescriptor(file: string, given: string): number {
  if (file === '/dev/stdout') return 1;
  if (file === '/dev/stderr') return 2;
  try {
    ensureDirectory(dirname(file), given);
  } catch (err) {
    // Named by the file the user gave, with the reason its directory could not be used.
    throw pathError((err as { cause?: unknown }).cause ?? err, file, 'write-file', given);
  }
  try {
    return openSync(file, 'a', 0o644);
  } catch (err) {
    throw pathError(err, file, 'write-file', given);
  }
}
