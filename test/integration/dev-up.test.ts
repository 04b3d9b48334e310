import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, expect, test } from 'vitest';
import { etcdArgs, etcdEnv } from '../helpers/etcd.js';
import { isPortListening } from '../helpers/ports.js';
import { apiClient, isthmus, isthmusBin, isthmusOk, waitFor } from '../helpers/cli.js';
import { testOperator } from '../helpers/mesh.js';
import { viaProxy } from '../helpers/proxy.js';

const execFileAsync = promisify(execFile);

const stateDir = mkdtempSync(join(tmpdir(), 'isthmus-devup-'));
// Its own host base (east 127.0.241.1, west 127.0.242.1), so it does not collide with a user's
// `isthmus dev up` on the default addresses.
const hostBase = '241';
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

test('`isthmus dev up` starts a working mesh with hello v1 and v2, writes mesh.json, its canary walkthrough works, and SIGTERM stops everything including etcd', async () => {
  const child = spawn(process.execPath, [isthmusBin, 'dev', 'up', '--clusters', 'east,west', '--state-dir', stateDir, '--host-base', hostBase, '--access-log'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => { output += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { output += c.toString(); });
  try {
    await waitFor(async () => output.includes('Press Ctrl-C'), 90_000, `dev up to finish starting; output so far:\n${output}`);
    expect(output).toMatch(/✓ etcd: https:\/\/127\.0\.0\.1:\d+/);
    expect(output).toMatch(/✓ cluster west federation: https:\/\/127\.0\.242\.1:15010/);
    const mesh = JSON.parse(readFileSync(join(stateDir, 'mesh.json'), 'utf8'));
    expect(Object.keys(mesh.clusters)).toEqual(['east', 'west']);
    expect(mesh.clusters.east.federation).toBe('127.0.241.1:15010');
    for (const cluster of ['east', 'west']) {
      expect(mesh.clusters[cluster].services.filter((s: any) => s.name.startsWith('hello')).map((s: any) => `${s.name}:${s.instances.length}`)).toEqual(['hello:2', 'hello-v1:1', 'hello-v2:1']);
    }

    // What a user sees: both clusters alive, hello (and its versions) from both, ledger, redis (TCP) and grpc-echo (gRPC) from west only.
    await waitFor(async () => {
      const services = JSON.parse((await isthmusOk(['services', '-o', 'json', ...etcdArgs(mesh)])).stdout).services;
      const where = services.map((s: any) => `${s.name}@${s.clusters.map((c: any) => `${c.cluster}:${c.zones.reduce((n: number, z: any) => n + z.healthy, 0)}`).join(',')}`);
      return JSON.stringify([...where].sort()) === JSON.stringify(['grpc-echo@west:1', 'hello-v1@east:1,west:1', 'hello-v2@east:1,west:1', 'hello@east:2,west:2', 'ledger@west:1', 'redis@west:1']);
    }, 10_000, 'sample services exported and healthy');
    // etcd is locked down: TLS, and a client without a certificate of etcd's CA is refused, saying so.
    const bare = await isthmus(['services', '-o', 'json', '--etcd', mesh.etcd, '--etcd-ca', mesh.etcdTls.ca]);
    expect(JSON.parse(bare.stdout).error).toMatchObject({ code: 'ISTHMUS_ERR_ETCD_TLS_FAILED', message: expect.stringContaining('requires a client certificate') });
    expect(output).toContain(`export ISTHMUS_ETCD_CA=${mesh.etcdTls.ca} ISTHMUS_ETCD_CERT=${mesh.etcdTls.cert} ISTHMUS_ETCD_KEY=${mesh.etcdTls.key}`);
    // dev up issued the local user's operator credential; the API's reads need a mesh certificate.
    const api = apiClient(join(stateDir, 'ca', 'root-cert.pem'), testOperator(join(stateDir, 'operator')).tls);
    const catalog = (await api.get(`https://${mesh.clusters.east.federation}/v1/catalog`)).body;
    await api.close();
    expect(catalog.services.find((s: any) => s.name === 'ledger').clusters.map((c: any) => c.cluster)).toEqual(['west']);

    // What the README promises: curl -x <east client sidecar> reaches ledger in west, hello in east.
    expect(mesh.clusters.east.client.proxy).toBe('127.0.241.1:15001');
    expect(mesh.clusters.west.gateways).toEqual(['127.0.242.1:15443']);
    await waitFor(async () => (await viaProxy(mesh.clusters.east.client.proxy, 'http://ledger.demo.mesh/')).status === 200, 10_000, 'ledger through the mesh');
    const ledger = await viaProxy(mesh.clusters.east.client.proxy, 'http://ledger.demo.mesh/');
    expect(ledger.body).toMatchObject({ service: 'ledger', cluster: 'west', zone: 'west-a', instance: 'ledger-west-1' });
    const hello = await viaProxy(mesh.clusters.east.client.proxy, 'http://hello.demo.mesh/');
    expect(hello.body).toMatchObject({ service: 'hello', cluster: 'east' });
    expect(['v1', 'v2']).toContain(hello.body.version);
    expect(output).toContain('curl -x http://127.0.241.1:15001 http://ledger.demo.mesh/');
    // --access-log: each sidecar writes one beside its log; east's client sidecar has that request, as JSON.
    expect(output).toContain(`Access logs: ${join(stateDir, 'logs')}/*.access.log`);
    const accessLog = join(stateDir, 'logs', 'sidecar-east-client.access.log');
    const { value: logged } = await waitFor(async () => existsSync(accessLog) && readFileSync(accessLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
      .find((r: any) => r.direction === 'outbound' && r.service === 'demo/ledger' && r.status === 200), 10_000, 'the ledger request in east\'s client access log');
    expect(logged).toMatchObject({ kind: 'http', method: 'GET', cluster: 'west', authority: 'ledger.demo.mesh' });
    // The Try list and README.md's set-up and canary blocks name the same commands.
    const command = (line: string) => line.replace(/\s+#\s.*$/, '').trim();
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const readmeBlocks = [readme.indexOf('`npm run dev` prints'), readme.indexOf('### A canary in the first five minutes')]
      .map((at) => /```sh\n([\s\S]*?)```/.exec(readme.slice(at))?.[1] ?? '');
    const readmeCommands = readmeBlocks.join('').split('\n').map(command).filter(Boolean)
      .map((c) => c.replaceAll('127.0.1.1', '127.0.241.1').replaceAll('<the printed etcd>', mesh.etcd).replaceAll('<state dir>', stateDir));
    const tryCommands = output.slice(output.indexOf('Try ('), output.indexOf('Press Ctrl-C')).split('\n')
      .filter((l) => l.startsWith('  ')).map(command);
    expect(tryCommands).toEqual(readmeCommands);
    // The printed WebSocket line, run by a shell in the checkout as a user would: the echo comes back.
    const wsLine = tryCommands.find((c) => c.startsWith('node -e ') && c.includes('ws://'));
    expect(wsLine).toContain(`ws://${mesh.clusters.east.client.listeners['demo/ledger']}/ws`);
    const echoed = await execFileAsync('sh', ['-c', wsLine!], { cwd: fileURLToPath(new URL('../..', import.meta.url)), timeout: 15_000 });
    expect(echoed.stdout.trim()).toBe('hi');
    // And the printed gRPC call: grpc-echo in west answers through east's fixed listener, with the caller's identity.
    const grpcLine = tryCommands.find((c) => c.startsWith('node -e ') && c.includes('@grpc/grpc-js'));
    expect(grpcLine).toContain(`'${mesh.clusters.east.client.listeners['demo/grpc-echo']}'`);
    const called = await execFileAsync('sh', ['-c', grpcLine!], { cwd: fileURLToPath(new URL('../..', import.meta.url)), timeout: 15_000 });
    expect(JSON.parse(called.stdout)).toMatchObject({ message: 'hi', cluster: 'west', caller: expect.stringContaining('URI=spiffe://dev.isthmus/ns/demo/sa/client') });
    // The sample traffic makes gRPC calls too: east's client sidecar counts them by the status they ended with.
    await waitFor(async () => {
      const metrics = await (await fetch(`http://${mesh.clusters.east.client.admin}/metrics`)).text();
      return /^isthmus_grpc_requests_total\{[^}]*destination_service="demo\/grpc-echo",grpc_status="0"\} [1-9]/m.test(metrics);
    }, 20_000, 'sample gRPC calls counted with grpc_status 0');

    const explained = await isthmusOk(['explain', 'ledger', '-n', 'demo', '--from', 'east'], { ...etcdEnv(mesh), ISTHMUS_OPERATOR_DIR: join(stateDir, 'operator') });
    expect(explained.stdout).toMatch(/demo\/ledger as seen from east .*most traffic to P3/);
    expect(explained.stdout).toMatch(/west\/west-a\s+127\.0\.242\.1:15443\s+healthy\s+\(gateway of west, SNI ledger\.demo\.svc\.west\.isthmus\)/);

    // The canary walkthrough, with the commands as printed: 90/10, then blue-green, then delete.
    const printed = (pattern: RegExp) => {
      const found = pattern.exec(output)?.[1];
      if (!found) throw new Error(`no ${pattern} in the output`);
      return found.split(/\s+#/)[0]!.trim().split(/\s+/).slice(1); // drop "isthmus"
    };
    const env = etcdEnv(mesh);

    // The printed trace works with the operator credential dev up issued, through the printed export line.
    const operatorDir = /^ {2}export ISTHMUS_OPERATOR_DIR=(\S+)/m.exec(output)?.[1];
    expect(operatorDir).toBe(join(stateDir, 'operator'));
    const traceArgs = printed(/^ {2}(isthmus trace ledger --from east.*)$/m);
    // A sidecar is listed from its first report, sent as it becomes ready; the wait covers a slow federation.
    const { value: traced } = await waitFor(async () => {
      const res = await isthmus(traceArgs, { ...env, ISTHMUS_OPERATOR_DIR: operatorDir! });
      return res.code === 0 ? res : undefined;
    }, 30_000, 'the printed isthmus trace to answer');
    expect(traced.stdout).toMatch(/gateway/);
    const versions = async (n: number) => {
      const seen: string[] = [];
      for (let i = 0; i < n; i += 1) {
        // An answer without a version says what it was instead, so a failure names its cause.
        const answer = await viaProxy(mesh.clusters.east.client.proxy, 'http://hello.demo.mesh/');
        const body = answer.body as { version?: string; error?: { code?: string } } | undefined;
        seen.push(body?.version ?? `${answer.status} ${body?.error?.code ?? answer.headers['x-isthmus-error'] ?? answer.text.slice(0, 120)}`);
      }
      return seen;
    };
    await isthmusOk(printed(/^ {2}(isthmus policy apply -f \S+hello-canary\.yaml.*)$/m), env);
    await waitFor(async () => (await viaProxy(mesh.clusters.east.client.proxy, 'http://hello.demo.mesh/', 5000, { 'x-user-group': 'beta' })).body?.service === 'hello-v2', 10_000, 'the canary in east');
    const canary = await versions(100);
    expect(canary.filter((v) => v !== 'v1' && v !== 'v2')).toEqual([]);
    // Binomial(100, 0.1): 0 to 25 v2 answers in all but about one run in 10^5.
    expect(canary.filter((v) => v === 'v2').length).toBeLessThanOrEqual(25);
    expect(canary.filter((v) => v === 'v1').length).toBeGreaterThanOrEqual(75);
    await isthmusOk(printed(/^ {2}(isthmus policy apply -f \S+hello-blue-green\.yaml.*)$/m), env);
    await waitFor(async () => ((await versions(10)).every((v) => v === 'v2') ? true : undefined), 10_000, 'blue-green in east');
    expect(new Set(await versions(50))).toEqual(new Set(['v2']));
    await isthmusOk(printed(/^ {2}(isthmus policy delete httproute demo\/hello-canary.*)$/m), env);
    await waitFor(async () => ((await viaProxy(mesh.clusters.east.client.proxy, 'http://hello.demo.mesh/')).body?.service === 'hello' ? true : undefined), 10_000, 'plain hello again');
    const etcdPort = Number(new URL(mesh.etcd).port);

    const code = await new Promise<number | null>((resolve) => {
      child.once('exit', (c) => resolve(c));
      child.kill('SIGTERM');
    });
    expect(code).toBe(0);
    expect(output).toContain('stopped.');
    expect(await isPortListening('127.0.0.1', etcdPort)).toBe(false);
    expect(await isPortListening('127.0.241.1', 15010)).toBe(false);
    expect(existsSync(join(stateDir, 'mesh.json'))).toBe(true); // --state-dir keeps state
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- dev up output ---\n${output}`);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}, 150_000);
