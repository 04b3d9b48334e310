import { EventEmitter } from 'node:events';
import type { ExchangeEnd } from '../core/channels.js';
import type { SpliceEnd, SplicedBytes } from '../core/splice.js';
import type { H1Request } from './h1-server.js';

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

  /** `early`: bytes that came after the opening head, written on before the splice began. */
  constructor(private readonly req: H1Request, private readonly early: number) {
    super();
    req.response = this;
  }

  /** splice's `onEnd`, with the caller's socket as its first side: closed cleanly, or idle or broken (aborted). */
  readonly ended = (how: SpliceEnd, bytes: SplicedBytes): void => {
    this.req.bodyBytes = this.early + bytes.fromA;
    this.bodyBytes = bytes.fromB;
    this.closed = true;
    this.writableFinished = how === 'closed';
    this.emit('close');
  };
}
