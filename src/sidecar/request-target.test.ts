import { describe, expect, test } from 'vitest';
import { meshTarget, resolveTarget } from './request-target.js';

describe('resolveTarget', () => {
  test.each([
    // method, request-target, Host, → host, path
    ['GET', 'http://ledger.demo.mesh/accounts?id=7', 'ledger.demo.mesh', 'ledger.demo.mesh', '/accounts?id=7'],
    ['GET', 'http://ledger.demo.mesh', undefined, 'ledger.demo.mesh', '/'],
    ['GET', 'http://ledger.demo.mesh?x=1', undefined, 'ledger.demo.mesh', '/?x=1'],
    ['GET', 'http://ledger.demo.mesh:8080/a#frag', undefined, 'ledger.demo.mesh:8080', '/a'],
    ['POST', '/echo', 'ledger.demo.svc.clusterset.local', 'ledger.demo.svc.clusterset.local', '/echo'],
    ['CONNECT', 'ledger.demo.mesh:443', undefined, 'ledger.demo.mesh:443', 'ledger.demo.mesh:443'],
  ])('%s %s (Host %s) → %s %s', (method, url, hostHeader, host, path) => {
    expect(resolveTarget(method, url, hostHeader)).toEqual({ target: { service: 'ledger', namespace: 'demo' }, host, path });
  });

  test('absolute-form wins over the Host header (RFC 9112 §3.2.2)', () => {
    expect(resolveTarget('GET', 'http://ledger.demo.mesh/', 'evil.example')).toMatchObject({ host: 'ledger.demo.mesh' });
  });

  test('a fixed listener serves its service whatever Host says', () => {
    expect(resolveTarget('GET', '/x', 'localhost:9001', { service: 'hello', namespace: 'demo' })).toEqual({ target: { service: 'hello', namespace: 'demo' }, host: 'hello.demo.mesh', path: '/x' });
  });

  test.each([
    ['GET', 'http://example.com/', undefined],
    ['GET', '/', undefined],
    ['GET', '/', 'ledger.mesh'],
    ['CONNECT', 'example.com:443', undefined],
  ])('%s %s (Host %s) is refused with a message naming the form to use', (method, url, host) => {
    const result = resolveTarget(method, url, host);
    expect(result).toHaveProperty('refused');
    expect((result as { refused: string }).refused).toMatch(/is not a mesh name: use http:\/\/<service>\.<namespace>\.mesh\//);
  });
});

test('meshTarget lower-cases, ignores the port, and takes an absolute name\'s final dot', () => {
  expect(meshTarget('Ledger.Demo.MESH:80')).toEqual({ service: 'ledger', namespace: 'demo' });
  expect(meshTarget('ledger.demo.mesh.')).toEqual({ service: 'ledger', namespace: 'demo' });
  expect(meshTarget('ledger.demo.svc.clusterset.local.:8080')).toEqual({ service: 'ledger', namespace: 'demo' });
  expect(meshTarget('a.b.c.mesh')).toBeUndefined();
  expect(meshTarget('ledger.demo.mesh..')).toBeUndefined();
});

test('meshTarget answers a Host it saw before, and every Host after many others, as it did the first time', () => {
  const hosts = ['Ledger.Demo.Mesh:8080', 'not-a-mesh-name', 'a.b.svc.clusterset.local', 'x.y.mesh.evil'];
  const first = hosts.map((h) => meshTarget(h));
  expect(first).toEqual([{ service: 'ledger', namespace: 'demo' }, undefined, { service: 'a', namespace: 'b' }, undefined]);
  expect(hosts.map((h) => meshTarget(h))).toEqual(first);
  // More distinct hosts than it keeps: the answers do not change.
  for (let i = 0; i < 2000; i += 1) expect(meshTarget(`s${i}.ns.mesh`)).toEqual({ service: `s${i}`, namespace: 'ns' });
  expect(hosts.map((h) => meshTarget(h))).toEqual(first);
  expect(meshTarget('s1999.ns.mesh')).toEqual({ service: 's1999', namespace: 'ns' });
});
