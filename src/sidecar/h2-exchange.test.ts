import { describe, expect, test } from 'vitest';
import { countExchangeBytes } from '../core/channels.js';
import { trackH2Exchange, type ExchangeStream } from './h2-exchange.js';

/** Enough of a stream for the counting: whether it closed, its code, and its close listeners. */
const stream = (): ExchangeStream => ({ closed: false, closeCode: -1, whenClosed: () => undefined });

describe('an HTTP/2 stream\'s counts', () => {
  test('are kept only while an access log reads them: with none, a stream carries no answer to wait for', () => {
    const untracked = stream();
    const quiet = trackH2Exchange(untracked, 'POST', { ':method': 'POST' }, false);
    expect([quiet.exchange, quiet.facts.response]).toEqual([undefined, undefined]);

    const stop = countExchangeBytes();
    try {
      const tracked = stream();
      const { facts, exchange } = trackH2Exchange(tracked, 'POST', { ':method': 'POST' }, false);
      // The caller's side (h2-caller.ts) counts the body and sets it when the stream closes.
      exchange!.requestBytes = 320;
      expect(facts.bodyBytes).toBe(320);
      exchange!.noteGrpcStatus('14');
      exchange!.noteGrpcStatus('not a code');
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
    expect(exchange?.countsBytes).toBe(false);
    // The access log is not running: the facts carry no answer for it to wait on.
    expect(facts.response).toBeUndefined();
    exchange!.noteGrpcStatus('0');
    expect(exchange!.grpcStatus).toBe(0);
  });
});
