import { expect, test } from 'vitest';
import { fieldsObject, forwardableFields, forwardableHeaders, hopByHop, isHopByHop, nominatedFields, withoutNominated } from './headers.js';

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

test.each([
  ['keep-alive', undefined],
  [' Close ', undefined],
  ['Upgrade', undefined],
  ['close, X-Hop', ['x-hop']],
  ['keep-alive, X-A,x-b , TE, Upgrade', ['x-a', 'x-b']],
  [['X-A', 'keep-alive', 'X-B'], ['x-a', 'x-b']],
  // Never honoured: a caller cannot take the target or the framing away.
  ['Host, Content-Length, x-c', ['x-c']],
  ['close, , ', undefined],
])('Connection: %j nominates %j', (value, names) => {
  const found = nominatedFields(undefined, value);
  expect(found === undefined ? undefined : [...found]).toEqual(names);
});

test('fields a Connection field nominates go no further, wherever they come, in the fields and in the object form; what the caller put first stays', () => {
  const raw = ['X-Hop', 'secret', 'Host', 'app.local', 'Connection', 'close, X-Hop, x-other', 'x-other', '1', 'X-Kept', 'yes', 'Content-Length', '3'];
  expect(forwardableFields(raw, ['host'], ['host', 'echo.demo.mesh', 'x-hop', 'ours'])).toEqual(['host', 'echo.demo.mesh', 'x-hop', 'ours', 'X-Kept', 'yes', 'Content-Length', '3']);
  expect(forwardableHeaders(fieldsObject(raw), 'host')).toEqual({ 'x-kept': 'yes', 'content-length': '3' });
  // An answer's fields as relayed: case kept, every Connection field's nominations gathered.
  expect(withoutNominated(['X-A', '1', 'Connection', 'X-A', 'X-Keep', '2', 'connection', 'keep-alive, x-b', 'x-b', '3'])).toEqual(['X-Keep', '2']);
  expect(withoutNominated(['Connection', 'keep-alive', 'X-A', '1'])).toBeUndefined();
  // The usual Connection values keep the fast path: nothing more is dropped.
  expect(forwardableFields(['Connection', 'keep-alive', 'X-Hop', '1'], [])).toEqual(['X-Hop', '1']);
});
