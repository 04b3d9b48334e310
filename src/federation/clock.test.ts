import { describe, expect, test } from 'vitest';
import { clockSkewVerdict } from './clock.js';

const hint = 'fix the clock';

describe('clockSkewVerdict: every etcd member is asked, the worst answer decides', () => {
  test.each([
    ['one member, in step', [{ endpoint: 'a', skewMs: 400 }], 'ok', /^0\.4 s from etcd's clock$/],
    ['the second member is far off', [{ endpoint: 'a', skewMs: 0 }, { endpoint: 'b', skewMs: -45_000 }], 'failed', /-45\.0 s from the clock of b \(the furthest of 2 members\)/],
    ['the second member is a little off', [{ endpoint: 'a', skewMs: 0 }, { endpoint: 'b', skewMs: 7000 }], 'warn', /7\.0 s from the clock of b/],
    ['the first member is down, the second in step', [{ endpoint: 'a', error: 'ECONNREFUSED' }, { endpoint: 'b', skewMs: 100 }], 'warn', /0\.1 s from etcd's clock; a did not answer \(ECONNREFUSED\)/],
    ['a member down and another far off: the skew is what fails', [{ endpoint: 'a', error: 'ECONNREFUSED' }, { endpoint: 'b', skewMs: 60_000 }], 'failed', /60\.0 s/],
    ['no member answers', [{ endpoint: 'a', error: 'ECONNREFUSED' }, { endpoint: 'b', error: 'timeout' }], 'failed', /no etcd member told its clock \(a: ECONNREFUSED; b: timeout\)/],
  ] as const)('%s', (_name, asked, status, detail) => {
    const verdict = clockSkewVerdict([...asked], hint);
    expect(verdict.status).toBe(status);
    expect(verdict.detail).toMatch(detail);
    if (status !== 'ok') expect(verdict.hint).toBeTruthy();
  });

  test('a skew past the limit carries the caller\'s hint', () => {
    expect(clockSkewVerdict([{ endpoint: 'a', skewMs: 31_000 }], hint).hint).toBe(hint);
  });
});
