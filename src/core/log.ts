import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogFormat = 'json' | 'pretty';
export type { Logger };

/**
 * JSON lines on stderr by default (for collectors); `pretty` for people. Pretty printing runs in
 * this thread on purpose: a worker transport can lose the last lines when a CLI exits.
 */
export function createLogger(opts: { name: string; level?: string; format?: LogFormat } = { name: 'isthmus' }): Logger {
  const level = opts.level ?? process.env.ISTHMUS_LOG_LEVEL ?? 'info';
  const format = opts.format ?? (process.env.ISTHMUS_LOG_FORMAT as LogFormat | undefined) ?? 'json';
  if (format === 'pretty') {
    return pino({ name: opts.name, level }, pretty({ destination: 2, colorize: process.stderr.isTTY ?? false, sync: true }));
  }
  return pino({ name: opts.name, level }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything, for library callers and tests that do not care. */
export const silentLogger: Logger = pino({ level: 'silent' });
