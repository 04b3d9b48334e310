import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { IsthmusError } from '../core/errors.js';
import type { H2Connection } from '../h2/connection.js';
import { h2Error } from '../h2/frames.js';
import type { HeaderBlock } from '../h2/hpack.js';
import type { H2Stream, StreamHandler } from '../h2/stream.js';
import { bodyTrailers, forwardableTrailers } from './body-trailers.js';
import { h2ForwardFields } from './h2-headers.js';
import { fieldOf, fieldsOf } from './h2-own-stream.js';

/** What outbound.ts hands a pool's dispatch for one attempt, and what this sends it over instead. */
export interface H2DispatchOptions {
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body: Readable | null;
  headersTimeout: number;
  bodyTimeout: number;
  openEndedTimeout?: number;
}

type Controller = Dispatcher.DispatchController;

/** A block's fields as a header record (no pseudo-headers), repeated fields as arrays. */
function recordOf(block: HeaderBlock): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const fields = block.fields;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    if (name.charCodeAt(0) === 58) continue;
    const value = fields[i + 1]!;
    const had = out[name];
    if (had === undefined) out[name] = value;
    else if (Array.isArray(had)) had.push(value);
    else out[name] = [had, value];
  }
  return out;
}

const empty = Buffer.alloc(0);

/**
 * One HTTP/1.1 request of the app sent as a stream on a kept HTTP/2 connection to the next
 * sidecar (`outbound.upgradeToHttp2`), answered through the same undici dispatch handler an
 * HTTP/1.1 pool would call (response-relay.ts), with the same contract as an H1Connection:
 *
 * - the request body streams out with back-pressure (a full stream pauses the body until the
 *   destination's window opens), and ends with its trailers when it has any; the answer's body
 *   pieces go to the handler as they come, each credited to the destination once the handler
 *   took it, and only after `resume` when it paused: a slow app holds the destination back by
 *   HTTP/2 flow control;
 * - `headersTimeout` counts from the request's end to the answer's head, `bodyTimeout` is the
 *   silence allowed either way (an answer held back by a paused handler is not silence), and
 *   `openEndedTimeout` replaces it once the head of an answer without content-length passed;
 * - failures carry the codes retry-policy.ts reads: ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED for a
 *   stream provably not processed (REFUSED_STREAM, past a GOAWAY, a connection that takes no
 *   more), UND_ERR_HEADERS_TIMEOUT and UND_ERR_BODY_TIMEOUT, ERR_HTTP2_STREAM_ERROR for a reset,
 *   and the connection's own error when it could not be opened;
 * - `abort` (the app went away) resets the stream with CANCEL.
 *
 * `done` runs once when the exchange is over, however it ended.
 */
export function dispatchOverH2(connection: Promise<H2Connection>, opts: H2DispatchOptions, handler: Dispatcher.DispatchHandler, done?: () => void): void {
  let stream: H2Stream | undefined;
  let started = false;
  let over = false;
  let paused = false;
  /** Answer bytes the paused handler took and the destination has not been credited for. */
  let owed = 0;
  let aborted = false;
  let reason: Error | null = null;
  let headTimer: NodeJS.Timeout | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  let idleMs = opts.bodyTimeout;
  const body = opts.body;

  const finish = (err: Error | undefined, trailers?: Record<string, string | string[]>) => {
    if (over) return;
    over = true;
    clearTimeout(headTimer);
    clearTimeout(idleTimer);
    if (body && !body.destroyed) body.destroy();
    // Answered (or failed) while the request body still went out: the rest is not wanted.
    if (stream?.localOpen) stream.reset(h2Error.cancel);
    done?.();
    if (err) handler.onResponseError?.(controller, err);
    else handler.onResponseEnd?.(controller, trailers ?? {});
  };
  /**
   * Ends the exchange with `err`, then resets the stream with CANCEL: in that order, since the
   * reset reports the stream's close at once, which would otherwise end it as a reset by the destination.
   */
  const cancel = (err: Error) => {
    const s = stream;
    finish(err);
    s?.reset(h2Error.cancel);
  };
  const controller = {
    abort(err: Error) {
      if (aborted || over) return;
      aborted = true;
      reason = err;
      cancel(err);
    },
    pause() {
      paused = true;
    },
    resume() {
      if (!paused) return;
      paused = false;
      if (owed > 0 && stream) {
        const n = owed;
        owed = 0;
        stream.consumed(n);
      }
    },
    get paused() { return paused; },
    get aborted() { return aborted; },
    get reason() { return reason; },
  } as unknown as Controller;

  const onIdle = () => {
    // A handler that paused holds the answer back itself: that is not the destination's silence.
    if (paused) {
      idleTimer?.refresh();
      return;
    }
    cancel(Object.assign(new Error(started ? `the destination's answer was silent for ${idleMs} ms` : `no byte either way for ${idleMs} ms, and no answer came`), { code: 'UND_ERR_BODY_TIMEOUT' }));
  };
  const touch = () => {
    if (idleTimer) idleTimer.refresh();
    else if (idleMs > 0) idleTimer = setTimeout(onIdle, idleMs);
  };
  const startHeadClock = () => {
    if (started || headTimer || over || !(opts.headersTimeout > 0)) return;
    headTimer = setTimeout(() => {
      cancel(Object.assign(new Error(`the destination sent no answer within ${opts.headersTimeout} ms of the request's end`), { code: 'UND_ERR_HEADERS_TIMEOUT' }));
    }, opts.headersTimeout);
  };

  const streamHandler: StreamHandler = {
    onHeaders: (_s, block, endStream, kind) => {
      if (over) return;
      touch();
      if (kind === 'trailers') return finish(undefined, recordOf(block));
      if (kind === 'informational') return;
      clearTimeout(headTimer);
      started = true;
      const headers = recordOf(block);
      if (opts.openEndedTimeout !== undefined && headers['content-length'] === undefined && opts.openEndedTimeout !== idleMs) {
        idleMs = opts.openEndedTimeout;
        clearTimeout(idleTimer);
        idleTimer = undefined;
        touch();
      }
      handler.onResponseStart?.(controller, Number(fieldOf(block, ':status')), headers, '');
      if (endStream) finish(undefined);
    },
    onData: (s, piece, end) => {
      if (over) {
        s.consumed(piece.length);
        return;
      }
      touch();
      if (piece.length > 0) {
        handler.onResponseData?.(controller, piece);
        if (paused) owed += piece.length;
        else s.consumed(piece.length);
      }
      if (end) finish(undefined);
    },
    onWritable: () => {
      if (body && !over && body.isPaused()) body.resume();
    },
    onClose: (_s, code, unprocessed) => {
      if (over) return;
      if (!started) {
        finish(unprocessed
          ? new IsthmusError('ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', `the destination refused the stream unprocessed (code ${code})`)
          : Object.assign(new Error(`the destination closed the stream (code ${code}) before answering`), { code: 'ERR_HTTP2_STREAM_ERROR' }));
        return;
      }
      // A reset with NO_ERROR after the head is a server done with the stream: the answer ends with what came.
      if (code === h2Error.noError) finish(undefined);
      else finish(Object.assign(new Error(`the destination reset the stream (code ${code}) mid-answer`), { code: 'ERR_HTTP2_STREAM_ERROR' }));
    },
  };

  handler.onRequestStart?.(controller, {});
  connection.then((conn) => {
    if (over) return;
    const fields = [':method', opts.method, ':scheme', 'https', ':authority', String(opts.headers.host ?? ''), ':path', opts.path, ...fieldsOf(h2ForwardFields(opts.headers))];
    try {
      stream = conn.request(fields, body === null, streamHandler);
    } catch (err) {
      finish(new IsthmusError('ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', `the destination's connection takes no new streams: ${(err as Error).message}`, { cause: err }));
      return;
    }
    touch();
    if (!body) {
      startHeadClock();
      return;
    }
    const up = stream;
    body.on('data', (chunk: Buffer) => {
      touch();
      if (!up.write(chunk)) body.pause();
    });
    body.once('end', () => {
      if (over) return;
      // An app's chunked request that ended with trailers (body-trailers.ts): they close the
      // stream as a HEADERS frame, and the destination's inbound writes them after the last chunk.
      const trailers = forwardableTrailers(bodyTrailers(body));
      if (trailers === undefined) up.write(empty, true);
      else up.end(fieldsOf(trailers));
      startHeadClock();
    });
    body.once('error', (err) => cancel(err));
  }, (err: Error) => finish(err));
}
