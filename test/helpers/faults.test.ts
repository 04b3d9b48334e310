import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { killProcess, LinkProxy, pauseProcess, trafficFigure } from './faults.js';

// An echo server on 127.0.138.1 behind a link on 127.0.139.1.
let echo: Server;
let echoAddress: string;

beforeAll(async () => {
  echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.138.1', resolve));
  const address = echo.address();
  echoAddress = `127.0.138.1:${typeof address === 'object' && address ? address.port : 0}`;
});
afterAll(() => new Promise<void>((resolve) => echo.close(() => resolve())));

/** Sends `payload` through the link and reads back as much; rejects on error or after `timeoutMs`. */
function roundTrip(link: LinkProxy, payload: Buffer, timeoutMs = 3000): Promise<{ data: Buffer; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = connect(link.port, link.host);
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('timed out')); }, timeoutMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= payload.length) {
        clearTimeout(timer);
        socket.end();
        resolve({ data: Buffer.concat(chunks), ms: performance.now() - started });
      }
    });
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
    // Several writes, so jitter applies to several chunks whose order must hold.
    for (let i = 0; i < payload.length; i += 1000) socket.write(payload.subarray(i, i + 1000));
  });
}

describe('the link proxy', () => {
  test('delivers every byte in order under latency, jitter and stalls, each way taking at least the latency', async () => {
    const link = await LinkProxy.start(echoAddress, { host: '127.0.139.1', conditions: { latencyMs: 100, jitterMs: 50, stallPercent: 20, stallMs: 200 } });
    try {
      const payload = Buffer.from(Array.from({ length: 20_000 }, (_, i) => i % 251));
      const { data, ms } = await roundTrip(link, payload);
      expect(data.equals(payload)).toBe(true);
      expect(ms).toBeGreaterThanOrEqual(200);
    } finally {
      await link.close();
    }
  });

  test('cut refuses connections and ends open ones; black hole accepts and delivers nothing; heal restores', async () => {
    const link = await LinkProxy.start(echoAddress, { host: '127.0.139.1' });
    try {
      expect((await roundTrip(link, Buffer.from('before'))).data.toString()).toBe('before');
      const open = connect(link.port, link.host);
      await new Promise((r) => open.once('connect', r));
      const ended = new Promise((r) => open.once('close', r));
      open.on('error', () => undefined);
      await link.cut();
      await ended;
      await expect(roundTrip(link, Buffer.from('cut'))).rejects.toThrow(/ECONNREFUSED/);

      await link.blackHole();
      await expect(roundTrip(link, Buffer.from('hole'), 500)).rejects.toThrow(/timed out/);

      await link.heal();
      expect((await roundTrip(link, Buffer.from('after'))).data.toString()).toBe('after');
    } finally {
      await link.close();
    }
  });
});

describe('process faults', () => {
  test('a paused process is resumed by its bound; a killed one is gone', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const state = () => /^\S+ \([^)]*\) (\S)/.exec(readFileSync(`/proc/${child.pid}/stat`, 'utf8'))?.[1];
    // Signals arrive asynchronously: the state is read until it changes (bounded).
    const becomes = async (want: string) => {
      for (let i = 0; i < 40 && state() !== want; i += 1) await new Promise((r) => setTimeout(r, 25));
      return state();
    };
    const paused = Date.now();
    pauseProcess(child.pid!, 1500);
    expect(await becomes('T')).toBe('T');
    await new Promise((r) => setTimeout(r, 1500 - (Date.now() - paused)));
    expect(await becomes('S')).toBe('S');
    await killProcess(child.pid!);
    expect(child.signalCode ?? (await new Promise((r) => child.once('exit', (_c, s) => r(s))))).toBe('SIGKILL');
  });

  test('a figure counts what failed after the fault and the time to the last failure', () => {
    const results = [{ at: 0, ok: true }, { at: 100, ok: false }, { at: 150, ok: true }, { at: 300, ok: false }, { at: 400, ok: true }];
    expect(trafficFigure('x', results, 50)).toEqual({ scenario: 'x', sent: 5, failed: 2, recoveryMs: 250 });
  });
});
