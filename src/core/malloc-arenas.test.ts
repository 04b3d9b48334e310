import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { proxyMallocArenaMax, withProxyMallocArenas } from './malloc-arenas.js';

describe('withProxyMallocArenas', () => {
  it('sets MALLOC_ARENA_MAX to the proxies\' value and keeps the rest of the environment', () => {
    const env = withProxyMallocArenas({ PATH: '/usr/bin', ISTHMUS_LOG_FORMAT: 'json' });
    expect(env).toEqual({ PATH: '/usr/bin', ISTHMUS_LOG_FORMAT: 'json', MALLOC_ARENA_MAX: proxyMallocArenaMax });
  });

  it('keeps a number the environment names already (an operator\'s own choice, or an A/B run)', () => {
    expect(withProxyMallocArenas({ MALLOC_ARENA_MAX: '8' }).MALLOC_ARENA_MAX).toBe('8');
  });

  it('reaches a child process started with it', () => {
    const out = spawnSync(process.execPath, ['-e', 'process.stdout.write(process.env.MALLOC_ARENA_MAX ?? "unset")'], { env: withProxyMallocArenas({ PATH: process.env.PATH }) });
    expect(out.stdout.toString()).toBe(proxyMallocArenaMax);
  });
});
