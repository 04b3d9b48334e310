import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ByteMeter, meteredSplice, openMeterCount, reportOpenMeters } from './byte-meter.js';
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

/** Two connected socket pairs: `c` ↔ `a` and `b` ↔ `d`, as a proxy holds `a` and `b`. */
async function pairs(): Promise<{ c: Socket; a: Socket; b: Socket; d: Socket; close: () => void }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accept = async () => {
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const outer = connect({ host: '127.0.0.1', port });
    await once(outer, 'connect');
    return { outer, inner: (await accepted)[0] };
  };
  const x = await accept();
  const y = await accept();
  return { c: x.outer, a: x.inner, b: y.outer, d: y.inner, close: () => { for (const s of [x.outer, x.inner, y.outer, y.inner]) s.destroy(); server.close(); } };
}

describe('meteredSplice', () => {
  it('reports a connection\'s bytes while it is open, bytes written before the splice among a\'s, and the rest once at its end', async () => {
    const { c, a, b, d, close } = await pairs();
    try {
      const reports: [number, number][] = [];
      const ended = new Promise<[string, { fromA: number; fromB: number }]>((resolve) => {
        b.write('early');
        const read = meteredSplice(a, b, { idleMs: 60_000, early: 5, report: (x, y) => reports.push([x, y]), onEnd: (how, bytes) => resolve([how, bytes]) });
        void (async () => {
          c.write('hello');
          // 'early' and 'hello', in one read or two.
          for (let got = 0; got < 10;) got += ((await once(d, 'data')) as [Buffer])[0].length;
          d.write('back!!');
          await once(c, 'data');
          expect(read()).toEqual({ fromA: 10, fromB: 6 });
          reportOpenMeters();
          expect(reports).toEqual([[10, 6]]);
          c.end();
          d.end();
        })();
      });
      const [how, bytes] = await ended;
      expect(how).toBe('closed');
      // The totals reach onEnd, `early` included; the meter had reported everything already, so nothing more.
      expect(bytes).toEqual({ fromA: 10, fromB: 6 });
      expect(reports).toEqual([[10, 6]]);
    } finally {
      close();
    }
  });
});
