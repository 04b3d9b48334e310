import { IsthmusError } from '../core/errors.js';
import type { H2Connection } from '../h2/connection.js';
import { h2Error } from '../h2/frames.js';
import type { HeaderBlock } from '../h2/hpack.js';
import type { H2Stream, StreamHandler } from '../h2/stream.js';
import type { CallerStream } from './h2-caller.js';
import { fieldOf } from './h2-own-stream.js';
import { retriedAnswerCode } from './retry-policy.js';

/**
 * The sidecar's HTTP/2 relay, on Isthmus's own HTTP/2 (src/h2/):
 * one stream from the caller (`caller`, the side of a stream an H2Connection server handed over,
 * h2-caller.ts, which feeds the request body to each attempt and keeps it for the next) relayed
 * as a stream on `upstream`, an H2Connection client. Called once per attempt, by outbound-h2.ts
 * and inbound-h2.ts, with the contract of the node:http2 relay it replaced:
 *
 * - bodies both ways as they come, each piece credited to the side it came from only once the
 *   other side's connection took it, so a slow reader holds the sender back by HTTP/2 flow
 *   control and nothing piles up here;
 * - trailers both ways (gRPC's grpc-status), a trailers-only answer kept trailers-only;
 * - cancellation both ways: a reset on either side resets the other with its code;
 * - resolves with the status once the answer's head has been passed on; rejects before that so
 *   the caller may retry: ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED when the destination provably did
 *   not process the stream (REFUSED_STREAM, or past a GOAWAY), ETIMEDOUT when no head came within
 *   `responseHeadersMs` of the request's end or nothing moved for `streamIdleMs`, the retried
 *   answer's code when `retryAnswer` holds it back. After the head, a failure or silence cuts the
 *   caller's stream.
 */
export interface StreamForward {
  /** The request head for the next hop, pseudo-header fields first (name, value, ...). */
  fields: string[];
  neverIndexed?: number[];
  responseHeadersMs: number;
  streamIdleMs: number;
  /** Silence allowed once the head of an answer without content-length (gRPC, a watch) has passed. */
  openEndedIdleMs?: number;
  /** A response field the caller must not see (the trace report between sidecars). */
  drop?: string;
  retryAnswer?: (status: number, grpcStatus: number | undefined) => boolean;
  trailersStatus?: (grpcStatus: number) => void;
  /** Runs once when the upstream stream is over, however it ended. */
  done?: () => void;
  /** Told the answer's head as it is passed on (its grpc-status, for a trailers-only answer), its trailers, and its body's bytes: the caller's telemetry. */
  onHead?: (head: HeaderBlock) => void;
  onTrailers?: (trailers: HeaderBlock) => void;
  onAnswerBytes?: (n: number) => void;
}

/** `fields` less the field named `drop` (and its never-indexed marks moved with the rest). */
function without(block: HeaderBlock, drop: string | undefined): { fields: string[]; neverIndexed: number[] | undefined } {
  if (drop === undefined || fieldOf(block, drop) === undefined) return { fields: block.fields, neverIndexed: block.neverIndexed };
  const fields: string[] = [];
  const neverIndexed: number[] = [];
  for (let i = 0; i < block.fields.length; i += 2) {
    if (block.fields[i] === drop) continue;
    if (block.neverIndexed?.includes(i / 2)) neverIndexed.push(fields.length / 2);
    fields.push(block.fields[i]!, block.fields[i + 1]!);
  }
  return { fields, neverIndexed: neverIndexed.length > 0 ? neverIndexed : undefined };
}

/**
 * Passes one side's data to the other: written at once; credited to the sender at once when
 * the receiver's side took it, else when the receiver says it can take more.
 */
class Pipe {
  private owed = 0;
  constructor(private readonly from: () => H2Stream | undefined, private readonly to: () => H2Stream | undefined) {}

  data(piece: Buffer, end: boolean): void {
    const target = this.to();
    const source = this.from();
    if (!target || target.closed) {
      source?.consumed(piece.length);
      return;
    }
    const taken = target.write(piece, end);
    if (taken) source?.consumed(piece.length);
    else this.owed += piece.length;
  }

  /** The receiving side drained: credit what waited. */
  writable(): void {
    if (this.owed === 0) return;
    const owed = this.owed;
    this.owed = 0;
    this.from()?.consumed(owed);
  }
}

export function relayStream(upstream: H2Connection, caller: CallerStream, f: StreamForward): Promise<number> {
  const downstream = caller.stream;
  return new Promise<number>((resolve, reject) => {
    let started = false;
    let settled = false;
    let up: H2Stream | undefined;
    let idleMs = f.streamIdleMs;
    let headTimer: NodeJS.Timeout | undefined;
    let idleTimer: NodeJS.Timeout | undefined;
    /** The answer's end (END_STREAM or trailers) has been passed to the caller, though it may still wait there for window. */
    let answerEnded = false;
    /** Told the grpc-status of the trailers when the head had none and was not a 5xx (attempts.ts TrailersStatus). */
    let judge: ((grpcStatus: number) => void) | undefined;
    const answerBody = new Pipe(() => up, () => downstream);
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(headTimer);
      stopIdle();
      // The next attempt, if any, takes the caller's body from here.
      caller.detach();
      caller.link(undefined);
      reject(err);
    };
    const onIdle = () => {
      if (!started) fail(Object.assign(new Error(`no byte either way for ${f.streamIdleMs} ms before a response head (timeouts.streamIdle)`), { code: 'ETIMEDOUT' }));
      up?.reset(h2Error.cancel);
      if (started) downstream.reset(h2Error.cancel);
    };
    /** The idle limit the running timer was set with. */
    let idleTimerMs = 0;
    // Every frame either way restarts the idle clock: the same timer, refreshed, unless the limit changed.
    const touch = () => {
      if (idleTimer !== undefined && idleTimerMs === idleMs) {
        idleTimer.refresh();
        return;
      }
      clearTimeout(idleTimer);
      idleTimerMs = idleMs;
      idleTimer = setTimeout(onIdle, idleMs);
    };
    const stopIdle = () => {
      clearTimeout(idleTimer);
      idleTimer = undefined;
    };
    const startHeadClock = () => {
      if (started || headTimer) return;
      headTimer = setTimeout(() => {
        // The reason first: the reset below closes the upstream stream, which would report another.
        fail(Object.assign(new Error(`no response head within ${f.responseHeadersMs} ms of the request's end`), { code: 'ETIMEDOUT' }));
        up?.reset(h2Error.cancel);
      }, f.responseHeadersMs);
    };

    const upHandler: StreamHandler = {
      onHeaders: (_s, block, endStream, kind) => {
        touch();
        if (kind === 'trailers') {
          const status = fieldOf(block, 'grpc-status');
          if (judge && status !== undefined) judge(Number(status));
          f.onTrailers?.(block);
          answerEnded = true;
          downstream.end(block.fields, block.neverIndexed);
          return;
        }
        const head = without(block, f.drop);
        if (kind === 'informational') {
          downstream.sendHeaders(head.fields, false, head.neverIndexed);
          return;
        }
        clearTimeout(headTimer);
        const status = Number(fieldOf(block, ':status'));
        const grpcStatus = fieldOf(block, 'grpc-status');
        if (f.retryAnswer?.(status, grpcStatus === undefined ? undefined : Number(grpcStatus))) {
          fail(Object.assign(new Error(`the destination answered ${status}${grpcStatus === undefined ? '' : ` (grpc-status ${grpcStatus})`}; retried`), { code: retriedAnswerCode, status }));
          up?.reset(h2Error.cancel);
          return;
        }
        judge = f.trailersStatus !== undefined && grpcStatus === undefined && status < 500 ? f.trailersStatus : undefined;
        if (f.openEndedIdleMs !== undefined && fieldOf(block, 'content-length') === undefined) idleMs = f.openEndedIdleMs;
        // Started before the head is written: a trailers-only head closes the caller's stream at once.
        started = true;
        if (!settled) {
          settled = true;
          resolve(status);
        }
        f.onHead?.(block);
        // gRPC's trailers-only answer (an error, most often) stays one HEADERS frame with END_STREAM.
        if (endStream) answerEnded = true;
        downstream.sendHeaders(head.fields, endStream, head.neverIndexed);
      },
      onData: (_s, piece, end) => {
        touch();
        if (end) answerEnded = true;
        if (f.onAnswerBytes && piece.length > 0) f.onAnswerBytes(piece.length);
        answerBody.data(piece, end);
      },
      onWritable: () => caller.upWritable(),
      onClose: (_s, code, unprocessed) => {
        f.done?.();
        clearTimeout(headTimer);
        if (!started) {
          stopIdle();
          fail(unprocessed
            ? new IsthmusError('ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', `the destination refused the stream unprocessed (code ${code})`)
            : Object.assign(new Error(`the destination closed the stream (code ${code}) before answering`), { code: 'ERR_HTTP2_STREAM_ERROR' }));
          return;
        }
        // Cut mid-answer: the caller's stream ends the same way. A reset with NO_ERROR after the
        // head is a server done with the stream (node:http2 sends one after a flow-controlled
        // answer in place of END_STREAM): the caller's answer ends cleanly after what it has.
        if (code !== h2Error.noError && !downstream.closed) downstream.reset(code);
        else if (code === h2Error.noError && !answerEnded && downstream.localOpen) downstream.end();
        if (downstream.closed) stopIdle();
      },
    };

    const headOnly = caller.headOnly;
    try {
      up = upstream.request(f.fields, headOnly, upHandler, f.neverIndexed);
    } catch (err) {
      f.done?.();
      fail(new IsthmusError('ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED', `the destination's connection takes no new streams: ${(err as Error).message}`, { cause: err }));
      return;
    }
    caller.link({
      callerWritable: () => answerBody.writable(),
      callerClosed: (code) => {
        stopIdle();
        // The caller cancelled, or its connection went: the destination stops working on it too.
        // (Closed with NO_ERROR, both of its ends have passed: nothing is left to stop.)
        if (code !== h2Error.noError && up && !up.closed) up.reset(code);
        if (!started) fail(Object.assign(new Error(`the caller closed the stream (code ${code}) before an answer`), { code: 'ERR_HTTP2_STREAM_ERROR' }));
      },
    });
    touch();
    if (headOnly) startHeadClock();
    else caller.feed(up, startHeadClock);
  });
}
