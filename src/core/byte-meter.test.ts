import { describe, expect, it } from 'vitest';
import { ByteMeter, openMeterCount, reportOpenMeters } from './byte-meter.js';
import type { SplicedBytes } from './splice.js';

/** A connection whose bytes so far the test moves by hand, and what its meter reported. */
function metered() {
  const sofar: SplicedBytes = { fromA: 0, fromB: 0 };
  const reports: [number, number][] = [];
  const meter = new ByteMeter(() => sofar, (a, b) => reports.push([a, b]));
  return { sofar, reports, meter };
}

describe('ByteMeter', () => {
  it('reports at each scrape what moved since the last one, and the rest at the end: every byte once', () => {
    const { sofar, reports, meter } = metered();
    sofar.fromA = 100;
    sofar.fromB = 7;
    reportOpenMeters();
    // Nothing moved since: a scrape reports nothing rather than zeros.
    reportOpenMeters();
    sofar.fromA = 150;
    reportOpenMeters();
    sofar.fromB = 20;
    meter.close({ fromA: 160, fromB: 20 });
    expect(reports).toEqual([[100, 7], [50, 0], [10, 13]]);
    const total = reports.reduce((sum, [a, b]) => ({ fromA: sum.fromA + a, fromB: sum.fromB + b }), { fromA: 0, fromB: 0 });
    expect(total).toEqual({ fromA: 160, fromB: 20 });
  });

  it('forgets a closed connection: later scrapes and a second close report nothing', () => {
    const before = openMeterCount();
    const { sofar, reports, meter } = metered();
    expect(openMeterCount()).toBe(before + 1);
    meter.close({ fromA: 5, fromB: 5 });
    expect(openMeterCount()).toBe(before);
    sofar.fromA = 1000;
    reportOpenMeters();
    meter.flush();
    meter.close({ fromA: 1000, fromB: 1000 });
    expect(reports).toEqual([[5, 5]]);
  });

  it('never reports a negative amount when a total reads lower than what was reported', () => {
    const { sofar, reports, meter } = metered();
    sofar.fromA = 10;
    reportOpenMeters();
    // A total that forgot part of what was read live (it cannot happen with splice's counts; the meter does not count backwards all the same).
    meter.close({ fromA: 8, fromB: 3 });
    expect(reports).toEqual([[10, 0], [0, 3]]);
  });
});
