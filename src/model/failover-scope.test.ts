import { expect, test } from 'vitest';
import { withinScope } from './failover-scope.js';
import type { Locality, Priority } from './localities.js';
import type { FailoverScope } from './resilience-policy.js';

const at = (cluster: string, zone: string, priority: Priority): Locality => ({ region: 'r', zone, cluster, priority, endpoints: [{ address: `${cluster}-${zone}:1`, healthy: true, weight: 1, kind: 'local' }] });
const service = { localities: [at('east', 'a', 0), at('east', 'b', 1), at('north', 'a', 2), at('west', 'a', 3)] };

test.each([
  ['zone', ['east/a']],
  ['cluster', ['east/a', 'east/b']],
  ['region', ['east/a', 'east/b', 'north/a']],
  ['mesh', ['east/a', 'east/b', 'north/a', 'west/a']],
] as [FailoverScope, string[]][])('scope %s keeps %j', (scope, kept) => {
  expect(withinScope(service, scope).localities.map((l) => `${l.cluster}/${l.zone}`)).toEqual(kept);
});
