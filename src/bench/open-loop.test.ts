import { describe, expect, test } from 'vitest';
import { runOpenLoop } from './open-loop.js';

describe('runOpenLoop', () => {
  test('sends at the rate whatever the answers do, and with slowAboveMs keeps when each slow answer was due', async () => {
    let i = 0;
    const result = await runOpenLoop({
      rate: 200, seconds: 0.5, maxInFlight: 100, drainMs: 1000, slowAboveMs: 100,
      // Requests 10, 11 and 12 (due at 50, 55 and 60 ms) take 250 ms; the rest answer at once
      // (a busy machine may make a few of them slow too, never by 250 ms).
      send: () => {
        const n = i++;
        const delay = n >= 10 && n <= 12 ? 250 : 0;
        return new Promise((resolve) => setTimeout(() => resolve({ status: 200, bytes: 1 }), delay));
      },
    });
    expect(result).toMatchObject({ scheduled: 100, sent: 100, ok: 100, failed: 0 });
    // A timer may fire a fraction of a millisecond early, so the slow three are those over 200 ms.
    expect(result.slow?.filter((s) => s.ms >= 200).map((s) => Math.round(s.dueAtMs))).toEqual([50, 55, 60]);
    // Only the slow ones, however busy the machine (a stall of its own would add a few).
    expect(result.slow?.length).toBeLessThan(50);
  });

  test('without slowAboveMs nothing is kept', async () => {
    const result = await runOpenLoop({ rate: 100, seconds: 0.1, maxInFlight: 10, drainMs: 500, send: async () => ({ status: 200, bytes: 0 }) });
    expect(result.ok).toBe(10);
    expect(result.slow).toBeUndefined();
  });
});
