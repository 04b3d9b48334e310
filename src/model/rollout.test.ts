import { describe, expect, test } from 'vitest';
import { decideRollout, describeWaiting, parseSteps, splitBackends, type RolloutRecord } from './rollout.js';

const t0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(t0 + ms).toISOString();

function rollout(history: RolloutRecord['history']): RolloutRecord {
  return {
    version: 1, namespace: 'demo', service: 'hello', from: 'hello-v1', to: 'hello-v2', steps: [10, 50, 100], intervalSeconds: 10,
    objective: 'fast', split: 'hello-rollout', phase: 'progressing', history, createdAt: at(0), updatedAt: at(0),
  };
}
const step = (n: number, startedMs: number, pausedMs = 0) => ({ step: n, weight: [10, 50, 100][n]!, startedAt: at(startedMs), by: 'east', pausedMs });

/** The objective's verdict: a burn rate over enough requests (20 of the 10 it needs), or none (3 of 10). */
const judged = (burnRate: number) => ({ burnRate, requests: 20, minRequests: 10 });
const unjudged = { burnRate: null, requests: 3, minRequests: 10 };

describe('decideRollout', () => {
  // Each row: the record's steps begun, the objective's verdict (undefined: not stored), the time, what the driver does.
  test.each([
    ['holds a step younger than the interval', [step(0, 0)], judged(0.5), 9_000, { kind: 'hold', remainingMs: 1_000 }],
    ['goes to the next step once the interval has passed since the recorded start', [step(0, 0)], judged(0.5), 10_000, { kind: 'advance', step: 1, weight: 50 }],
    ['a taken-over step counts from its recorded start, not from the takeover', [step(0, 0), step(1, 10_000)], judged(0.2), 19_999, { kind: 'hold', remainingMs: 1 }],
    ['time paused does not count towards the hold', [step(0, 0, 5_000)], judged(0.5), 12_000, { kind: 'hold', remainingMs: 3_000 }],
    ['the last step held ends in success', [step(0, 0), step(1, 10_000), step(2, 20_000)], judged(0.9), 30_000, { kind: 'succeed' }],
    ['a burn rate above 1 rolls back at once, whatever the hold', [step(0, 0)], judged(1.01), 1, { kind: 'roll-back', burnRate: 1.01 }],
    ['a burn rate of exactly 1 does not', [step(0, 0)], judged(1), 10_000, { kind: 'advance', step: 1, weight: 50 }],
    ['no verdict within the interval: the step holds as usual', [step(0, 0)], unjudged, 9_000, { kind: 'hold', remainingMs: 1_000 }],
    ['no verdict once the interval is over: the step waits for requests, it does not advance', [step(0, 0)], unjudged, 10_000,
      { kind: 'wait', waiting: { reason: 'too-few-requests', requests: 3, minRequests: 10 } }],
    ['no verdict however long after: still waiting', [step(0, 0)], unjudged, 3_600_000, { kind: 'wait', waiting: { reason: 'too-few-requests', requests: 3, minRequests: 10 } }],
    ['no verdict on the last step: no success either', [step(0, 0), step(1, 10_000), step(2, 20_000)], unjudged, 30_000,
      { kind: 'wait', waiting: { reason: 'too-few-requests', requests: 3, minRequests: 10 } }],
    ['a verdict at last, after waiting: the next step', [step(0, 0)], judged(0.3), 60_000, { kind: 'advance', step: 1, weight: 50 }],
    ['the objective gone: the step waits for it', [step(0, 0)], undefined, 10_000, { kind: 'wait', waiting: { reason: 'no-objective' } }],
    ['the objective gone within the interval: holds', [step(0, 0)], undefined, 5_000, { kind: 'hold', remainingMs: 5_000 }],
  ] as const)('%s', (_name, history, verdict, nowMs, expected) => {
    expect(decideRollout(rollout([...history]), verdict, t0 + nowMs)).toEqual(expected);
  });
});

describe('describeWaiting', () => {
  const since = at(10_000);
  test.each([
    ['too few requests: how many more, of how many', { reason: 'too-few-requests', requests: 3, minRequests: 10, since, updatedAt: since } as const, 'progressing',
      'held: waiting for 7 requests to hello-v2 (3 of the 10 fast needs in its window for a verdict); the step goes on once it has one'],
    ['one more', { reason: 'too-few-requests', requests: 9, minRequests: 10, since, updatedAt: since } as const, 'progressing', expect.stringMatching(/^held: waiting for 1 request to hello-v2 /)],
    ['no objective: which, and what to do', { reason: 'no-objective', since, updatedAt: since } as const, 'progressing', expect.stringMatching(/^held: waiting for the objective demo\/fast, which is not stored; apply it again/)],
    ['a paused rollout says it is paused, not this', { reason: 'no-objective', since, updatedAt: since } as const, 'paused', undefined],
  ] as const)('%s', (_name, waiting, phase, expected) => {
    expect(describeWaiting({ ...rollout([step(0, 0)]), phase, waiting })).toEqual(expected);
  });
  test('nothing to say without a wait', () => {
    expect(describeWaiting(rollout([step(0, 0)]))).toBeUndefined();
  });
});

describe('parseSteps', () => {
  test.each([
    ['10,50,100', { steps: [10, 50, 100] }],
    ['100', { steps: [100] }],
    ['50,10,100', { problem: expect.stringMatching(/more traffic than the one before/) }],
    ['10,50', { problem: expect.stringMatching(/last step must be 100/) }],
    ['0,100', { problem: expect.stringMatching(/whole percents/) }],
    ['ten', { problem: expect.stringMatching(/whole percents/) }],
  ])('%s', (text, expected) => {
    expect(parseSteps(text)).toEqual(expected);
  });
});

test('the split gives --to its step\'s share and --from the rest', () => {
  expect(splitBackends({ from: 'hello-v1', to: 'hello-v2' }, 10)).toEqual([{ service: 'hello-v1', weight: 90 }, { service: 'hello-v2', weight: 10 }]);
});
