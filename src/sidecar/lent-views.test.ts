import { describe, expect, test } from 'vitest';
import { isLentView, keepsView, lendView, viewsLength } from './lent-views.js';

describe('viewsLength: which bodies are read past the parser as views', () => {
  test.each<[string | string[] | undefined, number, string]>([
    [undefined, 0, 'no content-length'],
    ['0', 0, 'empty'],
    ['65536', 0, 'one read at most: the parser copies it once'],
    ['65537', 65537, 'longer than one read'],
    ['1073741824', 1073741824, 'a gigabyte'],
    ['0000065537', 65537, 'leading zeros, as llhttp reads them'],
    ['1e6', 0, 'not a plain decimal'],
    [' 70000', 0, 'padded'],
    ['1234567890123456', 0, 'more digits than a safe length'],
    [['70000', '70000'], 0, 'the field twice'],
  ])('%j → %i (%s)', (field, expected) => {
    expect(viewsLength(field)).toBe(expected);
  });
});

describe('lendView', () => {
  test('a view is lent only while it is handed over, and held only if someone says so', () => {
    const view = Buffer.from('bytes');
    let lentInside = false;
    expect(lendView(view, (v) => { lentInside = isLentView(v); })).toBe(false);
    expect(lentInside).toBe(true);
    expect(isLentView(view)).toBe(false);
    expect(lendView(view, (v) => keepsView(v))).toBe(true);
    // Saying so of another chunk, or after the call, changes nothing.
    expect(lendView(view, () => keepsView(Buffer.from('bytes')))).toBe(false);
    keepsView(view);
    expect(lendView(view, () => undefined)).toBe(false);
  });
});
