import { describe, expect, test } from 'vitest';
import { sameTrust, TrustFeed, type TrustState } from './trust-feed.js';

describe('TrustFeed: GET /v1/trust as a numbered snapshot', () => {
  test('a new version, told as `trust`, only when the roots or the issuer change', () => {
    let state: TrustState = { roots: ['ROOT-A\n'], issuer: 'AA' };
    const feed = new TrustFeed(() => state);
    const told: number[] = [];
    feed.on('trust', (answer: { version: number }) => told.push(answer.version));
    expect(feed.current).toEqual({ version: 1, roots: ['ROOT-A\n'], issuer: 'AA' });

    feed.refresh();
    state = { roots: ['ROOT-A'], issuer: 'AA' };
    feed.refresh();
    expect(told).toEqual([]);

    state = { roots: ['ROOT-A', 'ROOT-B'], issuer: 'AA' };
    feed.refresh();
    expect(feed.current).toEqual({ version: 2, roots: ['ROOT-A', 'ROOT-B'], issuer: 'AA' });
    state = { roots: ['ROOT-A', 'ROOT-B'], issuer: 'BB' };
    feed.refresh();
    state = { roots: ['ROOT-B'], issuer: 'BB' };
    feed.refresh();
    expect(told).toEqual([2, 3, 4]);
    expect(feed.current).toEqual({ version: 4, roots: ['ROOT-B'], issuer: 'BB' });
  });

  test.each([
    [{ roots: ['A', 'B'] }, { roots: ['B', 'A'] }, true],
    [{ roots: ['A'] }, { roots: ['A', 'B'] }, false],
    [{ roots: ['A'], issuer: 'X' }, { roots: ['A'], issuer: 'X' }, true],
    [{ roots: ['A'], issuer: 'X' }, { roots: ['A'] }, false],
    [{ roots: ['A'], issuer: 'X' }, { roots: ['A'], issuer: 'Y' }, false],
  ])('%j and %j are the same: %s', (a, b, same) => {
    expect(sameTrust(a, b)).toBe(same);
  });
});
