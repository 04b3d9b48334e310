import { EtcdLeaseInvalidError, type IDuplexStream, type ILeaseKeepAliveRequest, type ILeaseKeepAliveResponse } from 'etcd3';
import type { Logger } from 'pino';
import { Backoff } from '../core/backoff.js';

export interface LeaseSession {
  /** Current lease id; changes after a re-grant. */
  readonly id: string;
  /** TTL asked for; a change applies from the next grant. */
  ttlSeconds: number;
  /**
   * Writes the record under the lease and remembers it: if the lease is lost (it expired while
   * etcd could not hear us, or someone revoked it) a new lease is granted, every remembered
   * record is written again, then onRegranted is called. A put made while that happens waits for it.
   */
  put(key: string, value: object): Promise<void>;
  /** Deletes the record and forgets it. */
  delete(key: string): Promise<void>;
  /** Stops the keepalive and revokes the lease, so its records vanish now; best effort if etcd is down. */
  revoke(): Promise<void>;
  /** Stops the keepalive without revoking: etcd deletes the records when the TTL runs out. */
  release(): Promise<void>;
}

export interface LeaseSessionOptions {
  ttlSeconds: number;
  /** etcd said the lease is gone; a new one is being granted. */
  onLost?: (err: Error) => void;
  /** A new lease holds every remembered record again. */
  onRegranted?: (id: string, previousId: string) => void;
}

/** What a session needs from the store, passed in so this file holds no client of its own. */
export interface LeasePort {
  grant(ttlSeconds: number): Promise<string>;
  /** Ignores a lease that is already gone. */
  revoke(id: string): Promise<void>;
  openKeepAlive(): Promise<IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>>;
  /** Throws for a value the store would refuse, before anything is remembered. */
  validate(key: string, value: object): void;
  /** Rejects with etcd3's EtcdLeaseInvalidError when etcd no longer knows the lease. */
  put(key: string, value: object, leaseId: string): Promise<number>;
  delete(key: string): Promise<void>;
  logger: Logger;
  onEnded?: () => void;
}

const retryInitialMs = 100;
/** A re-grant writes what was put, not what the caller's object has become since. */
const snapshot = (value: object): object => JSON.parse(JSON.stringify(value)) as object;
const retryMaxMs = 1_000;

/**
 * Keeps one lease alive and its records present.
 *
 * Loss is decided by etcd, never by a local clock: etcd re-arms every lease with a full TTL when
 * it (re)elects a leader, so after an etcd restart of any length the keepalive simply resumes and
 * the records never flap. (etcd3's own Lease instead declares the lease lost after 2×TTL without
 * an answer and stops keeping it alive, which lets the records expire after etcd comes back.)
 * The lease is re-granted only when etcd answers a keepalive with TTL 0 or rejects a put with
 * "lease not found". All writes and the re-grant are serialized, so a delete can never be undone
 * by a re-grant that re-writes the record it deleted.
 */
export class LeaseKeeper implements LeaseSession {
  ttlSeconds: number;
  readonly #port: LeasePort;
  readonly #options: LeaseSessionOptions;
  readonly #log: Logger;
  readonly #records = new Map<string, object>();
  readonly #done: Promise<void>;
  #id: string;
  #state: 'alive' | 'lost' | 'closed' = 'alive';
  /** Settles when a lost lease has been replaced (or the session ended); set only while lost. */
  #replaced: { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } | undefined;
  #tail: Promise<unknown> = Promise.resolve();
  /** Ends whatever the keepalive loop is waiting on (a stream or a pause). */
  #interrupt: (() => void) | undefined;

  static async grant(port: LeasePort, options: LeaseSessionOptions): Promise<LeaseKeeper> {
    if (!Number.isInteger(options.ttlSeconds) || options.ttlSeconds < 1) {
      throw new RangeError(`a lease TTL must be a whole number of seconds ≥ 1, got ${options.ttlSeconds}`);
    }
    return new LeaseKeeper(port, options, await port.grant(options.ttlSeconds));
  }

  private constructor(port: LeasePort, options: LeaseSessionOptions, id: string) {
    this.#port = port;
    this.#options = options;
    this.ttlSeconds = options.ttlSeconds;
    this.#id = id;
    this.#log = port.logger.child({ component: 'lease-session' });
    this.#done = this.#maintain();
  }

  get id(): string {
    return this.#id;
  }

  async put(key: string, value: object): Promise<void> {
    await this.write(key, value);
  }

  /** put() that returns the revision of the write (FederationStore.put with a lease uses it). */
  async write(key: string, value: object): Promise<number> {
    this.#port.validate(key, value);
    for (;;) {
      this.#assertOpen();
      const revision = await this.#exclusive(async () => {
        if (this.#state === 'alive') {
          try {
            const written = await this.#port.put(key, value, this.#id);
            this.#records.set(key, snapshot(value));
            return written;
          } catch (err) {
            if (!(err instanceof EtcdLeaseInvalidError)) throw err;
            this.#markLost(err);
          }
        }
        // Remembered first, so the re-grant that is coming writes it with the others.
        if (this.#state === 'lost') this.#records.set(key, snapshot(value));
        return undefined;
      });
      if (revision !== undefined) return revision;
      await this.#untilReplaced();
    }
  }

  async delete(key: string): Promise<void> {
    this.#assertOpen();
    await this.#exclusive(async () => {
      const value = this.#records.get(key);
      this.#records.delete(key);
      try {
        await this.#port.delete(key);
      } catch (err) {
        if (value !== undefined) this.#records.set(key, value); // still there, so still ours to keep
        throw err;
      }
    });
  }

  /**
   * Forgets remembered records the store is about to delete by other means, after any re-grant
   * in flight; returns them so a delete that then fails can hand them back with remember().
   */
  async forget(matches: (key: string) => boolean): Promise<Map<string, object>> {
    return await this.#exclusive(async () => {
      const forgotten = new Map<string, object>();
      for (const [key, value] of this.#records) if (matches(key)) forgotten.set(key, value);
      for (const key of forgotten.keys()) this.#records.delete(key);
      return forgotten;
    });
  }

  /** A transaction wrote the record under this lease (or a delete failed): keep it present. */
  remember(key: string, value: object): void {
    if (this.#state !== 'closed') this.#records.set(key, snapshot(value));
  }

  /** A write elsewhere (a transaction) found the lease gone. */
  noticeLost(err: Error): void {
    this.#markLost(err);
  }

  whenUsable(): Promise<void> {
    return this.#untilReplaced();
  }

  async revoke(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#stop();
    await this.#done;
    await this.#exclusive(async () => {
      this.#records.clear();
      try {
        await this.#port.revoke(this.#id);
      } catch (err) {
        this.#log.warn({ err, lease: this.#id }, `could not revoke the lease; its records vanish within ${this.ttlSeconds} s`);
      }
    });
  }

  /** Stops the keepalive without revoking: etcd deletes the records when the TTL runs out. */
  async release(): Promise<void> {
    this.#stop();
    await this.#done;
  }

  async #maintain(): Promise<void> {
    const backoff = new Backoff({ initialMs: retryInitialMs, maxMs: retryMaxMs });
    while (this.#state !== 'closed') {
      let nextAtOnce = false;
      try {
        if (this.#state === 'lost') {
          nextAtOnce = await this.#regrant();
        } else {
          if (await this.#keepAlive()) backoff.reset();
          nextAtOnce = this.#stateNow() === 'lost';
        }
      } catch (err) {
        this.#log.warn({ err, lease: this.#id }, 'lease keepalive or re-grant failed; retrying');
      }
      if (this.#stateNow() === 'closed') break;
      if (nextAtOnce) {
        backoff.reset();
        continue;
      }
      await this.#pause(backoff.next());
    }
  }

  /** Runs one keepalive stream until it fails or etcd says the lease is gone; true if etcd answered. */
  async #keepAlive(): Promise<boolean> {
    const id = this.#id;
    const stream = await this.#port.openKeepAlive();
    // Three keepalives per TTL, as etcd's Go client does.
    const tickMs = Math.max(500, (this.ttlSeconds * 1000) / 3);
    return await new Promise<boolean>((resolve) => {
      let settled = false;
      let answered = false;
      let lastAnswer = Date.now();
      const finish = (): void => {
        if (settled) return;
        settled = true;
        clearInterval(timer);
        this.#interrupt = undefined;
        // end() before cancel(): etcd3 resets every channel when a still-writable stream fails.
        stream.end();
        stream.cancel();
        resolve(answered);
      };
      const timer = setInterval(() => {
        // A partition can stall a connection without any error; etcd answers every keepalive,
        // so two unanswered ticks mean this stream is useless and a new one is needed.
        if (Date.now() - lastAnswer > 2 * tickMs + 250) {
          this.#log.warn({ lease: id }, 'etcd stopped answering lease keepalives; reconnecting');
          return finish();
        }
        stream.write({ ID: id });
      }, tickMs);
      this.#interrupt = finish;
      if (this.#state !== 'alive') return finish();

      stream.on('data', (res) => {
        if (settled || res.ID !== id) return;
        if (Number(res.TTL) <= 0) {
          finish();
          this.#markLost(new EtcdLeaseInvalidError(id));
          return;
        }
        lastAnswer = Date.now();
        answered = true;
      });
      stream.on('error', (err) => {
        if (!settled) this.#log.debug({ err, lease: id }, 'lease keepalive stream failed');
        finish();
      });
      stream.on('end', finish);
      stream.write({ ID: id });
    });
  }

  /** Grants a new lease and writes every remembered record under it; true on success. */
  async #regrant(): Promise<boolean> {
    return await this.#exclusive(async () => {
      if (this.#state !== 'lost') return true;
      const previous = this.#id;
      const id = await this.#port.grant(this.ttlSeconds);
      try {
        // One put per record rather than one transaction: etcd caps a transaction at
        // --max-txn-ops (128 by default).
        await Promise.all([...this.#records].map(([key, value]) => this.#port.put(key, value, id)));
      } catch (err) {
        // Half-written: drop this lease (its records vanish) and start over with a fresh one.
        this.#port.revoke(id).catch(() => undefined);
        throw err;
      }
      this.#id = id;
      if (this.#state !== 'lost') return true; // ended meanwhile; revoke() revokes this id
      this.#state = 'alive';
      this.#replaced?.resolve();
      this.#replaced = undefined;
      this.#log.info({ lease: id, previous, records: this.#records.size }, 'granted a new lease and re-wrote its records');
      this.#callback(() => this.#options.onRegranted?.(id, previous));
      return true;
    });
  }

  #markLost(err: Error): void {
    if (this.#state !== 'alive') return;
    this.#state = 'lost';
    let resolve = (): void => undefined;
    let reject = (_: Error): void => undefined;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => undefined); // nobody may be waiting when the session ends
    this.#replaced = { promise, resolve, reject };
    this.#log.warn({ err, lease: this.#id }, 'etcd lost the lease; granting a new one');
    this.#interrupt?.();
    this.#callback(() => this.#options.onLost?.(err));
  }

  /** Read through a call: TypeScript would otherwise keep a narrowing across the awaits above. */
  #stateNow(): 'alive' | 'lost' | 'closed' {
    return this.#state;
  }

  #untilReplaced(): Promise<void> {
    if (this.#state === 'closed') return Promise.reject(this.#endedError());
    return this.#replaced?.promise ?? Promise.resolve();
  }

  #stop(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#replaced?.reject(this.#endedError());
    this.#replaced = undefined;
    this.#interrupt?.();
    this.#port.onEnded?.();
  }

  #assertOpen(): void {
    if (this.#state === 'closed') throw this.#endedError();
  }

  #endedError(): Error {
    return new Error(`lease session ${this.#id} has ended (revoked or its store closed)`);
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  #callback(call: () => void): void {
    try {
      call();
    } catch (err) {
      this.#log.error({ err }, 'a lease session callback threw');
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#interrupt = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#interrupt = done;
    });
  }
}
