import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { limitHttpServer, StreamSlots } from './server-limits.js';

describe('StreamSlots', () => {
  test('per client and in all; a release frees exactly one slot, once', () => {
    const slots = new StreamSlots(2, 3);
    const a1 = slots.take('a');
    const a2 = slots.take('a');
    expect([a1, a2].every(Boolean)).toBe(true);
    expect(slots.take('a')).toBeUndefined();
    expect(slots.refusal('a')).toMatch(/already holds 2 live streams/);
    const b1 = slots.take('b');
    expect(b1).toBeDefined();
    expect(slots.take('c')).toBeUndefined();
    expect(slots.refusal('c')).toMatch(/3 live streams are open/);
    a1!();
    a1!();
    expect(slots.take('c')).toBeDefined();
    expect(slots.take('c')).toBeUndefined();
  });
});

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

/** Writes `bytes` on a new connection and resolves what came back once the server closed it. */
function exchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let got = '';
    socket.on('data', (c: Buffer) => { got += c.toString(); });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(got));
    socket.write(bytes);
  });
}

describe('limitHttpServer', () => {
  test('a client that trickles its request head is answered 408 and cut off after headersTimeout', async () => {
    server = createServer((_req, res) => res.end('ok'));
    limitHttpServer(server, { maxConnections: 10, headersTimeoutMs: 300, requestTimeoutMs: 600 });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const answer = await exchange(port, 'GET / HTTP/1.1\r\nhost: x\r\n');
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
  });

  test('connections beyond maxConnections are closed at once; those within are served', async () => {
    server = createServer(() => undefined);
    limitHttpServer(server, { maxConnections: 1, headersTimeoutMs: 10_000, requestTimeoutMs: 10_000 });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const held = connect({ host: '127.0.0.1', port });
    await new Promise((resolve) => held.once('connect', resolve));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const refused = await exchange(port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(refused).toBe('');
    held.destroy();
  });
});
