import { describe, expect, test } from 'vitest';
import type { RouteExplanation } from './explain.js';
import {
  assembleTrace, decodeInboundReport, encodeInboundReport, formatTrace, parseTraceRequest,
  type ChosenEndpoint, type GatewayView, type InboundReport, type TraceFacts, type TraceHop,
} from './trace.js';

const td = 'spiffe://dev.test/ns/demo/sa';
const explanation: RouteExplanation = {
  namespace: 'demo', service: 'ledger', from: { cluster: 'east', zone: 'east-a' }, status: 'ok', primary: 3,
  priorities: [{ priority: 3, healthy: 1, total: 1, health: 100, load: 100, reason: 'P3 has 1/1 healthy: takes 100%' }],
  localities: [], computedAt: '2025-01-01T00:00:00.000Z',
};
const viaGateway: ChosenEndpoint = { priority: 3, region: 'west', cluster: 'west', zone: 'west-a', address: '127.0.62.1:15443', kind: 'gateway', sni: 'ledger.demo.svc.west.isthmus', allowedIdentities: [`${td}/ledger`] };
const local: ChosenEndpoint = { priority: 0, region: 'east', cluster: 'east', zone: 'east-a', address: '127.0.61.1:19080', kind: 'local', sni: 'ledger.demo.svc.east.isthmus', allowedIdentities: [`${td}/ledger`] };
const inbound: InboundReport = { cluster: 'west', identity: `${td}/ledger`, client: `${td}/client`, endpoint: '127.0.62.1:19082', app: '127.0.62.1:18082', handshakeMs: 3, appMs: 2 };
const gateway: GatewayView = { at: '2025-01-01T00:00:00.000Z', remote: '127.0.0.1:50000', sni: viaGateway.sni, service: 'demo/ledger', endpoint: '127.0.62.1:19082', clientHelloMs: 0.5, dialMs: 1 };

// Times since the start: routed 0.2, TCP up 1.2, TLS done 7.2 (6 ms), headers 10.2 (3 ms), body done 10.7.
const answered = { routed: 0.2, connected: 1.2, secured: 7.2, headers: 10.2, done: 10.7 };
const facts = (over: Partial<TraceFacts>): TraceFacts => ({
  service: 'ledger', namespace: 'demo', method: 'GET', path: '/', from: { cluster: 'east', zone: 'east-a', identity: `${td}/client` },
  explanation, chosen: viaGateway, localAddress: '127.0.0.1:50000', serverIdentity: `${td}/ledger`, times: answered, status: 200, bytes: 42, inbound,
  ...over,
});
const shares = (hops: TraceHop[]) => hops.map((h) => [h.kind, h.ms]);

describe('assembleTrace: which hops, and how the total is shared between them', () => {
  test.each([
    {
      name: 'through a gateway, with its own view: ClientHello read + dial are its share of the handshake',
      facts: facts({}), gateway,
      hops: [['sidecar', 0.2], ['gateway', 1 + 1.5], ['destination', 6 - 1.5 + (3 - 2)], ['app', 2 + 0.5]],
    },
    {
      name: 'through a gateway, no view: its share is the caller\'s handshake minus the destination\'s',
      facts: facts({}), gateway: undefined,
      hops: [['sidecar', 0.2], ['gateway', 1 + (6 - 3)], ['destination', 3 + 1], ['app', 2.5]],
    },
    {
      name: 'through a gateway, no view and no destination handshake time: TCP connect only',
      facts: facts({ inbound: { ...inbound, handshakeMs: undefined } as InboundReport }), gateway: undefined,
      hops: [['sidecar', 0.2], ['gateway', 1], ['destination', 6 + 1], ['app', 2.5]],
    },
    {
      name: 'the destination handshake looks longer than the caller\'s (TLS 1.3 ends one flight later there): the gateway gets 0, never less',
      facts: facts({ inbound: { ...inbound, handshakeMs: 9 } }), gateway: undefined,
      hops: [['sidecar', 0.2], ['gateway', 1], ['destination', 6 + 1], ['app', 2.5]],
    },
    {
      name: 'a gateway view longer than the handshake is capped at the handshake',
      facts: facts({}), gateway: { ...gateway, dialMs: 50 },
      hops: [['sidecar', 0.2], ['gateway', 7], ['destination', 1], ['app', 2.5]],
    },
    {
      name: 'a local endpoint: no gateway hop, the connect belongs to the destination',
      facts: facts({ chosen: local, inbound: { ...inbound, cluster: 'east' } }), gateway: undefined,
      hops: [['sidecar', 0.2], ['destination', 1 + 6 + 1], ['app', 2.5]],
    },
    {
      name: 'no report from the destination: the whole exchange is forwarding, the app only gets the body',
      facts: facts({ chosen: local, inbound: undefined }), gateway: undefined,
      hops: [['sidecar', 0.2], ['destination', 1 + 6 + 3], ['app', 0.5]],
    },
  ])('$name', ({ facts: f, gateway: g, hops }) => {
    const result = assembleTrace(f, g);
    expect(shares(result.hops)).toEqual(hops.map(([k, v]) => [k, expect.closeTo(v as number, 2)]));
    expect(result.hops.map((h) => h.hop)).toEqual(hops.map((_, i) => i + 1));
    expect(result.hops.reduce((sum, h) => sum + h.ms, 0)).toBeLessThanOrEqual(result.totalMs);
    expect(result.answered).toBe(true);
    expect(result.totalMs).toBe(10.7);
  });

  test.each([
    {
      name: 'no healthy endpoint: only the sidecar hop, failed at routing',
      facts: facts({ chosen: undefined, localAddress: undefined, times: { done: 0.3 }, status: undefined, inbound: undefined, failure: { step: 'route', code: 'ISTHMUS_ERR_SERVICE_UNKNOWN', message: 'no healthy endpoint' } }),
      kinds: ['sidecar'], failedHop: 1,
    },
    {
      name: 'the gateway refused the TCP connection: the gateway hop failed and holds the time spent trying',
      facts: facts({ localAddress: undefined, serverIdentity: undefined, times: { routed: 0.2, done: 2.2 }, status: undefined, inbound: undefined, failure: { step: 'connect', code: 'ISTHMUS_ERR_TRACE_CONNECT_FAILED', message: 'ECONNREFUSED' } }),
      kinds: ['sidecar', 'gateway'], failedHop: 2,
    },
    {
      name: 'the gateway refused the SNI with a TLS alert: the gateway hop failed',
      facts: facts({ serverIdentity: undefined, times: { routed: 0.2, connected: 1.2, done: 3 }, status: undefined, inbound: undefined, failure: { step: 'handshake', code: 'ISTHMUS_ERR_TRACE_HANDSHAKE_FAILED', message: 'the gateway refused SNI x (ERR_SSL_TLSV1_UNRECOGNIZED_NAME)' } }),
      kinds: ['sidecar', 'gateway', 'destination'], failedHop: 2,
    },
    {
      name: 'the destination presented an identity the catalog does not allow: the destination hop failed',
      facts: facts({ serverIdentity: `${td}/impostor`, serverIdentityError: 'destination answered as impostor', times: { routed: 0.2, connected: 1.2, done: 5 }, status: undefined, inbound: undefined, failure: { step: 'identity', code: 'ISTHMUS_ERR_TRACE_HANDSHAKE_FAILED', message: 'destination answered as impostor' } }),
      kinds: ['sidecar', 'gateway', 'destination'], failedHop: 3,
    },
    {
      name: 'a local destination never answered: the destination hop failed',
      facts: facts({ chosen: local, times: { routed: 0.2, connected: 1.2, secured: 7.2, done: 10_007 }, status: undefined, inbound: undefined, failure: { step: 'response', code: 'ISTHMUS_ERR_TRACE_NO_ANSWER', message: 'socket hang up' } }),
      kinds: ['sidecar', 'destination'], failedHop: 2,
    },
  ])('$name', ({ facts: f, kinds, failedHop }) => {
    const result = assembleTrace(f);
    expect(result.hops.map((h) => h.kind)).toEqual(kinds);
    expect(result.answered).toBe(false);
    expect(result.error?.hop).toBe(failedHop);
    expect(result.hops[failedHop - 1]?.error?.code).toBe(f.failure?.code);
    expect(result.hops.filter((h) => h.error)).toHaveLength(1);
    expect(result.hops.reduce((sum, h) => sum + h.ms, 0)).toBeLessThanOrEqual(result.totalMs);
  });

  test('the identities each end checked are in the destination hop; a refused one is marked', () => {
    const ok = assembleTrace(facts({}), gateway).hops.find((h) => h.kind === 'destination');
    expect(ok).toMatchObject({ endpoint: '127.0.62.1:19082', serverIdentity: { presented: `${td}/ledger`, allowed: [`${td}/ledger`], accepted: true }, clientIdentity: { verified: `${td}/client` } });
    const refused = assembleTrace(facts({ serverIdentity: `${td}/impostor`, serverIdentityError: 'not allowed', times: { routed: 0.2, connected: 1.2, done: 5 }, status: undefined, inbound: undefined, failure: { step: 'identity', code: 'ISTHMUS_ERR_TRACE_HANDSHAKE_FAILED', message: 'not allowed' } }));
    expect(refused.hops.find((h) => h.kind === 'destination')).toMatchObject({ serverIdentity: { presented: `${td}/impostor`, accepted: false, reason: 'not allowed' }, clientIdentity: null });
  });

  test('shares rounded down never add up to more than the total, whatever the fractions', () => {
    for (let seed = 1; seed < 200; seed += 1) {
      const r = (n: number) => ((seed * 7919 * n) % 1000) / 997;
      const times = { routed: r(1), connected: r(1) + r(2), secured: r(1) + r(2) + r(3), headers: r(1) + r(2) + r(3) + r(4), done: r(1) + r(2) + r(3) + r(4) + r(5) };
      const result = assembleTrace(facts({ times, inbound: { ...inbound, handshakeMs: r(6), appMs: r(7) } }), seed % 2 ? { ...gateway, clientHelloMs: r(8), dialMs: r(9) } : undefined);
      expect(result.hops.reduce((sum, h) => sum + h.ms, 0)).toBeLessThanOrEqual(result.totalMs + 1e-9);
      for (const hop of result.hops) expect(hop.ms).toBeGreaterThanOrEqual(0);
    }
  });
});

describe('parseTraceRequest', () => {
  test.each([
    { body: { service: 'ledger' }, expected: { service: 'ledger', namespace: undefined, path: '/', method: 'GET' } },
    { body: { service: 'ledger.demo' }, expected: { service: 'ledger', namespace: 'demo', path: '/', method: 'GET' } },
    { body: { service: 'Ledger', namespace: 'demo', path: '/a?b=1', method: 'post' }, expected: { service: 'ledger', namespace: 'demo', path: '/a?b=1', method: 'POST' } },
    { body: { service: 'ledger.demo', namespace: 'demo' }, expected: { service: 'ledger', namespace: 'demo', path: '/', method: 'GET' } },
    { body: { service: 'ledger.demo', namespace: 'shop' }, error: /names namespace demo/ },
    { body: { service: 'a.b.c' }, error: /must be/ },
    { body: { service: 'ledger', path: 'no-slash' }, error: /path/ },
    { body: { service: 'ledger', method: 'GET /x' }, error: /method/ },
    { body: { service: 'not_a_label' }, error: /DNS labels/ },
    { body: {}, error: /service is required/ },
    { body: null, error: /JSON object/ },
  ])('$body', ({ body, expected, error }) => {
    const parsed = parseTraceRequest(body);
    if (error) expect(parsed).toMatchObject({ error: expect.stringMatching(error) });
    else expect(parsed).toEqual(expected);
  });
});

describe('the inbound report header', () => {
  test('round-trips, and anything malformed is ignored rather than trusted', () => {
    expect(decodeInboundReport(encodeInboundReport(inbound))).toEqual(inbound);
    expect(encodeInboundReport(inbound)).toMatch(/^[A-Za-z0-9_-]+$/);
    const forged = (over: object) => encodeInboundReport({ ...inbound, ...over } as InboundReport);
    for (const bad of [undefined, ['a', 'b'], 'not base64 json', forged({ identity: 1 }), forged({ appMs: '5' }), forged({ handshakeMs: -1 }), forged({ client: 7 })]) {
      expect(decodeInboundReport(bad)).toBeUndefined();
    }
  });
});

describe('formatTrace', () => {
  test('numbers the hops and shows the decision, the SNI, the identities and the times', () => {
    const text = formatTrace(assembleTrace(facts({}), gateway));
    expect(text).toContain('trace demo/ledger from east (zone east-a, spiffe://dev.test/ns/demo/sa/client): GET http://ledger.demo.mesh/ → 200 in 10.7 ms');
    expect(text).toMatch(/^ 1 {2}east sidecar \(zone east-a\)/m);
    expect(text).toMatch(/^ 2 {2}west gateway 127\.0\.62\.1:15443 {2}2\.50 ms$/m);
    expect(text).toContain('SNI ledger.demo.svc.west.isthmus → endpoint 127.0.62.1:19082 (the gateway\'s own log)');
    expect(text).toContain('server identity spiffe://dev.test/ns/demo/sa/ledger: allowed');
    expect(text).toContain('client identity spiffe://dev.test/ns/demo/sa/client, verified by the destination');
    expect(text).toMatch(/^ 4 {2}west app 127\.0\.62\.1:18082/m);
  });

  test('a failure is shown under the hop where it happened', () => {
    const text = formatTrace(assembleTrace(facts({ times: { routed: 0.2, done: 2.2 }, status: undefined, inbound: undefined, failure: { step: 'connect', code: 'ISTHMUS_ERR_TRACE_CONNECT_FAILED', message: '127.0.62.1:15443 did not accept a connection: ECONNREFUSED' } })));
    expect(text).toContain('→ FAILED (ISTHMUS_ERR_TRACE_CONNECT_FAILED)');
    expect(text).toMatch(/ 2 {2}west gateway[^\n]*\n[\s\S]*✗ ISTHMUS_ERR_TRACE_CONNECT_FAILED: 127\.0\.62\.1:15443 did not accept/);
  });
});
