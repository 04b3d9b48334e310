import { statSync } from 'node:fs';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { LoadedClusterConfig } from './config.js';
import { localServices, type LocalService } from './local-services.js';
import type { Platform } from './platform.js';
import { readRegistry, registryPath, type Registry } from './registry-file.js';

/**
 * The `local` platform: services declared in cluster.yaml plus instances that `isthmus register`
 * wrote to the registry file beside it, re-read whenever the file changes (checked every second).
 */
export class LocalPlatform implements Platform {
  readonly kind = 'local';
  readonly reviewToken = undefined;
  registry: Registry = { version: 1, instances: [], tokens: [] };
  private current: LocalService[] = [];
  private mtime = -1;
  private timer: NodeJS.Timeout | undefined;
  private onChange: () => void = () => undefined;

  constructor(private readonly loaded: LoadedClusterConfig, private readonly log: Logger) {}

  async start(onChange: () => void): Promise<void> {
    this.reload();
    this.onChange = onChange;
    this.timer = setInterval(() => this.refresh(), 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
  }

  services(): LocalService[] {
    return this.current;
  }

  exports(): undefined {
    return undefined;
  }

  meshChanged(): void {
    // Nothing to show: on a laptop, `isthmus services` and the dashboard are where imports are seen.
  }

  /** Picks up `isthmus register` changes now rather than at the next check (a new token must work at once). */
  refresh(): void {
    if (this.reload()) this.onChange();
  }

  private reload(): boolean {
    const path = registryPath(this.loaded.dir);
    let mtime = 0;
    try {
      mtime = statSync(path).mtimeMs;
    } catch {
      mtime = 0;
    }
    if (mtime === this.mtime) return false;
    this.mtime = mtime;
    try {
      this.registry = readRegistry(this.loaded.dir);
    } catch (err) {
      this.log.error({ path, err: describeError(err) }, 'registry file unreadable; keeping the last good copy');
      return false;
    }
    this.current = localServices(this.loaded.config.services, this.registry.instances, this.loaded.config.zones[0] ?? 'default');
    return true;
  }
}
