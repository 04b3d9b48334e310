import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { pino, type Logger } from 'pino';
import { ensureDirectory } from './user-paths.js';

export type LogFormat = 'json' | 'pretty';
export type { Logger };

/**
 * JSON lines on stderr by default (for collectors); `pretty` for people. Pretty printing runs in
 * this thread on purpose: a worker transport can lose the last lines when a CLI exits.
 */
export function createLogger(opts: { name: string; level?: string; format?: LogFormat; file?: string } = { name: 'isthmus' }): Logger {
  const level = opts.level ?? process.env.ISTHMUS_LOG_LEVEL ?? 'info';
  const format = opts.format ?? (process.env.ISTHMUS_LOG_FORMAT as LogFormat | undefined) ?? 'json';
  if (format === 'pretty') {
    // Loaded only when asked for: most processes log JSON and should not pay for it at start-up.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    return pino({ name: opts.name, level }, pretty({ destination: 2, colorize: process.stderr.isTTY ?? false, sync: true }));
  }
  // Not pino's own mkdir: it is Node's recursive mkdir, which spins on /proc (see ensureDirectory).
  if (opts.file !== undefined) ensureDirectory(dirname(opts.file), 'the log file\'s directory');
  const destination = opts.file === undefined ? pino.destination({ fd: 2, sync: true }) : pino.destination({ dest: opts.file, sync: false });
  return pino({ name: opts.name, level }, destination);
}

/** A logger that drops everything, for library callers and tests that do not care. */
export const silentLogger: Logger = pino({ level: 'silent' });
