import { describe, expect, test } from 'vitest';
import { formatTraceparent, parseTraceparent } from './tracing.js';

const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
const spanId = '00f067aa0ba902b7';

describe('W3C traceparent', () => {
  test('a valid version-00 header parses, with tracestate, and formats back the same', () => {
    const header = `00-${traceId}-${spanId}-01`;
    expect(parseTraceparent(header)).toEqual({ traceId, spanId, flags: 1 });
    expect(parseTraceparent(header, 'congo=t61rcWkgMzE')).toEqual({ traceId, spanId, flags: 1, traceState: 'congo=t61rcWkgMzE' });
    expect(parseTraceparent(header, ['a=1', 'b=2'])?.traceState).toBe('a=1,b=2');
    expect(formatTraceparent(parseTraceparent(header)!)).toBe(header);
    expect(formatTraceparent({ traceId, spanId, flags: 0 })).toBe(`00-${traceId}-${spanId}-00`);
  });

  test('an invalid version is refused; a later version is read by its first four fields', () => {
    expect(parseTraceparent(`ff-${traceId}-${spanId}-01`)).toBeUndefined();
    expect(parseTraceparent(`0x-${traceId}-${spanId}-01`)).toBeUndefined();
    expect(parseTraceparent(`01-${traceId}-${spanId}-01-future`)).toEqual({ traceId, spanId, flags: 1 });
    expect(parseTraceparent(`00-${traceId}-${spanId}-01-extra`)).toBeUndefined();
  });

  test('all-zero trace or span ids are invalid', () => {
    expect(parseTraceparent(`00-${'0'.repeat(32)}-${spanId}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${traceId}-${'0'.repeat(16)}-01`)).toBeUndefined();
  });

  test('wrong lengths, uppercase hex, missing or repeated headers are invalid', () => {
    expect(parseTraceparent(`00-${traceId.slice(1)}-${spanId}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${traceId}0-${spanId}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${traceId}-${spanId.slice(1)}-01`)).toBeUndefined();
    expect(parseTraceparent(`00-${traceId}-${spanId}-1`)).toBeUndefined();
    expect(parseTraceparent(`00-${traceId.toUpperCase()}-${spanId}-01`)).toBeUndefined();
    expect(parseTraceparent('')).toBeUndefined();
    expect(parseTraceparent(undefined)).toBeUndefined();
    expect(parseTraceparent([`00-${traceId}-${spanId}-01`, `00-${traceId}-${spanId}-01`])).toBeUndefined();
  });
});
