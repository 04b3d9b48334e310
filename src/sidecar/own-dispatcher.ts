import { Dispatcher as DispatcherBase } from '../core/undici.js';

/**
 * undici's Dispatcher with its close/destroy overloads (a promise, or a callback) written once:
 * UpstreamPool and H1Agent say only how they close gracefully and how they destroy.
 */
export abstract class OwnDispatcher extends DispatcherBase {
  /** Lets what is in flight finish, then closes every connection. */
  protected abstract closeAll(): Promise<void>;
  /** Fails what is waiting or in flight with `err` and closes every connection now. */
  protected abstract destroyAll(err: Error | null): Promise<void>;

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    const done = this.closeAll();
    if (!callback) return done;
    void done.then(callback);
  }

  override destroy(): Promise<void>;
  override destroy(err: Error | null): Promise<void>;
  override destroy(callback: () => void): void;
  override destroy(err: Error | null, callback: () => void): void;
  override destroy(errOrCallback?: Error | null | (() => void), callback?: () => void): Promise<void> | void {
    const err = typeof errOrCallback === 'function' ? null : errOrCallback ?? null;
    const cb = typeof errOrCallback === 'function' ? errOrCallback : callback;
    const done = this.destroyAll(err);
    if (!cb) return done;
    void done.then(cb);
  }
}
