import type { ServerHttp2Stream } from 'node:http2';
import { EventEmitter } from 'node:events';
import { describe, expect, test } from 'vitest';
import { countExchangeBytes } from '../core/channels.js';
import { countRequestBody, h2ExchangeOf, trackH2Exchange } from './h2-exchange.js';

/** Enough of a stream for the counting: events, and what `closed` and `rstCode` say. */
const stream = () => Object.assign(new EventEmitter(), { closed: false, rstCode: undefined as number | undefined }) as unknown as ServerHttp2Stream & EventEmitter;

describe('an HTTP/2 stream\'s counts', () => {
  test('are kept only while an access log reads them: with none, a stream carries no answer to wait for and no counting listener', () => {
    const untracked = stream();
    const quiet = trackH2Exchange(untracked, 'POST', { ':method': 'POST' }, false);
    expect([quiet.exchange, quiet.facts.response, h2ExchangeOf(untracked)]).toEqual([undefined, undefined, undefined]);
    countRequestBody(untracked, quiet.exchange);
    expect(untracked.listenerCount('data')).toBe(0);

    const stop = countExchangeBytes();
    try {
      const tracked = stream();
      const { facts, exchange } = trackH2Exchange(tracked, 'POST', { ':method': 'POST' }, false);
      expect(h2ExchangeOf(tracked)).toBe(exchange);
      countRequestBody(tracked, exchange);
      tracked.emit('data', Buffer.alloc(300));
      tracked.emit('data', Buffer.alloc(20));
      expect(facts.bodyBytes).toBe(320);
      exchange!.noteGrpcStatus({ 'grpc-status': '14' });
      exchange!.noteGrpcStatus({ 'grpc-status': 'not a code' });
      expect(exchange!.grpcStatus).toBe(14);
    } finally {
      stop();
      stop(); // a second stop does not count twice
    }
    expect(trackH2Exchange(stream(), 'GET', {}, false).exchange).toBeUndefined();
  });

  test('a gRPC call is followed for its status with no access log, and nothing counts its bytes', () => {
    const call = stream();
    const { facts, exchange } = trackH2Exchange(call, 'POST', { ':method': 'POST', 'content-type': 'application/grpc' }, true);
    expect(h2ExchangeOf(call)).toBe(exchange);
    expect(exchange?.countsBytes).toBe(false);
    // The access log is not running: the facts carry no answer for it to wait on.
    expect(facts.response).toBeUndefined();
    countRequestBody(call, exchange);
    expect(call.listenerCount('data')).toBe(0);
    exchange!.noteGrpcStatus({ 'grpc-status': '0' });
    expect(exchange!.grpcStatus).toBe(0);
  });
});
