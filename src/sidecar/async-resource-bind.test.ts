import { AsyncLocalStorage, AsyncResource, executionAsyncId } from 'node:async_hooks';
import { expect, test } from 'vitest';
import { bindWithoutAsyncResourceProperty } from './async-resource-bind.js';

test('bind keeps Node\'s behaviour (async scope, this, length, argument check) without the deprecated asyncResource property', async () => {
  bindWithoutAsyncResourceProperty();
  const storage = new AsyncLocalStorage<string>();
  const resource = storage.run('made here', () => new AsyncResource('test'));
  const bound = resource.bind(function (this: unknown, a: number, b: number) {
    return { sum: a + b, self: this, id: executionAsyncId(), store: storage.getStore() };
  });
  expect('asyncResource' in bound).toBe(false);
  expect(bound.length).toBe(2);
  // Called later, from elsewhere: it runs in the resource's scope, with the caller's `this`.
  const caller = { bound };
  const result = await new Promise<ReturnType<typeof bound>>((resolve) => setImmediate(() => resolve(caller.bound(2, 3))));
  expect(result).toMatchObject({ sum: 5, self: caller, id: resource.asyncId(), store: 'made here' });
  // With a `this` given, that one.
  const fixed = { name: 'fixed' };
  const bindWith = resource.bind as unknown as (fn: () => unknown, thisArg: unknown) => () => unknown;
  expect(bindWith.call(resource, function (this: unknown) { return this; }, fixed)()).toBe(fixed);
  expect(() => resource.bind('no' as unknown as () => void)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  // node:http2 still works with it: a request over h2c is answered.
  const { createServer, connect } = await import('node:http2');
  const server = createServer((req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const session = connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  try {
    const body = await new Promise<string>((resolve, reject) => {
      const req = session.request({ ':path': '/' });
      let text = '';
      req.on('data', (c: Buffer) => { text += c.toString(); });
      req.on('end', () => resolve(text));
      req.on('error', reject);
      req.end();
    });
    expect(body).toBe('ok');
  } finally {
    session.close();
    await new Promise((r) => server.close(r));
  }
});
