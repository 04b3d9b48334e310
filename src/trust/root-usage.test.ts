import { describe, expect, test } from 'vitest';
import { createIntermediateCa, createRootCa } from './ca.js';
import { rootUsage } from './root-usage.js';
import { certificateInfo } from './verify.js';

const oldRoot = createRootCa({ trustDomain: 'mesh.test' });
const newRoot = createRootCa({ trustDomain: 'mesh.test' });
const oldPrint = certificateInfo(oldRoot.certPem).fingerprint256;
const newPrint = certificateInfo(newRoot.certPem).fingerprint256;
const eastOld = createIntermediateCa({ root: oldRoot, trustDomain: 'mesh.test', cluster: 'east' }).certPem;
const eastNew = createIntermediateCa({ root: newRoot, trustDomain: 'mesh.test', cluster: 'east' }).certPem;
const westNew = createIntermediateCa({ root: newRoot, trustDomain: 'mesh.test', cluster: 'west' }).certPem;
const now = new Date('2026-06-01T00:00:00Z');
const later = '2026-06-01T00:10:00Z';
const earlier = '2026-05-31T23:59:00Z';

describe('rootUsage: may this root leave its bundle?', () => {
  test.each([
    ['both clusters rotated, their leaves all under the new root', {
      intermediates: [{ cluster: 'east', certificate: eastNew }, { cluster: 'west', certificate: westNew }],
      issued: [{ cluster: 'east', roots: [{ root: newPrint, leaves: 3, until: later }] }, { cluster: 'west', roots: [] }],
    }, []],
    ['east still signs with the old root\'s intermediate', {
      intermediates: [{ cluster: 'east', certificate: eastOld }, { cluster: 'west', certificate: westNew }],
      issued: [{ cluster: 'east', roots: [] }, { cluster: 'west', roots: [] }],
    }, [/^cluster east still signs with an intermediate of this root: run `isthmus ca rotate-intermediate/]],
    ['east rotated but two of its leaves under the old root are still held', {
      intermediates: [{ cluster: 'east', certificate: eastNew }, { cluster: 'west', certificate: westNew }],
      issued: [{ cluster: 'east', roots: [{ root: oldPrint, leaves: 2, until: later }, { root: newPrint, leaves: 1, until: later }] }, { cluster: 'west', roots: [] }],
    }, [/^2 certificate\(s\) of cluster east still chain to it \(the last valid until 2026-06-01T00:10:00Z\)/]],
    ['an old-root entry already past its end does not count', {
      intermediates: [{ cluster: 'east', certificate: eastNew }, { cluster: 'west', certificate: westNew }],
      issued: [{ cluster: 'east', roots: [{ root: oldPrint, leaves: 2, until: earlier }] }, { cluster: 'west', roots: [] }],
    }, []],
    ['west\'s federation publishes nothing: unknown is not "unused"', {
      intermediates: [{ cluster: 'east', certificate: eastNew }, { cluster: 'west', certificate: westNew }],
      issued: [{ cluster: 'east', roots: [] }],
    }, [/^cluster west publishes no record of its certificates/]],
    ['a cluster of another trust domain is not asked', {
      intermediates: [{ cluster: 'east', certificate: eastNew }, { cluster: 'west', certificate: westNew }, { cluster: 'north', certificate: eastOld }],
      issued: [{ cluster: 'east', roots: [] }, { cluster: 'west', roots: [] }, { cluster: 'north', roots: [{ root: oldPrint, leaves: 1, until: later }] }],
    }, []],
  ] as const)('%s', (_name, input, expected) => {
    const reasons = rootUsage({ rootPem: oldRoot.certPem, clusters: ['east', 'west'], now, intermediates: [...input.intermediates], issued: input.issued.map((r) => ({ cluster: r.cluster, roots: [...r.roots] })) });
    expect(reasons).toHaveLength(expected.length);
    expected.forEach((pattern, i) => expect(reasons[i]).toMatch(pattern));
  });

  test('the new root, once every cluster signs with it, is in use by the same rules', () => {
    const reasons = rootUsage({ rootPem: newRoot.certPem, clusters: ['east'], now, intermediates: [{ cluster: 'east', certificate: eastNew }], issued: [{ cluster: 'east', roots: [{ root: newPrint, leaves: 1, until: later }] }] });
    expect(reasons).toHaveLength(2);
  });
});
