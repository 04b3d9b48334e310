import { describe, expect, test } from 'vitest';
import { ChunkedBodyError } from './chunked-decoder.js';
import { RawBody } from './raw-body.js';

describe('RawBody: where a body read past the parser ends', () => {
  test('a body with a length: its bytes across reads, then where it ends in the last one', () => {
    const body = new RawBody();
    expect(body.pending).toBe(false);
    body.counted(8);
    expect(body.take(Buffer.from('abcde'))?.toString()).toBe('abcde');
    expect([body.pending, body.end]).toEqual([true, -1]);
    expect(body.take(Buffer.from('fghGET /'))?.toString()).toBe('fgh');
    expect([body.pending, body.end, body.trailers]).toEqual([false, 3, undefined]);
  });

  test('a chunked body: its data, then its end and trailers', () => {
    const body = new RawBody();
    body.chunked();
    expect(body.take(Buffer.from('3\r\nabc\r\n'))?.toString()).toBe('abc');
    expect([body.pending, body.end, body.trailers]).toEqual([true, -1, undefined]);
    expect(body.take(Buffer.from('0\r\nx-sum: 1\r\n\r\nnext'))).toBeUndefined();
    expect([body.pending, body.end, body.trailers]).toEqual([false, 15, ['x-sum', '1']]);
  });

  test('chunked framing llhttp would refuse throws, and the body is given up', () => {
    const body = new RawBody();
    body.chunked();
    expect(() => body.take(Buffer.from('3 \r\n'))).toThrow(ChunkedBodyError);
    expect(body.pending).toBe(false);
  });
});
