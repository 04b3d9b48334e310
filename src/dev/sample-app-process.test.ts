import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { isAlive, listeningPid } from '../../test/helpers/processes.js';
import { processLabel } from '../bench/soak.js';
import { startSampleAppProcess, type SampleAppSpec } from './sample-app-process.js';

// The sample apps of `dev up --processes`, each in a Node process of its own (runs dist/: needs
// a build). Loopback 127.0.49.1.
const host = '127.0.49.1';
const dir = mkdtempSync(join(tmpdir(), 'isthmus-app-process-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const spec = (port: number, over: Partial<SampleAppSpec> = {}): SampleAppSpec => ({
  kind: 'http', service: 'ledger', cluster: 'west', zone: 'west-a', instance: 'ledger-west-1', host, port, ...over,
});
describe('a sample app in a process of its own', () => {
  test('answers as the in-process app does, takes an added delay, and is gone after close()', async () => {
    const log = join(dir, 'app-west-ledger-west-1.log');
    const app = await startSampleAppProcess(spec(0), { logFile: log });
        expect(app.address).toMatch(/^127\.0\.49\.1:\d+$/);
    const pid = listeningPid(app.address);
    expect(pid).toBeDefined();
    expect(pid).not.toBe(process.pid);
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain(log);
    // The soak's and the fault tests' name for it.
    expect(processLabel(pid!, dir)).toBe('app west ledger-west-1');

    const res = await fetch(`http://${app.address}/accounts?id=7&size=1024`, { headers: { 'x-forwarded-client-cert': 'By=x;URI=spiffe://t/ns/demo/sa/client' } });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(Buffer.byteLength(text)).toBe(1024);
    expect(JSON.parse(text)).toMatchObject({ service: 'ledger', cluster: 'west', instance: 'ledger-west-1', path: '/accounts?id=7&size=1024', caller: 'By=x;URI=spiffe://t/ns/demo/sa/client' });

    app.setDelay?.(400);
    // The message reaches the child before the next request on the same machine; allow it a moment.
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    expect((await fetch(`http://${app.address}/`)).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    app.setDelay?.(0);

    await app.close();
    expect(isAlive(pid!)).toBe(false);
    await expect(fetch(`http://${app.address}/`)).rejects.toThrow();
  }, 30_000);

  test('an app that dies without being asked to is said once, in the callback and in its log, and stays down', async () => {
    const log = join(dir, 'app-west-hello-west-1.log');
    const said: string[] = [];
    const app = await startSampleAppProcess(spec(0, { service: 'hello', instance: 'hello-west-1' }), { logFile: log, onUnexpectedExit: (line) => said.push(line) });
    const pid = listeningPid(app.address)!;
    process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (said.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(said).toEqual([`app-west-hello-west-1 (pid ${pid}) was killed by SIGKILL unexpectedly; see ${log}`]);
    expect(readFileSync(log, 'utf8')).toContain(`(pid ${pid}) was killed by SIGKILL unexpectedly`);
    await app.close(); // nothing left to stop; no second report
    expect(said).toHaveLength(1);
    await expect(fetch(`http://${app.address}/`)).rejects.toThrow();
  }, 30_000);

  test('the gRPC echo kind listens too', async () => {
    const app = await startSampleAppProcess(spec(0, { kind: 'grpc', service: 'grpc-echo', instance: 'grpc-echo-west-1' }), { logFile: join(dir, 'grpc.log') });
    const { EchoClient } = await import('./grpc-echo.js');
    const grpc = await import('@grpc/grpc-js');
    const client = new EchoClient(app.address, grpc.credentials.createInsecure());
    const reply = await new Promise<Record<string, unknown>>((resolve, reject) => {
      (client as unknown as { Echo(req: unknown, cb: (err: Error | null, r: Record<string, unknown>) => void): void }).Echo({ message: 'hi' }, (err, r) => (err ? reject(err) : resolve(r)));
    });
    client.close();
    expect(reply).toMatchObject({ message: 'hi', cluster: 'west', instance: 'grpc-echo-west-1' });
    await app.close();
  }, 30_000);

  test('a port already taken: the start fails naming the address, and no process is left', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, host, resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      await expect(startSampleAppProcess(spec(port), { logFile: join(dir, 'taken.log') })).rejects.toThrow(new RegExp(`the ledger app \\(ledger-west-1\\) could not start: .*EADDRINUSE.*${host}:${port}`));
      expect(listeningPid(`${host}:${port}`)).toBe(process.pid);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  }, 30_000);
});
