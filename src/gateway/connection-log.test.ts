import { describe, expect, test } from 'vitest';
import { ConnectionLog } from './connection-log.js';

const entry = (n: number, remote = `127.0.0.1:${40000 + n}`) => {
  const split = remote.lastIndexOf(':');
  return { at: Date.UTC(2025, 0, 1, 0, 0, n), remoteAddress: remote.slice(0, split), remotePort: Number(remote.slice(split + 1)), sni: 'ledger.demo.svc.west.isthmus', service: 'demo/ledger', endpoint: `127.0.2.1:${19080 + n}`, clientHelloMs: n / 3, dialMs: 1.23456 };
};

describe('the gateway connection log', () => {
  test.each([
    { name: 'empty', added: 0, capacity: 4, expected: [] },
    { name: 'fewer than capacity, newest first', added: 3, capacity: 4, expected: [3, 2, 1] },
    { name: 'exactly full', added: 4, capacity: 4, expected: [4, 3, 2, 1] },
    { name: 'wrapped: the oldest are forgotten', added: 10, capacity: 4, expected: [10, 9, 8, 7] },
  ])('$name', ({ added, capacity, expected }) => {
    const log = new ConnectionLog(capacity);
    for (let n = 1; n <= added; n += 1) log.add(entry(n));
    expect(log.recent().map((c) => c.remote)).toEqual(expected.map((n) => `127.0.0.1:${40000 + n}`));
  });

  test('filters by the caller\'s ip:port, formats times and rounds durations', () => {
    const log = new ConnectionLog();
    for (let n = 1; n <= 5; n += 1) log.add(entry(n));
    log.add(entry(6, '127.0.0.1:40002'));
    expect(log.recent({ remote: '127.0.0.1:40002' })).toEqual([
      { at: '2025-01-01T00:00:06.000Z', remote: '127.0.0.1:40002', sni: 'ledger.demo.svc.west.isthmus', service: 'demo/ledger', endpoint: '127.0.2.1:19086', clientHelloMs: 2, dialMs: 1.235 },
      { at: '2025-01-01T00:00:02.000Z', remote: '127.0.0.1:40002', sni: 'ledger.demo.svc.west.isthmus', service: 'demo/ledger', endpoint: '127.0.2.1:19082', clientHelloMs: 0.667, dialMs: 1.235 },
    ]);
    expect(log.recent({ remote: '127.0.0.1:1' })).toEqual([]);
    expect(log.recent({ limit: 2 }).map((c) => c.remote)).toEqual(['127.0.0.1:40002', '127.0.0.1:40005']);
  });

  test('an IPv4-mapped IPv6 peer matches its IPv4 address', () => {
    const log = new ConnectionLog();
    log.add(entry(1, '::ffff:127.0.0.1:5000'));
    expect(log.recent({ remote: '127.0.0.1:5000' })).toHaveLength(1);
    expect(log.recent({ remote: '::ffff:127.0.0.1:5000' })[0]?.remote).toBe('127.0.0.1:5000');
  });
});
