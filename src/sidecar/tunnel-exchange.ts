import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { ExchangeEnd } from '../core/channels.js';
import type { SpliceEnd, SplicedBytes } from '../core/splice.js';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * The request that opens a tunnel, as the tunnel code and the access log read it: an HTTP/1.1
 * Upgrade or CONNECT (h1-server.ts H1Request), or an HTTP/2 CONNECT's head (outbound-h2.ts).
 */
export interface TunnelRequest {
  readonly method: string;
  /** The request target: a CONNECT's authority (`ledger.demo.mesh:80`), an upgrade's path. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** Names and values as they arrived, alternating; an upgrade's head is written on from them. */
  readonly rawHeaders: string[];
  bodyBytes: number;
  response: ExchangeEnd | undefined;
}

/**
 * A WebSocket or CONNECT tunnel as the access log reads it (telemetry/access-log.ts): like an
 * HTTP answer, its line waits for the end, here the tunnel's, with the bytes the tunnel carried
 * each way after the opening request's head. The answer's head (101 or 200) is passed on unread,
 * so it is counted among the bytes back.
 */
export class TunnelExchange extends EventEmitter implements ExchangeEnd {
  bodyBytes = 0;
  closed = false;
  writableFinished = false;

  constructor(private readonly req: TunnelRequest) {
    super();
    req.response = this;
  }

  /**
   * meteredSplice's `onEnd`, with the caller's socket as its first side (its totals count the
   * bytes that came after the opening head and were written on before the splice began):
   * closed cleanly, or idle or broken (aborted).
   */
  readonly ended = (how: SpliceEnd, bytes: SplicedBytes): void => {
    this.req.bodyBytes = bytes.fromA;
    this.bodyBytes = bytes.fromB;
    this.closed = true;
    this.writableFinished = how === 'closed';
    this.emit('close');
  };
}

/**
 * The status of the answer to a tunnel's opening request, read from the first bytes its side
 * sends back (`HTTP/1.1 101 ...`, `HTTP/1.1 403 ...`), which are then passed on unread: the
 * metrics and the access log count a refused upgrade as the refusal it is, not as the 101 it
 * asked for. `fallback` when the first bytes are not a status line; 502 when that side closes
 * before sending any byte. `tell` is called once.
 */
export function whenTunnelAnswered(answering: Duplex, fallback: number, tell: (status: number) => void): void {
  let told = false;
  const once = (status: number) => {
    if (told) return;
    told = true;
    answering.removeListener('close', closedFirst);
    tell(status);
  };
  const closedFirst = () => once(502);
  answering.once('data', (first: Buffer) => once(answerStatus(first) ?? fallback));
  answering.once('close', closedFirst);
}

/** The status code of an HTTP/1.x status line at the start of `bytes`, if there is one. */
export function answerStatus(bytes: Buffer): number | undefined {
  const line = /^HTTP\/1\.[01] ([1-5]\d\d)[ \r]/.exec(bytes.subarray(0, 16).toString('latin1'));
  return line ? Number(line[1]) : undefined;
}
