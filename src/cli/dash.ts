import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { Option, type Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { loadListenerTls, type ListenerTls } from '../core/tls-files.js';
import { createLogger, type LogFormat } from '../core/log.js';
import { action, etcdEndpoints, etcdTlsFiles, etcdOption, outputOption, runUntilSignal, type EtcdFlags } from './common.js';
import { operatorOptions } from './operator.js';
import type { OperatorFlags } from '../trust/operator-files.js';

interface DashOptions extends OperatorFlags, EtcdFlags { listen: string; open?: boolean; output: string; logFormat?: LogFormat; logLevel: string; reads: 'operator' | 'public'; tlsCert?: string; tlsKey?: string }

const defaultListen = '127.0.0.1:15015';

export function registerDash(program: Command): void {
  operatorOptions(program.command('dash'))
    .description('serve the mesh dashboard from this shell, read straight from etcd (no federation service needed); Ctrl-C stops it')
    .option('--listen <host:port>', 'where to serve the page; port 0 picks a free one', defaultListen)
    .addOption(etcdOption())
    .option('--open', 'open the page in a browser (xdg-open)')
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (then its chain), naming the address browsers dial; with --tls-key')
    .option('--tls-key <file>', 'the private key of --tls-cert')
    .addOption(new Option('--reads <who>', 'who may read the data under /api/: operators (a token; this command signs you in with your operator credential) or anyone who reaches --listen').choices(['operator', 'public']).default('operator'))
    .addOption(outputOption())
    .addOption(new Option('--log-format <format>', 'json lines, or pretty for people (default: pretty, json with --output json)').choices(['json', 'pretty']).env('ISTHMUS_LOG_FORMAT'))
    .addOption(new Option('--log-level <level>', 'minimum level to log').choices(['debug', 'info', 'warn', 'error']).env('ISTHMUS_LOG_LEVEL').default('info'))
    .addHelpText('after', `
The page, /api/overview and /api/stream are the same as on a federation's port 15014; /healthz
says whether etcd answers, /metrics has this process's own metrics. If etcd goes away the page
keeps the last state (and says so) until it is back. With --reads operator (the default) the
printed address carries a token of your operator credential (isthmus operator issue), which the
page keeps in a cookie; without a credential, open it with ?token=$(isthmus operator token).

Examples:
  isthmus dash --etcd http://127.0.0.1:2379 --open
  ISTHMUS_ETCD=http://10.0.0.5:2379 isthmus dash --listen 0.0.0.0:15015
  isthmus dash --etcd https://10.0.0.5:2379 --etcd-ca etcd-ca.pem --etcd-cert client-operator.pem --etcd-key client-operator-key.pem
  isthmus dash --listen 127.0.0.1:0 --output json     # prints {"url":"http://127.0.0.1:<port>/"}
  isthmus dash --listen 10.0.0.7:15015 --tls-cert dash.pem --tls-key dash-key.pem   # HTTPS, for a dashboard others reach`)
    .action(action(async (opts: DashOptions) => {
      const json = opts.output === 'json';
      const endpoints = etcdEndpoints(opts.etcd);
      const listen = parseListen(opts.listen);
      const tls = listenerTls(opts);
      const logger = createLogger({ name: 'isthmus-dash', format: opts.logFormat ?? (json ? 'json' : 'pretty'), level: opts.logLevel });
      // Loaded on use: the etcd client is most of the CLI's start-up time.
      const { StoreSource } = await import('../dashboard/store-source.js');
      const { createDashboard } = await import('../dashboard/server.js');
      const { startTelemetryServer } = await import('../telemetry/http.js');
      const { createMetrics } = await import('../telemetry/metrics.js');

      const source = await StoreSource.open({ endpoints, tls: etcdTlsFiles(opts), logger });
      // This process's own metrics: process stats, and the catalog and sync lag as this dash sees them.
      const metrics = createMetrics('federation', { cluster: 'dash' }, {
        clusterSyncs: () => source.mirror.clusterSyncs(),
        catalog: () => source.catalog,
      });
      const { meshRootsOfRecords } = await import('../trust/bundle.js');
      const { findOperatorCredential } = await import('../trust/operator-files.js');
      const { mintOperatorToken, maxTokenTtlSeconds } = await import('../trust/operator.js');
      const { keys } = await import('../core/keys.js');
      // Read before anything listens: a broken credential is an error now, not a page that refuses later.
      const credential = opts.reads === 'operator' ? findOperatorCredential(opts) : undefined;
      const dashboard = createDashboard(source, { access: { reads: opts.reads, rootsPem: () => meshRootsOfRecords(source.mirror.entries(keys.bundles)) } });
      const server = await startTelemetryServer({
        host: listen.host, port: listen.port, metrics,
        healthz: () => {
          const health = source.health();
          return { status: health.etcd === 'reachable' ? 'ok' : 'degraded', ...health };
        },
        extra: (req, res) => dashboard.handle(req, res), tls,
      }).catch(async (err: unknown) => {
        metrics.close();
        await source.close();
        throw listenError(err, opts.listen);
      });
      const url = pageUrl(tls ? 'https' : 'http', listen.host, Number(server.address.slice(server.address.lastIndexOf(':') + 1)));
      let signIn: string | undefined;
      if (credential) {
        const [certPem, ...chainPem] = credential.chainPem as [string, ...string[]];
        signIn = `${url}?token=${mintOperatorToken({ certPem, chainPem, keyPem: credential.keyPem, ttlSeconds: maxTokenTtlSeconds }).token}`;
      }
      const say = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
      if (json) process.stdout.write(`${JSON.stringify({ url, ...(signIn ? { signIn } : {}) })}\n`);
      else {
        say(`Dashboard of the mesh in etcd ${endpoints.join(', ')}: ${signIn ?? url}`);
        if (opts.reads === 'operator' && !signIn) say(`Its data needs an operator token: open ${url}?token=<isthmus operator token>, or run with --reads public.`);
        say('Press Ctrl-C to stop.');
      }
      if (opts.open) say(openInBrowser(signIn ?? url));

      await runUntilSignal(logger, async () => {
        dashboard.close();
        await server.close();
        metrics.close();
        await source.close();
      });
    }));
}

/** --tls-cert and --tls-key, read and checked before anything connects; neither: plain HTTP. */
function listenerTls(opts: DashOptions): ListenerTls | undefined {
  if (opts.tlsCert === undefined && opts.tlsKey === undefined) return undefined;
  if (opts.tlsCert === undefined || opts.tlsKey === undefined) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${opts.tlsCert === undefined ? '--tls-key' : '--tls-cert'} was given without ${opts.tlsCert === undefined ? '--tls-cert' : '--tls-key'}: HTTPS needs both the certificate and its key.`);
  }
  return loadListenerTls({ cert: opts.tlsCert, key: opts.tlsKey }, '--tls-cert and --tls-key');
}

/** `host:port`, `[v6]:port` or `:port` (all interfaces); port 0 asks the kernel for a free one. */
export function parseListen(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value.trim());
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `--listen "${value}" is not host:port like ${defaultListen} (port 0 picks a free one)`);
  }
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

function listenError(err: unknown, listen: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') {
    return new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `${listen} is already in use (is another \`isthmus dash\` running?). Choose another address with --listen, e.g. --listen 127.0.0.1:0 for any free port.`, { cause: err });
  }
  if (code === 'EADDRNOTAVAIL' || code === 'EACCES' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `cannot listen on ${listen} (${code}): pass an address of this machine and a port you may use with --listen, e.g. --listen ${defaultListen}.`, { cause: err });
  }
  return err;
}

/** The address a browser on this machine dials: a wildcard listen is reached through loopback. */
function pageUrl(scheme: 'http' | 'https', host: string, port: number): string {
  const dial = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `${scheme}://${dial.includes(':') ? `[${dial}]` : dial}:${port}/`;
}

function openInBrowser(url: string): string {
  const opener = process.platform === 'darwin' ? 'open' : 'xdg-open';
  const path = onPath(opener);
  if (!path) return `--open: ${opener} is not installed here; open ${url} in a browser yourself.`;
  const child = spawn(path, [url], { detached: true, stdio: 'ignore' });
  child.on('error', () => undefined);
  child.unref();
  return `Opening ${url} with ${opener}.`;
}

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
