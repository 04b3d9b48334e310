import { expect, test } from 'vitest';
import { fieldsObject, forwardableFields, forwardableHeaders, hopByHop, isHopByHop } from './headers.js';

test.each([...hopByHop].flatMap((name) => [name, name.toUpperCase(), name.replace(/(^|-)(\w)/g, (_m, dash: string, c: string) => `${dash}${c.toUpperCase()}`)]))('%s is hop-by-hop in any case', (name) => {
  expect(isHopByHop(name)).toBe(true);
});

test.each(['host', 'Content-Length', 'x-connection', 'connections', 'tea', 'Upgraded', 'x-isthmus-trace'])('%s is end to end', (name) => {
  expect(isHopByHop(name)).toBe(false);
});

test('a request head\'s fields go on in their order, case and repeats, after what the caller put first, without hop-by-hop fields and without the names dropped (any case)', () => {
  const raw = ['Host', 'app.local', 'X-Dup', 'a', 'Connection', 'keep-alive, x-hop', 'x-dup', 'b', 'TE', 'trailers', 'Expect', '100-continue', 'X-Isthmus-Trace', '1', 'Cookie', 'a=1', 'Keep-Alive', 'timeout=5', 'cookie', 'b=2'];
  expect(forwardableFields(raw, ['x-isthmus-trace', 'expect', 'host'], ['host', 'echo.demo.mesh']))
    .toEqual(['host', 'echo.demo.mesh', 'X-Dup', 'a', 'x-dup', 'b', 'Cookie', 'a=1', 'cookie', 'b=2']);
  expect(forwardableFields([], ['expect'])).toEqual([]);
});

test('the object forms agree with the fields: names lower-cased, repeats gathered, the same fields dropped', () => {
  const raw = ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'Transfer-Encoding', 'chunked', 'X-Drop', 'x'];
  expect(fieldsObject(raw)).toEqual({ 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'], 'transfer-encoding': 'chunked', 'x-drop': 'x' });
  expect(forwardableHeaders(fieldsObject(raw), 'x-drop')).toEqual({ 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'] });
});
