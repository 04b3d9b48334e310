import { connect, type Server } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { listen, testPki, type TestPki } from '../../test/helpers/sidecar-fixtures.js';
import { waitFor } from '../../test/helpers/cli.js';
import { silentLogger } from '../core/log.js';
import { Inbound } from './inbound.js';

/**
 * The federation's active health checks connect to an instance's inbound and close without a
 * byte. Each used to leave the inbound's side open in CLOSE-WAIT for ever (allowHalfOpen, and no
 * handshake timeout for a connection that sent nothing): a descriptor per check, found by the soak.
 */
let pki: TestPki;
let inbound: Inbound;
let address: string;

beforeAll(async () => {
  pki = testPki();
  inbound = new Inbound({ certPem: pki.echo.certPem, chainPem: [pki.west.certPem], keyPem: pki.echo.keyPem, trustBundle: [pki.root.certPem], identity: 'spiffe://example.org/ns/demo/sa/echo' },
    '127.0.0.1:9', silentLogger);
  address = await listen(inbound.server as unknown as Server);
});

afterAll(async () => {
  await inbound?.close();
});

const open = () => new Promise<number>((resolve, reject) => (inbound.server as unknown as Server).getConnections((err, n) => (err ? reject(err) : resolve(n))));

test('a TCP health check (connect, then close without a byte) leaves no connection open at the inbound', async () => {
  const [host, port] = address.split(':') as [string, string];
  for (let i = 0; i < 30; i++) {
    await new Promise<void>((resolve) => {
      const socket = connect({ host, port: Number(port) });
      socket.once('connect', () => { socket.end(); resolve(); });
      socket.once('error', () => resolve());
    });
  }
  await waitFor(async () => (await open()) === 0, 5_000, 'the inbound to close the health checks\' connections');
  expect(await open()).toBe(0);
});
