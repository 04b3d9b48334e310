import { AsyncResource } from 'node:async_hooks';

type Bind = (this: AsyncResource, fn: (...args: unknown[]) => unknown, thisArg?: unknown) => (...args: unknown[]) => unknown;

let replaced = false;

/**
 * Makes `AsyncResource.prototype.bind` what newer Node makes it: the bound function without the
 * `asyncResource` property. Node 20 still defines that property on every function it binds, as
 * a getter and a setter each wrapped by util.deprecate (DEP0172, runtime-deprecated since 20.0);
 * Node later made it End-of-Life and stopped adding it (nodejs/node#58618). node:http2's
 * `ClientHttp2Session.request()` binds once per stream, and in a sidecar carrying gRPC that
 * property cost about 5% of its busy time (a profile of 2026-12-06,
 * docs/benchmark-history.md). Nothing in a proxy process reads it. Everything else is Node 20's
 * own: the function runs in the resource's async scope, with the caller's `this` unless one was
 * given, and keeps `fn`'s length. Once per process; the sidecar does it when it loads node:http2.
 */
export function bindWithoutAsyncResourceProperty(): void {
  if (replaced) return;
  replaced = true;
  const bind: Bind = function bind(fn, thisArg) {
    if (typeof fn !== 'function') {
      throw Object.assign(new TypeError(`The "fn" argument must be of type function. Received ${fn === null ? 'null' : typeof fn}`), { code: 'ERR_INVALID_ARG_TYPE' });
    }
    const resource = this;
    const bound = thisArg === undefined
      ? function (this: unknown, ...args: unknown[]) { return resource.runInAsyncScope(fn, this, ...args); }
      : resource.runInAsyncScope.bind(resource, fn, thisArg);
    Object.defineProperty(bound, 'length', { configurable: true, enumerable: false, value: fn.length, writable: false });
    return bound as (...args: unknown[]) => unknown;
  };
  (AsyncResource.prototype as unknown as { bind: Bind }).bind = bind;
}
