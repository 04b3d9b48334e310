import { describe, expect, test } from 'vitest';
import { IssuedLedger } from './issued-ledger.js';

const t0 = Date.parse('2026-01-01T00:00:00Z');
const at = (s: number) => t0 + s * 1000;

describe('IssuedLedger: which roots this cluster\'s certificates still chain to', () => {
  test('a renewal retires the serial it replaces, so a workload that moved to the new root stops counting for the old one', () => {
    const ledger = new IssuedLedger('east');
    ledger.signed('01', { root: 'OLD', notAfter: at(100) });
    ledger.signed('02', { root: 'OLD', notAfter: at(120) });
    expect(ledger.record(at(0)).roots).toEqual([{ root: 'OLD', leaves: 2, until: new Date(at(120)).toISOString() }]);
    ledger.signed('03', { root: 'NEW', notAfter: at(200) }, '01');
    ledger.signed('04', { root: 'NEW', notAfter: at(210) }, '02');
    expect(ledger.record(at(1)).roots).toEqual([{ root: 'NEW', leaves: 2, until: new Date(at(210)).toISOString() }]);
  });

  test('a leaf that is never renewed counts until it expires, then is forgotten', () => {
    const ledger = new IssuedLedger('east');
    ledger.signed('01', { root: 'OLD', notAfter: at(10) });
    expect(ledger.record(at(9)).roots.map((r) => r.leaves)).toEqual([1]);
    expect(ledger.record(at(10)).roots).toEqual([]);
  });

  test('a gateway\'s presented certificate is replaced by its next one; the generation moves only on a change', () => {
    const ledger = new IssuedLedger('east');
    ledger.presented('gateway:gw-1', { root: 'OLD', notAfter: at(100) });
    const generation = ledger.generation;
    ledger.presented('gateway:gw-1', { root: 'OLD', notAfter: at(100) });
    expect(ledger.generation).toBe(generation);
    ledger.presented('gateway:gw-1', { root: 'NEW', notAfter: at(300) });
    expect(ledger.generation).toBe(generation + 1);
    expect(ledger.record(at(0))).toEqual({ version: 1, cluster: 'east', roots: [{ root: 'NEW', leaves: 1, until: new Date(at(300)).toISOString() }] });
  });

  test('a renewal naming a serial the ledger never saw (signed before a restart, or elsewhere) only adds', () => {
    const ledger = new IssuedLedger('east');
    ledger.signed('05', { root: 'NEW', notAfter: at(50) }, 'unknown');
    expect(ledger.record(at(0)).roots).toEqual([{ root: 'NEW', leaves: 1, until: new Date(at(50)).toISOString() }]);
  });
});
