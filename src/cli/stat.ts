import type { Command } from 'commander';
import { IsthmusError } from '../core/errors.js';
import { action, etcdOption, outputOption, withStore, type EtcdFlags } from './common.js';
import { liveOverview } from './dashboard-client.js';
import { printJson, printTable } from './output.js';
import { operatorOptions } from './operator.js';
import type { OperatorFlags } from '../trust/operator-files.js';

interface StatOptions extends OperatorFlags, EtcdFlags { output: string; pairs?: boolean; from?: string }

const num = (v: number | null | undefined, digits = 2) => (v === null || v === undefined ? '-' : v.toFixed(digits));

/** Each destination cluster's share (of requests, or of a TCP service's connections), or "-". */
const servedFrom = (t: { servedFrom: { cluster: string; share: number }[] } | null | undefined) =>
  (t && t.servedFrom.length > 0 ? t.servedFrom.map((x) => `${x.cluster} ${Math.round(x.share * 100)}%`).join(', ') : '-');

/** Bytes per second as people read them: 812 B, 12.4 kB, 3.1 MB (powers of 1000, as ss and curl print). */
export function bytes(perSecond: number): string {
  if (perSecond < 1000) return `${Math.round(perSecond)} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = perSecond / 1000;
  let unit = 0;
  while (v >= 1000 && unit < units.length - 1) {
    v /= 1000;
    unit += 1;
  }
  return `${v.toFixed(1)} ${units[unit]}`;
}

export function registerStat(program: Command): void {
  operatorOptions(program.command('stat'))
    .description('request rate, success and latency of every service over the last minute, and the connections and bytes of TCP services, from the sidecars\' reports (as the dashboard shows them)')
    .option('--pairs', 'show source → destination cluster pairs (real traffic and gateway probes) instead of services')
    .option('--from <cluster>', 'ask this cluster\'s federation first (any federation sees the whole mesh)')
    .addOption(etcdOption())
    .addOption(outputOption())
    .addHelpText('after', `
Every federation keeps the sidecars' request counters of every cluster (etcd /traffic/<cluster>);
this asks one of them. The numbers cover the last 60 s (less just after a federation starts).
TCP services (a port exported with protocol tcp) get a table of their own: connections per
second through the callers' fixed listeners, the share established, those open now, and the
bytes the callers sent and received per second (open connections counted as bytes move).

Examples:
  isthmus stat
  isthmus stat --pairs
  isthmus stat --output json | jq '.services[] | select(.traffic.successPercent < 99.9)'`)
    .action(action(async (opts: StatOptions) => {
      const live = await withStore(opts, (store) => liveOverview(store, opts.from, undefined, opts));
      if (!live) {
        throw new IsthmusError('ISTHMUS_ERR_API_UNREACHABLE', 'no federation dashboard answered: is a federation service running (`isthmus clusters` shows which are alive)? Its alive record names its dashboard port (15014)');
      }
      const { overview } = live;
      if (opts.output === 'json') {
        return printJson({
          servedBy: overview.servedBy, generatedAt: overview.generatedAt, windowSeconds: overview.traffic.windowSeconds,
          ...(opts.pairs ? { pairs: overview.traffic.pairs, probes: overview.probes } : { services: overview.services.map((s) => ({ namespace: s.namespace, name: s.name, protocols: s.protocols, traffic: s.traffic, tcp: s.tcp, clusters: s.clusters })) }),
        });
      }
      if (opts.pairs) {
        const probes = new Map(overview.probes.map((p) => [`${p.from}→${p.to}`, p]));
        const keys = [...new Set([...overview.traffic.pairs.map((p) => `${p.from}→${p.to}`), ...probes.keys()])].sort();
        const traffic = new Map(overview.traffic.pairs.map((p) => [`${p.from}→${p.to}`, p]));
        printTable(['FROM', 'TO', 'RPS', 'SUCCESS', 'P50 MS', 'P99 MS', 'PROBE P50', 'PROBE P99'], keys.map((k) => {
          const [from = '', to = ''] = k.split('→');
          const t = traffic.get(k);
          const p = probes.get(k);
          return [from, to, num(t?.rps), t?.successPercent === null || !t ? '-' : `${num(t.successPercent, 1)}%`, num(t?.p50Ms), num(t?.p99Ms), num(p?.p50Ms), num(p?.p99Ms)];
        }), '(no traffic and no probes yet)');
      } else {
        printTable(['SERVICE', 'SERVED FROM', 'RPS', 'SUCCESS', 'P50 MS', 'P99 MS', 'HEALTHY'], overview.services.map((s) => {
          const t = s.traffic;
          return [
            `${s.namespace}/${s.name}`,
            servedFrom(t ?? s.tcp),
            num(t?.rps), t && t.successPercent !== null ? `${num(t.successPercent, 1)}%` : '-', num(t?.p50Ms), num(t?.p99Ms),
            s.clusters.map((c) => `${c.cluster} ${c.healthy}/${c.total}`).join(', '),
          ];
        }), '(no services)');
        // TCP services (a port declared protocol: tcp, or connections seen): connections and bytes, not requests.
        const tcp = overview.services.filter((s) => s.tcp || s.protocols.includes('tcp'));
        if (tcp.length > 0) {
          console.log('');
          printTable(['TCP SERVICE', 'SERVED FROM', 'CONN/S', 'ESTABLISHED', 'OPEN', 'SENT/S', 'RECEIVED/S'], tcp.map((s) => {
            const t = s.tcp;
            return [
              `${s.namespace}/${s.name}`,
              servedFrom(t),
              num(t?.connectionsPerSecond), t && t.successPercent !== null ? `${num(t.successPercent, 1)}%` : '-', t ? String(t.open) : '-',
              t ? bytes(t.sentBytesPerSecond) : '-', t ? bytes(t.receivedBytesPerSecond) : '-',
            ];
          }));
        }
      }
      process.stdout.write(`\nlast ${overview.traffic.windowSeconds} s, from the federation of ${live.from}\n`);
    }));
}
