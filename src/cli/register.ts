import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { checkName } from '../core/names.js';
import { parseDuration } from '../core/validate.js';
import { loadClusterConfig } from '../federation/config.js';
import { liveTokens, updateRegistry } from '../federation/registry-file.js';
import { workloadId } from '../trust/spiffe.js';
import { defaultTokenTtl, issueToken } from '../trust/tokens.js';
import { action, outputOption } from './common.js';
import { printJson } from './output.js';

interface RegisterOptions { namespace: string; config: string; address?: string; zone?: string; serviceAccount?: string; protocol?: string; label: string[]; tokenTtl: string; output: string }

export function registerRegister(program: Command): void {
  program.command('register')
    .description('add an instance of a service on the local platform, and issue the bootstrap token its sidecar uses to get a certificate')
    .argument('<service>', 'service name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .requiredOption('-c, --config <file>', 'the cluster.yaml of the cluster the instance runs in')
    .option('--address <host:port>', 'where the instance (its sidecar\'s inbound listener) listens; leave out for a client-only workload, which only needs a token')
    .option('--zone <zone>', 'zone of the instance (default: the cluster\'s first zone)')
    .option('--service-account <sa>', 'identity of the instance (default: the service name)')
    .option('--protocol <http|tcp>', 'what the service speaks on its port, like Kubernetes appProtocol: http (the default) or tcp (reached through TCP listeners, docs/sidecar.md)')
    .option('--label <key=value>', 'an instance label, e.g. version=v2 (repeat for more); a ServiceSubset selects instances by them (docs/traffic-policy.md)', (value: string, all: string[]) => [...all, value], [] as string[])
    .option('--token-ttl <duration>', 'how long the bootstrap token is accepted (it buys one certificate, so only until the sidecar first starts)', defaultTokenTtl)
    .addOption(outputOption())
    .action(action(async (service: string, opts: RegisterOptions) => {
      checkName('service', service);
      checkName('namespace', opts.namespace);
      const serviceAccount = checkName('service account', opts.serviceAccount ?? service);
      if (opts.address !== undefined && !/^[^:\s]+:[0-9]{1,5}$/.test(opts.address)) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `--address "${opts.address}" is not host:port`);
      if (opts.protocol !== undefined && opts.protocol !== 'http' && opts.protocol !== 'tcp') throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `--protocol "${opts.protocol}" is not http or tcp`);
      if (opts.protocol !== undefined && opts.address === undefined) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', '--protocol describes the port of an instance: give --address too');
      const labels = parseLabels(opts.label ?? []);
      if (Object.keys(labels).length > 0 && opts.address === undefined) throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', '--label describes an instance: give --address too');
      const loaded = loadClusterConfig(opts.config);
      const zone = opts.zone ?? loaded.config.zones[0] ?? 'default';
      if (!loaded.config.zones.includes(zone)) {
        throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `zone "${zone}" is not a zone of cluster ${loaded.config.cluster} (${loaded.config.zones.join(', ')})`);
      }
      const identity = workloadId(loaded.config.trustDomain, opts.namespace, serviceAccount);
      const now = new Date();
      const { token, record } = issueToken({ identity, ttlSeconds: parseDuration(opts.tokenTtl), now });
      updateRegistry(loaded.dir, (registry) => ({
        version: 1,
        instances: opts.address === undefined ? registry.instances : [
          ...registry.instances.filter((i) => !(i.address === opts.address && i.namespace === opts.namespace && i.service === service)),
          {
            namespace: opts.namespace, service, serviceAccount, address: opts.address, zone, registeredAt: now.toISOString(),
            // The export record carries it to every cluster (the catalog's ports); without it, http.
            ...(Object.keys(labels).length === 0 ? {} : { labels }),
            ...(opts.protocol === undefined ? {} : { ports: [{ port: Number(opts.address.slice(opts.address.lastIndexOf(':') + 1)), protocol: opts.protocol }] }),
          },
        ],
        // Only the hash is kept; expired tokens are dropped while we are here.
        tokens: [...liveTokens(registry.tokens, now), record],
      }));
      const result = { cluster: loaded.config.cluster, namespace: opts.namespace, service, address: opts.address ?? null, zone, protocol: opts.address === undefined ? null : (opts.protocol ?? 'http'), labels, identity, token, tokenExpiresAt: record.expiresAt };
      if (opts.output === 'json') return printJson(result);
      process.stdout.write([
        opts.address === undefined
          ? `Issued a token for ${opts.namespace}/${service} in cluster ${loaded.config.cluster} (no instance registered: a client-only workload).`
          : `Registered ${opts.namespace}/${service} at ${opts.address} (zone ${zone}${opts.protocol === 'tcp' ? ', protocol tcp' : ''}) in cluster ${loaded.config.cluster}.`,
        `Identity: ${identity}`,
        `Bootstrap token (shown once, valid until ${record.expiresAt}):`,
        `  ${token}`,
        '',
      ].join('\n'));
    }));

  program.command('deregister')
    .description('remove an instance of a service from the local platform')
    .argument('<service>', 'service name')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .requiredOption('-c, --config <file>', 'the cluster.yaml of the cluster the instance runs in')
    .requiredOption('--address <host:port>', 'the instance to remove')
    .addOption(outputOption())
    .action(action(async (service: string, opts: RegisterOptions) => {
      const loaded = loadClusterConfig(opts.config);
      let removed = 0;
      updateRegistry(loaded.dir, (registry) => {
        const instances = registry.instances.filter((i) => !(i.address === opts.address && i.namespace === opts.namespace && i.service === service));
        removed = registry.instances.length - instances.length;
        return { ...registry, instances };
      });
      if (removed === 0) {
        throw new IsthmusError('ISTHMUS_ERR_SERVICE_UNKNOWN', `no registered instance of ${opts.namespace}/${service} at ${opts.address} in cluster ${loaded.config.cluster}`);
      }
      if (opts.output === 'json') return printJson({ namespace: opts.namespace, service, address: opts.address, removed: true });
      process.stdout.write(`Removed ${opts.namespace}/${service} at ${opts.address} from cluster ${loaded.config.cluster}.\n`);
    }));
}

/** `--label version=v2 --label track=canary` → {version: "v2", track: "canary"}; names as Kubernetes label keys, values up to 63 characters. */
export function parseLabels(flags: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    const key = eq < 0 ? flag : flag.slice(0, eq);
    const value = eq < 0 ? '' : flag.slice(eq + 1);
    if (eq < 0 || !/^[A-Za-z0-9]([-A-Za-z0-9_./]{0,61}[A-Za-z0-9])?$/.test(key) || !/^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/.test(value)) {
      throw new IsthmusError('ISTHMUS_ERR_CONFIG_INVALID', `--label "${flag}" is not key=value (letters, digits, '-', '_', '.'; a value of at most 63 characters)`);
    }
    labels[key] = value;
  }
  return labels;
}
