import { describe, expect, test } from 'vitest';
import { Reachability } from './reachability.js';

const rec = (to: string, oks: boolean[], lastError?: string) => ({ to, gateways: oks.map((ok, i) => ({ id: `gw-${i + 1}`, p50Ms: null, ok })), ...(lastError ? { lastError } : {}) });

describe('Reachability: events when a cluster\'s gateways stop and start answering', () => {
  test('up → down → up gives one event each way; staying the same gives none', () => {
    const r = new Reachability('east');
    expect(r.round([rec('west', [true, true])])).toEqual([]);
    expect(r.round([rec('west', [true, false])])).toEqual([]); // one gateway still answers
    const down = r.round([rec('west', [false, false], 'connect ECONNREFUSED 127.0.2.1:15443')]);
    expect(down.map((e) => [e.kind, e.summary])).toEqual([['unreachable', 'east cannot reach west through any of its 2 gateway(s): connect ECONNREFUSED 127.0.2.1:15443']]);
    expect(r.round([rec('west', [false, false])])).toEqual([]);
    expect(r.round([rec('west', [false, true])]).map((e) => e.kind)).toEqual(['reachable']);
  });

  test('a cluster still starting (first unreachable, then reachable) is not news; one that left is forgotten', () => {
    const r = new Reachability('east');
    expect(r.round([rec('north', [false])])).toEqual([]);
    expect(r.round([rec('north', [true])])).toEqual([]);
    expect(r.round([rec('north', [false])]).map((e) => e.kind)).toEqual(['unreachable']);
    expect(r.round([])).toEqual([]);
    expect(r.round([rec('north', [true])])).toEqual([]);
  });
});
