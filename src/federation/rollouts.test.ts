import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keys, recordVersion } from '../core/keys.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { startEtcd, storeOptions, type TestEtcd } from '../../test/helpers/etcd.js';
import { abortRollout, listRollouts, pauseRollout, resumeRollout, rolloutStatus, startRollout } from './rollouts.js';
import { FederationStore } from './store.js';

let etcd: TestEtcd;
let store: FederationStore;
const t0 = Date.parse('2026-01-01T00:00:00.000Z');
const start = (service: string, more: { from?: string; now?: number } = {}) => startRollout(store, {
  namespace: 'demo', service, to: `${service}-v2`, from: more.from ?? `${service}-v1`, steps: [10, 50, 100], intervalSeconds: 30, objective: `${service}-fast`, now: new Date(more.now ?? t0),
});
/** An objective `<service>-fast` on `<service>-v2`, the version each rollout here moves to. */
const objectiveOn = (name: string, service: string) => store.put(keys.policy('slo', 'demo', name), { version: recordVersion, namespace: 'demo', name, service, windowSeconds: 60, minRequests: 1 });
const splitOf = async (service: string) => (await store.get<PolicyRecord>(keys.policy('trafficsplit', 'demo', `${service}-rollout`)))?.value;

beforeAll(async () => {
  etcd = await startEtcd({ host: '127.0.203.1' });
  store = await FederationStore.connect(storeOptions(etcd));
  for (const service of ['alpha', 'beta', 'gamma', 'delta']) await objectiveOn(`${service}-fast`, `${service}-v2`);
}, 30_000);

afterAll(async () => {
  await store?.close();
  await etcd?.destroy();
});

describe('the rollout verbs, on a real etcd', () => {
  test('start writes the record at its first step and the split it owns, in one go; a second start is refused', async () => {
    const record = await start('alpha');
    expect(record).toMatchObject({ phase: 'progressing', from: 'alpha-v1', to: 'alpha-v2', split: 'alpha-rollout', history: [{ step: 0, weight: 10, by: 'cli', pausedMs: 0 }] });
    expect(await rolloutStatus(store, 'demo', 'alpha')).toEqual(record);
    expect((await splitOf('alpha'))?.spec).toEqual({ service: 'alpha', backends: [{ service: 'alpha-v1', weight: 90 }, { service: 'alpha-v2', weight: 10 }] });
    await expect(start('alpha')).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ROLLOUT_ACTIVE' });
  });

  test('pause holds the step and resume counts the pause out of its hold; abort sends everything back to --from', async () => {
    await start('beta');
    const paused = await pauseRollout(store, 'demo', 'beta', new Date(t0 + 5_000));
    expect(paused).toMatchObject({ phase: 'paused', pausedAt: new Date(t0 + 5_000).toISOString() });
    await expect(pauseRollout(store, 'demo', 'beta')).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ROLLOUT_ACTIVE' });
    const resumed = await resumeRollout(store, 'demo', 'beta', new Date(t0 + 12_000));
    expect(resumed.phase).toBe('progressing');
    expect(resumed.pausedAt).toBeUndefined();
    expect(resumed.history.at(-1)?.pausedMs).toBe(7_000);
    const aborted = await abortRollout(store, 'demo', 'beta');
    expect(aborted).toMatchObject({ phase: 'aborted', ended: { by: 'cli' } });
    expect((await splitOf('beta'))?.spec).toEqual({ service: 'beta', backends: [{ service: 'beta-v1', weight: 100 }, { service: 'beta-v2', weight: 0 }] });
    await expect(abortRollout(store, 'demo', 'beta')).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ROLLOUT_FINISHED' });
    // An ended rollout is replaced by a new start.
    expect((await start('beta')).phase).toBe('progressing');
  });

  test('a service with a route or split of the user\'s is refused by name; an unknown rollout is not found', async () => {
    await store.put(keys.policy('httproute', 'demo', 'gamma-canary'), {
      version: 1, apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', namespace: 'demo', name: 'gamma-canary',
      services: ['gamma'], backends: ['gamma-v1'], createdAt: new Date(t0).toISOString(), spec: {},
    });
    await expect(start('gamma')).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ROLLOUT_SPLIT_TAKEN', message: expect.stringContaining('httproute demo/gamma-canary') });
    expect(await store.get(keys.rollout('demo', 'gamma'))).toBeUndefined();
    expect(await splitOf('gamma')).toBeUndefined();
    await expect(rolloutStatus(store, 'demo', 'nothing')).rejects.toMatchObject({ code: 'ISTHMUS_ERR_ROLLOUT_NOT_FOUND' });
    await expect(startRollout(store, { namespace: 'demo', service: 'delta', to: 'delta', steps: [100], intervalSeconds: 1, objective: 'delta-fast' }))
      .rejects.toMatchObject({ code: 'ISTHMUS_ERR_ROLLOUT_INVALID' });
    expect((await listRollouts(store, 'demo')).map((r) => r.service)).toEqual(['alpha', 'beta']);
  });

  test('an objective that does not judge the new version is refused, naming both services; nothing is written', async () => {
    // On the service itself: it sees only the requests the split still sends to `from` (here the service).
    await objectiveOn('epsilon-fast', 'epsilon');
    await expect(startRollout(store, { namespace: 'demo', service: 'epsilon', to: 'epsilon-v2', steps: [50, 100], intervalSeconds: 10, objective: 'epsilon-fast' }))
      .rejects.toMatchObject({
        code: 'ISTHMUS_ERR_ROLLOUT_INVALID',
        message: expect.stringMatching(/^--objective epsilon-fast judges demo\/epsilon, not demo\/epsilon-v2, the new version this rollout sends traffic to \(--to epsilon-v2\)/),
        details: [{ path: '/objective', message: expect.any(String) }],
      });
    // On the old version: it would judge what is being replaced.
    await expect(startRollout(store, { namespace: 'demo', service: 'epsilon', from: 'alpha-v2', to: 'epsilon-v2', steps: [100], intervalSeconds: 10, objective: 'alpha-fast' }))
      .rejects.toMatchObject({ message: expect.stringContaining('alpha-fast judges demo/alpha-v2, not demo/epsilon-v2') });
    expect(await store.get(keys.rollout('demo', 'epsilon'))).toBeUndefined();
    expect(await splitOf('epsilon')).toBeUndefined();
  });
});
