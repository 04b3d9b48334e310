import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { withStore } from '../cli/common.js';
import { defaultHeapTrim } from '../core/heap-trim.js';
import { keys, recordVersion } from '../core/keys.js';
import { etcdFlags, startDevMesh, type DevMesh, type MeshFile } from '../dev/dev-mesh.js';
import { requestThrough } from '../dev/traffic-generator.js';
import { updateRegistry } from '../federation/registry-file.js';
import { loadedModules, parseProcStatus } from './loaded-modules.js';
import { processCpuSeconds } from './proc-cpu.js';
import { type RssByMapping, readRssByMapping } from './smaps.js';
import { startNodeFloor } from './node-floor-process.js';
import { writePeerCertificates } from './peer-certs.js';

/**
 * `node dist/bench/memory.js [--services 1000] [-o json]`: what a sidecar process costs in
 * memory. Bare Node, the sidecar's module graph alone, then a real `isthmus sidecar` process
 * (the east client sidecar of a two-cluster `dev up --processes` mesh on loopback) with the
 * sample catalog and again after `--services` more services were registered and exported the
 * way `isthmus register` and `isthmus export` do it (half in each cluster, so the sidecar holds
 * both local and remote routes), and after a churn of one service's export withdrawn and put back
 * twenty times (with the sidecar's CPU per change). Memory is the process's VmRSS and VmHWM from /proc. Beside each
 * reading of the sidecar stands the Node floor's at the same step: a minimal mutual-TLS proxy of
 * node:http and node:https, started in the same run (node-floor.ts), so "over the floor" is what
 * Isthmus holds beyond what any Node process doing this job holds.
 */
const usage = `usage: node dist/bench/memory.js [options]   (npm run bench:memory -- [options])
What one sidecar process costs in memory: bare node, its module graph, a minimal Node mutual-TLS
proxy as the floor, and a running sidecar of a two-cluster dev mesh before and after --services
more services are exported, each reading beside the floor's at the same step, and after twenty
catalog changes of one service each (with the sidecar's CPU per change).
  --services <n>        services registered and exported on top of the samples (default 1000; 0..5000)
  --requests <n>        GETs sent through the sidecar before each "after requests" reading (default 400)
  --export-batch <n>    services exported per etcd transaction, 1..50 (default 50; 1 is how
                        \`isthmus export\` delivers them, one change at a time)
  --host-base <n>       the dev mesh's clusters on 127.0.<n>.1 and 127.0.<n+1>.1 (default 80)
  -o, --output table|json
  -h, --help`;

function parseMemoryArgs(): { services: number; requests: number; exportBatch: number; hostBase: number; output: 'table' | 'json' } {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        services: { type: 'string', default: '1000' },
        requests: { type: 'string', default: '400' },
        'export-batch': { type: 'string', default: '50' },
        'host-base': { type: 'string', default: '80' },
        output: { type: 'string', short: 'o', default: 'table' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`bench memory: ${(err as Error).message}\n${usage}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const integer = (name: string, min: number, max: number) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min || n > max) {
      process.stderr.write(`bench memory: --${name} must be an integer from ${min} to ${max}, not "${String(values[name])}"\n${usage}\n`);
      process.exit(2);
    }
    return n;
  };
  if (values.output !== 'table' && values.output !== 'json') {
    process.stderr.write(`bench memory: --output must be "table" or "json", not "${String(values.output)}"\n${usage}\n`);
    process.exit(2);
  }
  return {
    services: integer('services', 0, 5000), requests: integer('requests', 0, 100_000), exportBatch: integer('export-batch', 1, 50),
    hostBase: integer('host-base', 1, 250), output: values.output,
  };
}

const args = parseMemoryArgs();
const extraServices = args.services;
const requestCount = args.requests;
const exportBatch = args.exportBatch;
const say = (line: string) => process.stderr.write(`${line}\n`);
// hello's namespace: the new services' instances answer at a hello sidecar, whose certificate
// names ns/demo/sa/hello, and a route expects the identity of the instance's service account in
// the service's namespace (in another namespace every request failed that check: 503).
const namespace = 'demo';
/** The churn step: how many catalog changes, and how far apart. */
const churnChanges = 20;
const churnEveryMs = 500;

interface MemoryRow {
  what: string;
  services: number | null;
  rssMb: number;
  peakRssMb: number;
  /** For a running sidecar's reading: the Node floor's RSS at the same step (see nodeFloor). */
  floorRssMb?: number;
  /** For a live process's reading: its private pages (USS) and PSS, from smaps (src/bench/smaps.ts). */
  privateMb?: number;
  pssMb?: number;
  note: string;
}

const mb = (kb: number) => Math.round(kb / 102.4) / 10;

interface ProcMemory { rssKb: number; hwmKb: number; parts: RssByMapping }

function procMemory(pid: number): ProcMemory {
  return { ...parseProcStatus(readFileSync(`/proc/${pid}/status`, 'utf8')), parts: readRssByMapping(pid) };
}

/** A reading's private pages and PSS, for the table's columns. */
function shares(m: ProcMemory): { privateMb: number; pssMb: number } {
  return { privateMb: mb(m.parts.privateKb), pssMb: mb(m.parts.pssKb) };
}

/** Where a reading's RSS is: the node binary's pages are the same in every node process on a host. */
function mappingNote(parts: RssByMapping): string {
  return `RSS by mapping MB: node binary ${mb(parts.nodeBinaryKb)}, other files ${mb(parts.otherFilesKb)}, malloc heap ${mb(parts.mallocHeapKb)}, anonymous ${mb(parts.anonymousKb)}`;
}

/**
 * V8's heap spaces as the sidecar's own /metrics reports them (committed MB of the new, old,
 * code and large-object spaces): which of them a reading's RSS is in.
 */
async function heapSpaces(admin: string): Promise<string> {
  try {
    const text = await (await fetch(`http://${admin}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    const space = (name: string) => {
      const bytes = Number(new RegExp(`nodejs_heap_space_size_total_bytes\\{space="${name}"\\} (\\d+)`).exec(text)?.[1]);
      return Number.isFinite(bytes) ? (bytes / 2 ** 20).toFixed(1) : '?';
    };
    return `V8 spaces committed MB: new ${space('new')}, old ${space('old')}, code ${space('code')}, large objects ${space('large_object')}`;
  } catch (err) {
    return `V8 spaces: /metrics did not answer (${(err as Error).message})`;
  }
}

/** The pid of the process listening on host:port (IPv4), found through /proc/net/tcp and the fds of our own processes. */
function pidListeningOn(address: string): number {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  const hexHost = host.split('.').map((b) => Number(b).toString(16).padStart(2, '0').toUpperCase()).reverse().join('');
  const local = `${hexHost}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
  const line = readFileSync('/proc/net/tcp', 'utf8').split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[1] === local && f[3] === '0A');
  const inode = line?.[9];
  if (!inode) throw new Error(`nothing listens on ${address}`);
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return Number(pid);
      } catch {
        // closed meanwhile
      }
    }
  }
  throw new Error(`no process of ours holds the socket listening on ${address}`);
}

/**
 * Services in the catalog the sidecar last accepted, read from the copy it saves in its state
 * dir: asking its admin /routes instead would make it explain a thousand routes every second
 * and so change what is measured.
 */
function catalogSize(stateDir: string): number {
  try {
    const saved = JSON.parse(readFileSync(join(stateDir, 'catalog.json'), 'utf8')) as { services?: unknown[] };
    return saved.services?.length ?? 0;
  } catch {
    return 0;
  }
}

/** Waits until the sidecar's catalog holds `atLeast` services; at the deadline, measures what arrived (the row says how many). */
async function waitForCatalog(stateDir: string, atLeast: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let size = 0;
  while (Date.now() < deadline) {
    size = catalogSize(stateDir);
    if (size >= atLeast) return size;
    await sleep(1000);
  }
  if (size === 0) throw new Error(`the sidecar's catalog is still empty after ${timeoutMs / 1000} s`);
  say(`  only ${size} of ${atLeast} services arrived within ${timeoutMs / 1000} s; measuring with those`);
  return size;
}

/** `count` GETs through the proxy, `concurrency` at a time, round robin over `urls`; the statuses seen. */
async function send(proxy: string, urls: string[], count: number, concurrency = 8): Promise<Record<string, number>> {
  const statuses: Record<string, number> = {};
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      const url = urls[next % urls.length] as string;
      next += 1;
      const status = await requestThrough(proxy, url, 5000);
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  }));
  return statuses;
}

interface FloorReadings {
  atRest: ProcMemory;
  afterSamples: ProcMemory;
  afterMany?: ProcMemory;
  statuses: Record<string, number>;
}

/**
 * The Node floor, read at the same steps as the sidecar: a minimal mutual-TLS proxy of node:http
 * and node:https (dist/bench/node-floor.js) in front of a second such process, with certificates
 * from our own CA. At rest 5 s after 8 GETs (warmed, as a sidecar is); after `requests` GETs to
 * two names; and, when the sidecar gets requests to `manyNames` more services, after the same
 * requests to as many names (one TLS connection each, as the sidecar has one per remote
 * service's SNI).
 */
async function nodeFloor(hostBase: number, requests: number, manyNames: string[]): Promise<FloorReadings> {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-bench-floor-'));
  const children: ChildProcess[] = [];
  try {
    const certs = writePeerCertificates(join(dir, 'certs'), {
      trustDomain: 'bench.isthmus', namespace, clientCluster: 'east', inbounds: [{ service: 'floor-upstream', cluster: 'west', sniName: 'floor-upstream' }],
    });
    const upstreamCert = certs.inbound['floor-upstream'] as { certChain: string; key: string };
    const host = `127.0.${hostBase}.250`;
    const upstream = await startNodeFloor(['--role', 'upstream', '--host', host, '--ca', certs.rootCa, '--cert', upstreamCert.certChain, '--key', upstreamCert.key]);
    children.push(upstream.child);
    const proxy = await startNodeFloor(['--role', 'proxy', '--host', host, '--ca', certs.rootCa, '--cert', certs.outbound.certChain, '--key', certs.outbound.key, '--upstream', upstream.inbound]);
    children.push(proxy.child);
    const pid = proxy.child.pid as number;
    const samples = ['http://hello.demo.mesh/', 'http://ledger.demo.mesh/'];
    // A few requests first, as a sidecar warms its TLS and HTTP paths before it is measured at rest.
    const statuses: Record<string, number> = {};
    const sendCounted = async (urls: string[], count: number) => {
      for (const [status, n] of Object.entries(await send(proxy.outbound as string, urls, count))) statuses[status] = (statuses[status] ?? 0) + n;
    };
    await sendCounted(samples, 8);
    await sleep(5000);
    const atRest = procMemory(pid);
    await sendCounted(samples, requests);
    const afterSamples = procMemory(pid);
    let afterMany: FloorReadings['afterMany'];
    if (manyNames.length > 0) {
      await sendCounted([...samples, ...manyNames.map((n) => `http://${n}.${namespace}.mesh/`)], requests);
      afterMany = procMemory(pid);
    }
    return { atRest, afterSamples, afterMany, statuses };
  } finally {
    for (const child of children) child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? dirBytes(path) : statSync(path).size;
  }
  return total;
}

async function main(): Promise<void> {
  const rows: MemoryRow[] = [];
  say('module graphs (a fresh node each) ...');
  const bare = await loadedModules('bare', { trace: false });
  rows.push({ what: 'bare node', services: null, rssMb: mb(bare.rssKb), peakRssMb: mb(bare.hwmKb), note: `node ${process.version}` });
  const graph = await loadedModules('sidecar', { trace: false });
  const traced = await loadedModules('sidecar');
  rows.push({
    what: 'sidecar module graph', services: null, rssMb: mb(graph.rssKb), peakRssMb: mb(graph.hwmKb),
    note: `imported, not started, with the V8 flags bin/isthmus.js sets for a sidecar; heap used ${(graph.heapUsedBytes / 1048576).toFixed(1)} MB, new space ${(graph.newSpaceBytes / 1048576).toFixed(1)} MB; ${traced.modules.length} modules; packages: ${traced.packages.join(' ')}`,
  });

  say('the Node floor: a minimal mutual-TLS proxy of node:http and node:https, read at the same steps ...');
  const floorNames = Array.from({ length: Math.min(extraServices, 100) }, (_, i) => `svc-${String(i).padStart(4, '0')}`);
  const floor = await nodeFloor(args.hostBase, requestCount, floorNames);
  const floorRow = (what: string, m: ProcMemory, note: string) => rows.push({ what, services: null, rssMb: mb(m.rssKb), peakRssMb: mb(m.hwmKb), ...shares(m), note: `${note}; ${mappingNote(m.parts)}` });
  floorRow('Node floor, at rest', floor.atRest, 'dist/bench/node-floor.js: plain HTTP in, mutual TLS out and in, 1 KiB answers, nothing of Isthmus; 5 s after 8 GETs');
  floorRow('Node floor, after requests', floor.afterSamples, `${requestCount} GETs to 2 names`);
  if (floor.afterMany) floorRow('Node floor, after requests', floor.afterMany, `${requestCount} more GETs to ${floorNames.length + 2} names (a TLS connection per name); statuses ${JSON.stringify(floor.statuses)}`);

  const stateDir = mkdtempSync(join(tmpdir(), 'isthmus-bench-memory-'));
  let mesh: DevMesh | undefined;
  try {
    say(`a two-cluster dev mesh, one process per proxy, state in ${stateDir} ...`);
    mesh = await startDevMesh({
      clusters: ['east', 'west'], stateDir, trustDomain: 'bench.isthmus', hostBase: args.hostBase, processes: true,
      progress: (line) => say(line),
    });
    const file = JSON.parse(readFileSync(join(stateDir, 'mesh.json'), 'utf8')) as MeshFile;
    const east = file.clusters.east as MeshFile['clusters'][string];
    const pid = pidListeningOn(east.client.admin);
    const clientState = join(stateDir, 'sidecars', 'east', 'client');
    const sampleUrls = ['http://hello.demo.mesh/', 'http://ledger.demo.mesh/'];
    const measure = async (what: string, services: number, note: string, floorReading?: { rssKb: number }) => {
      const m = procMemory(pid);
      const where = mappingNote(m.parts);
      // Read after the RSS, so that the scrape's own garbage is not in it.
      const spaces = await heapSpaces(east.client.admin);
      rows.push({ what, services, rssMb: mb(m.rssKb), peakRssMb: mb(m.hwmKb), ...(floorReading ? { floorRssMb: mb(floorReading.rssKb) } : {}), ...shares(m), note: `${note}; ${where}; ${spaces}` });
      say(`  ${what}: ${services} services, RSS ${mb(m.rssKb)} MB, peak ${mb(m.hwmKb)} MB; ${where}; ${spaces}`);
    };

    const sampleCatalog = await waitForCatalog(clientState, 1, 30_000);
    await sleep(5000);
    await measure('sidecar running, catalog arrived', sampleCatalog, `pid ${pid}; state dir ${dirBytes(clientState)} bytes`, floor.atRest);
    const before = await send(east.client.proxy, sampleUrls, requestCount);
    await measure('sidecar running, after requests', sampleCatalog, `${requestCount} GETs to hello and ledger: ${JSON.stringify(before)}`, floor.afterSamples);

    if (extraServices > 0) {
      say(`registering and exporting ${extraServices} services, ${exportBatch} per transaction ...`);
      const names = Array.from({ length: extraServices }, (_, i) => `svc-${String(i).padStart(4, '0')}`);
      const clusterOf = (i: number) => (i % 2 === 0 ? 'east' : 'west');
      const now = new Date().toISOString();
      for (const cluster of ['east', 'west']) {
        const info = file.clusters[cluster] as MeshFile['clusters'][string];
        // Each at the address of the cluster's first hello instance's sidecar, with its service
        // account: reachable, and answering with the identity the route expects.
        const address = mesh.workloads.find((w) => w.spec.cluster === cluster && w.spec.service === 'hello')?.inbound as string;
        updateRegistry(join(stateDir, 'clusters', cluster), (registry) => ({
          ...registry,
          instances: [...registry.instances, ...names.filter((_, i) => clusterOf(i) === cluster).map((name) => ({
            namespace, service: name, serviceAccount: 'hello', address, zone: info.zones[0] as string, registeredAt: now,
          }))],
        }));
      }
      const started = Date.now();
      await withStore(etcdFlags(file.etcd, file.etcdTls), async (store) => {
        // What `isthmus export` writes, `exportBatch` services a transaction (etcd allows 128 operations in one).
        for (let from = 0; from < names.length; from += exportBatch) {
          const batch = names.slice(from, from + exportBatch).map((name, i) => keys.serviceExport(clusterOf(from + i), namespace, name));
          await store.transact({ ifAbsent: batch, puts: batch.map((key) => ({ key, value: { version: recordVersion, exportedAt: now } })) });
        }
      });
      say(`  registered and exported in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      const bigCatalog = await waitForCatalog(clientState, sampleCatalog + extraServices, 300_000);
      say(`  the sidecar's catalog has ${bigCatalog} services, ${((Date.now() - started) / 1000).toFixed(1)} s after the first export`);
      // At rest means after the heap trim the last catalog asked for. It runs settleMs after the
      // request, but never within minIntervalMs of the one before, which an earlier batch of the
      // same export may have run: read 5 s after the catalog, one run of 2026-12-05 caught the
      // garbage before its trim (76.2 MB, against 62.8-65.4 in the runs around it).
      await sleep(defaultHeapTrim.minIntervalMs + defaultHeapTrim.settleMs + 1000);
      await measure('sidecar running, catalog arrived', bigCatalog, `state dir ${dirBytes(clientState)} bytes`, floor.atRest);
      const bulkUrls = names.slice(0, 100).map((n) => `http://${n}.${namespace}.mesh/`);
      const after = await send(east.client.proxy, [...sampleUrls, ...bulkUrls], requestCount);
      await measure('sidecar running, after requests', bigCatalog, `${requestCount} GETs to hello, ledger and 100 of the new services: ${JSON.stringify(after)}`, floor.afterMany);
      // Churn: one service's export withdrawn and put back, `churnChanges` times, each a catalog
      // change of one service among a thousand. The sidecar's CPU over it, less what it spent at
      // rest over as long, is what a change costs it; its RSS after says what the changes left.
      // The churned service is east's, so east's gateway gets each change to its routing table too.
      const churned = keys.serviceExport(clusterOf(0), namespace, names[0] as string);
      const gatewayPid = pidListeningOn(mesh.gateways.find((g) => g.cluster === clusterOf(0))!.address);
      const cpuOf = () => [processCpuSeconds(pid), processCpuSeconds(gatewayPid)] as const;
      const idleCpu = cpuOf();
      await sleep(churnChanges * churnEveryMs);
      const idle = cpuOf().map((cpu, i) => cpu - idleCpu[i]!);
      const churnCpu = cpuOf();
      await withStore(etcdFlags(file.etcd, file.etcdTls), async (store) => {
        for (let i = 0; i < churnChanges; i += 1) {
          if (i % 2 === 0) await store.delete(churned);
          else await store.put(churned, { version: recordVersion, exportedAt: now });
          await sleep(churnEveryMs);
        }
        // Back as it was, and the last change taken.
        if (churnChanges % 2 === 1) await store.put(churned, { version: recordVersion, exportedAt: now });
      });
      await waitForCatalog(clientState, bigCatalog, 30_000);
      await sleep(2000);
      const [sidecarMs, gatewayMs] = cpuOf().map((cpu, i) => ((cpu - churnCpu[i]! - idle[i]!) * 1000) / churnChanges);
      await measure('sidecar running, catalog churn', bigCatalog, `${churnChanges} changes of one service, one every ${churnEveryMs} ms: ${sidecarMs!.toFixed(1)} ms of CPU per change (over ${(idle[0]! * 1000).toFixed(0)} ms at rest in as long); east's gateway, whose routing table changed with it, ${gatewayMs!.toFixed(1)} ms (over ${(idle[1]! * 1000).toFixed(0)} ms)`);
      // After the last reading, so that it does not count: how long explaining every route takes.
      const explainStarted = Date.now();
      const explained = await fetch(`http://${east.client.admin}/routes`, { signal: AbortSignal.timeout(60_000) }).then(async (res) => ((await res.json()) as { services: unknown[] }).services.length, () => 0);
      const explainMs = Date.now() - explainStarted;
      say(`  admin /routes explained ${explained} routes in ${explainMs} ms`);
      rows.push({ what: 'admin /routes of every service', services: explained, rssMb: mb(procMemory(pid).rssKb), peakRssMb: mb(procMemory(pid).hwmKb), note: `answered in ${explainMs} ms (RSS read after it)` });
    }
  } finally {
    await mesh?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }

  if (args.output === 'json') {
    process.stdout.write(`${JSON.stringify({ rows }, null, 2)}\n`);
    return;
  }
  const header = ['what', 'services', 'RSS MB', 'peak RSS MB', 'over the floor MB', 'private MB', 'PSS MB'];
  const overFloor = (r: MemoryRow) => (r.floorRssMb === undefined ? '—' : `${r.rssMb >= r.floorRssMb ? '+' : ''}${(r.rssMb - r.floorRssMb).toFixed(1)}`);
  const share = (value: number | undefined) => (value === undefined ? '—' : value.toFixed(1));
  const lines = rows.map((r) => [r.what, r.services === null ? '—' : String(r.services), r.rssMb.toFixed(1), r.peakRssMb.toFixed(1), overFloor(r), share(r.privateMb), share(r.pssMb)]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
  const format = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  process.stdout.write(`${[format(header), ...lines.map(format)].join('\n')}\n\n${rows.map((r) => `${r.what} (${r.services ?? '—'}): ${r.note}`).join('\n')}\n`);
}

main().then(() => process.exit(0), (err: unknown) => {
  say(`bench memory: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
