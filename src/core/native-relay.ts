/**
 * Relays two connected sockets off the JavaScript thread: the gateway's spliced connections
 * (native/relay.c, compiled by `npm run build` into dist/native/relay.node, scripts/native.mjs).
 *
 * The gateway passes TLS through: after the ClientHello it only copies bytes. In JavaScript each
 * read is a libuv callback, a call into V8 and a write through the stream machinery, on the one
 * thread that also accepts, routes and collects garbage; a request on a kept connection costs two
 * of them, and a request that arrives during a collection waits for it. Here one thread of the
 * native module moves the bytes with epoll, recv and send, and JavaScript hears of a pair only
 * when it ends; the bytes each side has sent so far it reads, when it asks, from a Float64Array
 * the thread stores them into after each read (a slot per open pair). The sockets' descriptors
 * are duplicated and Node's own are closed: from then on the connection is the module's.
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
  start(onEnd: (id: number, how: number, fromA: number, fromB: number) => void, counts?: Float64Array): void;
  relay(fdA: number, fdB: number, idleMs: number, first: Buffer | undefined, aEnded: boolean, slot?: number): number;
  stop(id: number): void;
}

/**
 * Open pairs whose bytes so far can be read while they are open (a slot each in the counts the
 * thread writes): 16 bytes a slot, 1 MiB of address space, of which only the pages of slots in use
 * are ever touched. A pair beyond them is relayed all the same; its bytes are known at its end.
 */
export const liveCountSlots = 65_536;

/** How native/relay.c numbers the ends (END_CLOSED, END_IDLE, END_ERROR, END_STOPPED). */
const ends: readonly SpliceEnd[] = ['closed', 'idle', 'error', 'error'];

/**
 * Two sockets relayed by the native module. It stands where the two sockets stood for whoever
 * holds open connections (core/open-sockets.ts): `destroy()` closes both, and 'close' comes
 * once, when the pair has ended, with how it ended and the bytes each side sent (`fromA`
 * counts what was handed over with it: `first` and what `a` held).
 */
export class RelayedPair extends EventEmitter {
  /** The totals, once the module has reported the end. */
  private final: SplicedBytes | undefined;
  constructor(private readonly relay: NativeRelay, readonly id: number, private readonly handedOver: number, readonly slot: number) {
    super();
  }

  get closed(): boolean {
    return this.final !== undefined;
  }

  destroy(): void {
    if (!this.closed) this.relay.stop(this.id);
  }

  /**
   * The bytes each side has sent so far (`fromA` with what was handed over), read from what the
   * relay thread stored after its last read; the totals once the pair has ended. A pair without
   * a slot (more pairs open than liveCountSlots) reads only what was handed over until its end.
   */
  bytes(): SplicedBytes {
    if (this.final) return this.final;
    const [fromA, fromB] = this.slot < 0 ? [0, 0] : this.relay.counted(this.slot);
    return { fromA: fromA + this.handedOver, fromB };
  }

  /** Called by the relay when the module reports the end. */
  ended(how: SpliceEnd, bytes: SplicedBytes): void {
    this.final = { fromA: bytes.fromA + this.handedOver, fromB: bytes.fromB };
    this.emit('close', how, this.final);
  }
}

export class NativeRelay {
  private readonly pairs = new Map<number, RelayedPair>();
  /** Two doubles per slot, written by the relay thread (an ArrayBuffer's store never moves). */
  private readonly counts = new Float64Array(new ArrayBuffer(liveCountSlots * 16));
  /** Slots given back by ended pairs, and the first never given. */
  private readonly freeSlots: number[] = [];
  private nextSlot = 0;

  constructor(private readonly binding: RelayBinding) {
    binding.start((id, how, fromA, fromB) => {
      const pair = this.pairs.get(id);
      if (!pair) return;
      this.pairs.delete(id);
      // The thread wrote the slot for the last time before it reported the end.
      if (pair.slot >= 0) this.freeSlots.push(pair.slot);
      pair.ended(ends[how] ?? 'error', { fromA, fromB });
    }, this.counts);
  }

  /** What the pair at `slot` has read from each side so far. */
  counted(slot: number): [number, number] {
    return [this.counts[slot * 2] ?? 0, this.counts[slot * 2 + 1] ?? 0];
  }

  private takeSlot(): number {
    const slot = this.freeSlots.pop() ?? (this.nextSlot < liveCountSlots ? this.nextSlot++ : -1);
    if (slot >= 0) {
      this.counts[slot * 2] = 0;
      this.counts[slot * 2 + 1] = 0;
    }
    return slot;
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
    const slot = this.takeSlot();
    let id: number;
    try {
      id = this.binding.relay(fdA, fdB, idleMs, bytes, aEnded, slot);
    } catch (err) {
      if (slot >= 0) this.freeSlots.push(slot);
      throw err;
    }
    const pair = new RelayedPair(this, id, bytes?.length ?? 0, slot);
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
