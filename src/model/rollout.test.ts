import { describe, expect, test } from 'vitest';
import { decideRollout, parseSteps, splitBackends, type RolloutRecord } from './rollout.js';

const t0 = Date.parse('2026-01-01T00:00:00.000Z');
const at = (ms: number) => new Date(t0 + ms).toISOString();

function rollout(history: RolloutRecord['history']): RolloutRecord {
  return {
    version: 1, namespace: 'demo', service: 'hello', from: 'hello-v1', to: 'hello-v2', steps: [10, 50, 100], intervalSeconds: 10,
    objective: 'fast', split: 'hello-rollout', phase: 'progressing', history, createdAt: at(0), updatedAt: at(0),
  };
}
const step = (n: number, startedMs: number, pausedMs = 0) => ({ step: n, weight: [10, 50, 100][n]!, startedAt: at(startedMs), by: 'east', pausedMs });

describe('decideRollout', () => {
  test.each([
    ['holds a step younger than the interval', [step(0, 0)], 0.5, 9_000, { kind: 'hold', remainingMs: 1_000 }],
    ['goes to the next step once the interval has passed since the recorded start', [step(0, 0)], 0.5, 10_000, { kind: 'advance', step: 1, weight: 50 }],
    ['a taken-over step counts from its recorded start, not from the takeover', [step(0, 0), step(1, 10_000)], 0.2, 19_999, { kind: 'hold', remainingMs: 1 }],
    ['time paused does not count towards the hold', [step(0, 0, 5_000)], 0.5, 12_000, { kind: 'hold', remainingMs: 3_000 }],
    ['the last step held ends in success', [step(0, 0), step(1, 10_000), step(2, 20_000)], 0.9, 30_000, { kind: 'succeed' }],
    ['a burn rate above 1 rolls back at once, whatever the hold', [step(0, 0)], 1.01, 1, { kind: 'roll-back', burnRate: 1.01 }],
    ['a burn rate of exactly 1 does not', [step(0, 0)], 1, 10_000, { kind: 'advance', step: 1, weight: 50 }],
    ['no verdict (too few requests) does not hold a step back', [step(0, 0)], null, 10_000, { kind: 'advance', step: 1, weight: 50 }],
  ] as const)('%s', (_name, history, burnRate, nowMs, expected) => {
    expect(decideRollout(rollout([...history]), burnRate, t0 + nowMs)).toEqual(expected);
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
