import { InvalidArgumentError, Option, type Command } from 'commander';
import { IsthmusError, describeError, isIsthmusError } from '../core/errors.js';
import { silentLogger } from '../core/log.js';
import { parseDuration } from '../core/validate.js';
import type { EtcdTlsFiles } from '../federation/etcd-tls.js';
import type { FederationStore } from '../federation/store.js';
import { parseOutputFormat, printJson, type OutputFormat } from './output.js';

function commandPath(command: Command | undefined): string {
  const names: string[] = [];
  for (let c = command; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ') || 'isthmus';
}

/**
 * An option's parser for a whole number in [min, max]: anything else is a usage error that
 * commander reports naming the option and the value (exit 2), before the command does anything.
 */
export function wholeNumber(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^[0-9]+$/.test(value.trim()) || n < min || n > max) throw new InvalidArgumentError(`give a whole number from ${min} to ${max}.`);
    return n;
  };
}

/** An option's parser for a duration (15s, 5m, 1h, 7d), checked as wholeNumber checks numbers. */
export function duration(value: string): string {
  try {
    parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError(`${describeError(err)}.`);
  }
  return value;
}

/** Exit codes: 0 ok, 1 the operation failed, 2 the command line was wrong (commander's own). */
export const exitFailure = 1;

/** --log-format and --log-level of the long-running commands (federation, gateway, sidecar). */
export function logOptions(command: Command): Command {
  return command
    .addOption(new Option('--log-format <format>', 'json lines, or pretty for people').choices(['json', 'pretty']).env('ISTHMUS_LOG_FORMAT').default('json'))
    .addOption(new Option('--log-level <level>', 'minimum level to log').choices(['debug', 'info', 'warn', 'error']).env('ISTHMUS_LOG_LEVEL').default('info'));
}

export function etcdOption(): Option {
  return new Option('--etcd <urls>', 'etcd client URL(s), comma-separated (https:// when etcd has TLS on)').env('ISTHMUS_ETCD');
}

/** What a command that reads etcd gets from --etcd and its TLS options (or their environment variables). */
export interface EtcdFlags {
  etcd?: string | undefined;
  etcdCa?: string | undefined;
  etcdCert?: string | undefined;
  etcdKey?: string | undefined;
}

/**
 * Gives every command that has --etcd (below `program`) --etcd-ca, --etcd-cert and --etcd-key
 * too, listed right after it, so no command can read etcd without being able to prove itself
 * to a locked-down one. Run once the commands are registered.
 */
export function addEtcdTlsOptions(program: Command): void {
  for (const command of program.commands) {
    addEtcdTlsOptions(command);
    const at = command.options.findIndex((o) => o.long === '--etcd');
    if (at < 0) continue;
    // Beside --etcd's own variable: ISTHMUS_ETCD_CA, or ISTHMUS_DEV_ETCD_CA for `dev up`.
    const env = command.options[at]?.envVar ?? 'ISTHMUS_ETCD';
    const added = [
      new Option('--etcd-ca <file>', 'CA certificate that signed etcd\'s server certificate (default: Node\'s public CAs and NODE_EXTRA_CA_CERTS)').env(`${env}_CA`),
      new Option('--etcd-cert <file>', 'client certificate for etcd (its --client-cert-auth), signed by etcd\'s CA').env(`${env}_CERT`),
      new Option('--etcd-key <file>', 'private key of --etcd-cert').env(`${env}_KEY`),
    ];
    for (const option of added) command.addOption(option);
    // Help lists options in this array's order: keep the three beside --etcd.
    (command.options as Option[]).splice(command.options.length - added.length, added.length);
    (command.options as Option[]).splice(at + 1, 0, ...added);
  }
}

/**
 * The etcd a command reads: the flags (or their environment variables) where given, otherwise
 * what the cluster config (`--config`) says, field by field.
 */
export function etcdFlagsWithConfig(flags: EtcdFlags, config: { config: { etcd: { endpoints: readonly string[] } }; etcdTls: EtcdTlsFiles } | undefined): EtcdFlags {
  if (!config) return flags;
  return {
    etcd: flags.etcd || config.config.etcd.endpoints.join(','),
    etcdCa: flags.etcdCa || config.etcdTls.ca,
    etcdCert: flags.etcdCert || config.etcdTls.cert,
    etcdKey: flags.etcdKey || config.etcdTls.key,
  };
}

/** The TLS files of EtcdFlags, for FederationStore.connect. */
export function etcdTlsFiles(flags: EtcdFlags): EtcdTlsFiles {
  return { ca: flags.etcdCa || undefined, cert: flags.etcdCert || undefined, key: flags.etcdKey || undefined };
}

export function outputOption(): Option {
  return new Option('-o, --output <format>', 'table for people, json for scripts').choices(['table', 'json']).default('table');
}

export function etcdEndpoints(value: string | undefined): string[] {
  if (!value) {
    throw new IsthmusError('ISTHMUS_ERR_ETCD_NOT_CONFIGURED', 'no etcd address: pass --etcd http://host:2379 or set ISTHMUS_ETCD');
  }
  const endpoints = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const endpoint of endpoints) {
    if (!/^https?:\/\/[^/\s]+$/.test(endpoint)) {
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `--etcd "${endpoint}" is not a URL like http://127.0.0.1:2379`);
    }
  }
  return endpoints;
}

export async function connectStore(flags: EtcdFlags): Promise<FederationStore> {
  // Loaded on use: the etcd client (gRPC, protobufs) is most of the CLI's start-up time.
  const { FederationStore } = await import('../federation/store.js');
  return await FederationStore.connect({ endpoints: etcdEndpoints(flags.etcd), tls: etcdTlsFiles(flags), logger: silentLogger, dialTimeoutMs: 3000, refusedIsFinal: true });
}

/**
 * How long a command's work with etcd may take in all. Each etcd call has its own 5 s deadline,
 * but a wait that no call owns (seen once: `policy apply` still running, idle, 32 minutes after
 * a CI test gave up on it) must end the command with an error, not leave it running.
 */
export const storeWorkDeadlineMs = 60_000;
/** How long closing the store may take once the work is done: the result is not held back for it. */
const storeCloseMs = 2_000;

/** Opens a store, runs `work`, always closes it; connecting and the work together get `deadlineMs`. */
export async function withStore<T>(flags: EtcdFlags, work: (store: FederationStore) => Promise<T>, deadlineMs = storeWorkDeadlineMs): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new IsthmusError('ISTHMUS_ERR_ETCD_UNREACHABLE',
      `the work with etcd at ${etcdEndpoints(flags.etcd).join(', ')} did not finish within ${deadlineMs / 1000} s. ` +
      'A write may or may not have been made: check etcd (`etcdctl endpoint health`), then run the command again (it is safe to repeat).')), deadlineMs);
  });
  const connecting = connectStore(flags);
  let store: FederationStore;
  try {
    store = await Promise.race([connecting, late]);
  } catch (err) {
    clearTimeout(timer);
    // Too late: a store that connects after all is closed, not left holding the process.
    connecting.then((s) => s.close(), () => undefined).catch(() => undefined);
    throw err;
  }
  try {
    return await Promise.race([work(store), late]);
  } finally {
    clearTimeout(timer);
    let closing: NodeJS.Timeout | undefined;
    await Promise.race([store.close().catch(() => undefined), new Promise((resolve) => { closing = setTimeout(resolve, storeCloseMs); })]);
    clearTimeout(closing);
  }
}

/**
 * Wraps an action: an error becomes one line on stderr ("isthmus <verb>: <reason>") and exit
 * code 1, or a JSON error object on stdout with `--output json`, never a stack trace.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const command = args[args.length - 1] as Command;
      const opts = command.optsWithGlobals?.() as { output?: string } | undefined;
      const format: OutputFormat = opts?.output === 'json' ? 'json' : parseOutputFormat('table');
      const verb = commandPath(command);
      if (format === 'json') {
        printJson({ error: isIsthmusError(err) ? err.toJSON() : { code: 'ISTHMUS_ERR_INTERNAL_UNEXPECTED', message: describeError(err) } });
      }
      process.stderr.write(`isthmus ${verb}: ${describeError(err)}\n`);
      if (!isIsthmusError(err) && process.env.ISTHMUS_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
      process.exitCode = exitFailure;
    }
  };
}

/**
 * Keeps a long-running command (federation, gateway, sidecar) alive until SIGINT or SIGTERM,
 * then stops it gracefully. Resolves when it has stopped, or early when `stopped` fires.
 */
export async function runUntilSignal(logger: { info(o: object, m: string): void; error(o: object, m: string): void }, stop: () => Promise<void>, stopped?: Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    const shutdown = (signal: string) => {
      logger.info({ signal }, 'stopping');
      stop().then(resolve, (err: unknown) => {
        logger.error({ err: describeError(err) }, 'error while stopping');
        resolve();
      });
    };
    process.once('SIGINT', () => shutdown('SIGINT'));
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    void stopped?.then(resolve);
  });
}
