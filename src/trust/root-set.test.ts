import { describe, expect, test } from 'vitest';
import { canonicalRoots, sameRoots } from './root-set.js';

describe('sets of roots', () => {
  test.each([
    [['A', 'B'], ['B', 'A'], true],
    [['A\n'], [' A'], true],
    [['A', 'A\n'], ['A'], true],
    [['A'], ['A', 'B'], false],
    [['A', 'A'], ['A', 'B'], false],
    [[], [], true],
    [[], ['A'], false],
  ])('%j and %j are the same set: %s', (a, b, same) => {
    expect(sameRoots(a, b)).toBe(same);
    expect(sameRoots(b, a)).toBe(same);
  });

  test('the canonical form is trimmed, without duplicates, sorted', () => {
    expect(canonicalRoots(['B\n', ' A', 'B'])).toEqual(['A', 'B']);
  });
});
