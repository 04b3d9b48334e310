import { describe, expect, it } from 'vitest';
import { httpDate, httpDateNow, isoTime } from './utc-text.js';

// Times across the whole range a sidecar meets (and both ends of what it formats itself), with
// every field at its edges: single digits, month and year ends, leap days, milliseconds 0–999.
const edges = [
  0, 1, 999, 1000, Date.UTC(1970, 0, 1, 23, 59, 59, 999), Date.UTC(2000, 1, 29, 12, 0, 0, 5),
  Date.UTC(2026, 11, 7, 4, 41, 21, 42), Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2024, 1, 29, 0, 0, 0, 100),
  Date.UTC(0, 0, 1), Date.UTC(999, 5, 15, 6, 7, 8, 9), Date.UTC(9999, 11, 31, 23, 59, 59, 999), -1, -86_400_000,
];
const random = Array.from({ length: 5000 }, (_, i) => Math.floor(((i * 2654435761) % 1_000_000) / 1_000_000 * 253_402_300_799_999));
const outside = [Date.UTC(10000, 0, 1), Date.UTC(-1, 0, 1), -8.64e15, 8.64e15];

describe('isoTime and httpDate', () => {
  it.each([...edges, ...random.slice(0, 20)])('write %i as V8 does', (ms) => {
    expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    expect(httpDate(ms)).toBe(new Date(ms).toUTCString());
    expect(isoTime(new Date(ms))).toBe(new Date(ms).toISOString());
  });

  it('agree with V8 on 5000 times spread over years 1970–9999', () => {
    const wrong = random.filter((ms) => isoTime(ms) !== new Date(ms).toISOString() || httpDate(ms) !== new Date(ms).toUTCString());
    expect(wrong).toEqual([]);
  });

  it('leave years outside 0–9999 to V8, which writes them its own way', () => {
    for (const ms of outside) {
      expect(isoTime(ms)).toBe(new Date(ms).toISOString());
      expect(httpDate(ms)).toBe(new Date(ms).toUTCString());
    }
  });

  it('refuse an invalid time as toISOString does', () => {
    expect(() => isoTime(Number.NaN)).toThrow(RangeError);
    expect(() => httpDate(new Date('not a date'))).toThrow(/Invalid time value/);
  });

  it('give the Date field for now', () => {
    const before = Math.floor(Date.now() / 1000) * 1000;
    const text = httpDateNow();
    const parsed = Date.parse(text);
    expect(parsed).toBeGreaterThanOrEqual(before);
    expect(parsed).toBeLessThanOrEqual(Date.now());
    expect(text).toMatch(/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/);
  });
});
