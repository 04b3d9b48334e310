/**
 * Relays two connected sockets off the JavaScript thread: the gateway's spliced connections
 * (native/relay.c, compiled by `npm run build` into dist/native/relay.node, scripts/native.mjs).
 *
 * The gateway passes TLS through: after the ClientHello it only copies bytes. In JavaScript each
 * read is a libuv callback, a call into V8 and a write through the stream machinery, on the one
 * thread that also accepts, routes and collects garbage; a request on a kept connection costs two
 * of them, and a request that arrives during a collection waits for it. Here one thread of the
 * native module moves the bytes with epoll, recv and send, and JavaScript hears of a pair only
 * when it ends. The sockets' descriptors are duplicated and Node's own are closed: from then on
 * the connection is the module's.
 *
 * Where the module could not be built (no C compiler, no Node headers, not Linux) `nativeRelay()`
 * says why, and the gateway relays in JavaScript (core/splice.ts) as before.
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { SpliceEnd, SplicedBytes } from './splice.js';

/** What copies a gateway's routed bytes: this module's thread, or JavaScript (core/splice.ts). */
export type RelayKind = 'native' | 'node';

/** Whether `value` names a relay (a flag's value). */
export function isRelayKind(value: unknown): value is RelayKind {
  return value === 'native' || value === 'node';
}

/** dist/native/relay.node, from dist/core, dist/bundle or src/core alike. */
export const relayModule = fileURLToPath(new URL('../../dist/native/relay.node', import.meta.url));

interface RelayBinding {
  start(onEnd: (id: number, how: number, fromA: number, fromB: number) => void): void;
  relay(fdA: number, fdB: number, idleMs: number, first: Buffer | undefined, aEnded: boolean): number;
  stop(id: number): void;
}

/** How native/relay.c numbers the ends (END_CLOSED, END_IDLE, END_ERROR, END_STOPPED). */
const ends: readonly SpliceEnd[] = ['closed', 'idle', 'error', 'error'];

/**
 * Two sockets relayed by the native module. It stands where the two sockets stood for whoever
 * holds open connections (core/open-sockets.ts): `destroy()` closes both, and 'close' comes
 * once, when the pair has ended, with how it ended and the bytes each side sent (`fromA`
 * counts what was handed over with it: `first` and what `a` held).
 */
export class RelayedPair extends EventEmitter {
  closed = false;
  constructor(private readonly relay: NativeRelay, readonly id: number, private readonly handedOver: number) {
    super();
  }

  destroy(): void {
    if (!this.closed) this.relay.stop(this.id);
  }

  /** Called by the relay when the module reports the end. */
  ended(how: SpliceEnd, bytes: SplicedBytes): void {
    this.closed = true;
    this.emit('close', how, { fromA: bytes.fromA + this.handedOver, fromB: bytes.fromB });
  }
}

export class NativeRelay {
  private readonly pairs = new Map<number, RelayedPair>();

  constructor(private readonly binding: RelayBinding) {
    binding.start((id, how, fromA, fromB) => {
      const pair = this.pairs.get(id);
      if (!pair) return;
      this.pairs.delete(id);
      pair.ended(ends[how] ?? 'error', { fromA, fromB });
    });
  }

  /** Pairs relayed now. */
  get size(): number {
    return this.pairs.size;
  }

  /**
   * Hands `a` and `b`, both connected, to the module, which sends `first` to `b` before anything
   * else (what the caller read from `a` and did not pass on). What `a` holds in its readable
   * buffer is taken too; its FIN, if read already, is passed on. Both sockets are destroyed here
   * (their descriptors are the module's duplicates now): listen to the pair's 'close' instead.
   * Undefined, with both sockets untouched, when either has no descriptor (not a TCP socket, or
   * `b` with writes still queued).
   */
  splice(a: Socket, b: Socket, first: Buffer | undefined, idleMs: number): RelayedPair | undefined {
    const fdA = descriptor(a);
    const fdB = descriptor(b);
    if (fdA === undefined || fdB === undefined || b.writableLength > 0 || a.writableLength > 0) return undefined;
    const held: Buffer[] = first && first.length > 0 ? [first] : [];
    for (let chunk = a.read() as Buffer | null; chunk !== null; chunk = a.read() as Buffer | null) held.push(chunk);
    const aEnded = (a as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended === true;
    const bytes = held.length === 0 ? undefined : held.length === 1 ? held[0] : Buffer.concat(held);
    const id = this.binding.relay(fdA, fdB, idleMs, bytes, aEnded);
    const pair = new RelayedPair(this, id, bytes?.length ?? 0);
    this.pairs.set(id, pair);
    // Node's descriptors are closed; the module's duplicates keep the connections open.
    a.destroy();
    b.destroy();
    return pair;
  }

  stop(id: number): void {
    this.binding.stop(id);
  }
}

/** A socket's file descriptor, when it has one (a TCP socket on Linux). */
function descriptor(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

let loaded: NativeRelay | { unavailable: string } | undefined;

/** The process's relay (one thread), or why there is none. */
export function nativeRelay(path: string = relayModule): NativeRelay | { unavailable: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') loaded = { unavailable: `the native relay uses epoll; not built on ${process.platform}` };
  else if (!existsSync(path)) loaded = { unavailable: `${path} was not built (it needs a C compiler and Node's headers: install gcc, then npm run build)` };
  else {
    try {
      const mod = { exports: {} as Partial<RelayBinding> };
      process.dlopen(mod, path);
      const binding = mod.exports;
      if (typeof binding.start !== 'function' || typeof binding.relay !== 'function' || typeof binding.stop !== 'function') {
        loaded = { unavailable: `${path} is not the relay this code expects; rebuild it with npm run build` };
      } else loaded = new NativeRelay(binding as RelayBinding);
    } catch (err) {
      loaded = { unavailable: `${path} could not be loaded (${(err as Error).message.split('\n')[0]}); rebuild it with npm run build` };
    }
  }
  return loaded;
}
