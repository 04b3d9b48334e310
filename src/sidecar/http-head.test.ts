import { expect, test } from 'vitest';
import { errorResponse, requestHead } from './http-head.js';

test('a request head keeps order, case and repeats, drops hop-by-hop fields and replaces what is set', () => {
  const raw = ['Host', 'ledger.demo.mesh', 'Upgrade', 'websocket', 'Connection', 'Upgrade', 'X-Forwarded-Client-Cert', 'forged', 'Proxy-Authorization', 'secret', 'Cookie', 'a=1', 'Cookie', 'b=2', 'Keep-Alive', 'timeout=5'];
  const head = requestHead('GET', '/ws', raw, { drop: new Set(['x-forwarded-client-cert']), set: { 'x-forwarded-client-cert': 'By=me;URI=them', Host: 'ledger.demo.mesh' } });
  expect(head).toBe('GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nCookie: a=1\r\nCookie: b=2\r\nx-forwarded-client-cert: By=me;URI=them\r\nHost: ledger.demo.mesh\r\n\r\n');
});

test('an error response for a raw socket is complete HTTP/1.1 with the code in a header and the body', () => {
  const text = errorResponse(503, 'Service Unavailable', 'ISTHMUS_ERR_DATAPLANE_NO_ROUTE', 'nope');
  const [head, body] = text.split('\r\n\r\n') as [string, string];
  expect(head).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
  expect(head).toContain('x-isthmus-error: ISTHMUS_ERR_DATAPLANE_NO_ROUTE');
  expect(head).toContain(`content-length: ${Buffer.byteLength(body)}`);
  expect(JSON.parse(body)).toEqual({ error: { code: 'ISTHMUS_ERR_DATAPLANE_NO_ROUTE', message: 'nope' } });
});

test('a routing rule\'s added fields come after the ones that arrived, and the refusal of an upgrade can carry retry-after', () => {
  const head = requestHead('GET', '/ws', ['Host', 'x', 'X-Tag', 'a'], { set: { host: 'hello.demo.mesh' }, add: [['x-tag', 'b']] });
  expect(head).toBe('GET /ws HTTP/1.1\r\nX-Tag: a\r\nhost: hello.demo.mesh\r\nx-tag: b\r\n\r\n');
  expect(errorResponse(429, 'Too Many Requests', 'ISTHMUS_ERR_DATAPLANE_RATE_LIMITED', 'later', { 'retry-after': '5' })).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\nretry-after: 5\r\n/);
});
