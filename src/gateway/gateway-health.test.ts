import { createServer as createNetServer, type Socket } from 'node:net';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { listen } from '../../test/helpers/sidecar-fixtures.js';
import { silentLogger } from '../core/log.js';
import { formatProbeSni } from '../model/sni.js';
import { GatewayCheck } from '../sidecar/gateway-check.js';
import { createIntermediateCa, createRootCa, issueCertificate } from '../trust/ca.js';
import { certificateInfo } from '../trust/verify.js';
import { Gateway } from './gateway.js';

/**
 * A sidecar's check of a remote gateway must measure that gateway, not the federation behind
 * it: with the federation hung (it accepts connections and answers nothing, as a stopped
 * process), the gateway still carries traffic, so the check must pass. A real gateway here, its
 * federation URL pointing at such a hung listener, checked by the sidecar's own GatewayCheck.
 */

/** Accepts connections and never sends a byte. */
const hungFederation = createNetServer(() => undefined);
const held: Socket[] = [];
hungFederation.on('connection', (s) => held.push(s));
let gateway: Gateway;
let address: string;
let gatewayId: string;

beforeAll(async () => {
  const federation = await listen(hungFederation);
  const root = createRootCa({ trustDomain: 'example.org' });
  const west = createIntermediateCa({ root, trustDomain: 'example.org', cluster: 'west' });
  gatewayId = 'spiffe://example.org/cluster/west/gateway';
  const leaf = issueCertificate({ identity: gatewayId, issuer: west });
  gateway = new Gateway({
    cluster: 'west', trustDomain: 'example.org', id: 'gw-1', zone: 'west-a', listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 },
    federationUrl: `https://${federation}`, caDir: '.', clientHelloTimeoutMs: 5_000, connectTimeoutMs: 2_000, idleTimeoutMs: 60_000, drainTimeoutMs: 5_000,
  }, silentLogger);
  gateway.setRoutes({ version: 1, cluster: 'west', services: [] });
  address = `127.0.0.1:${(await gateway.listen()).port}`;
  gateway.setCertificate({ certPem: leaf.certPem, chainPem: [west.certPem], keyPem: leaf.keyPem, rootPem: root.certPem, notAfter: certificateInfo(leaf.certPem).notAfter });
});

afterAll(async () => {
  await gateway?.close();
  for (const s of held) s.destroy();
  await new Promise((r) => hungFederation.close(r));
});

/** A TLS handshake with `servername`: the peer's URI SAN, and whether the session was resumed. */
function handshake(servername: string, timeoutMs: number, session?: Buffer): Promise<{ san: string; resumed: boolean; ticket?: Buffer } | 'no answer'> {
  const split = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: Number(address.slice(split + 1)), servername, rejectUnauthorized: false, ...(session ? { session } : {}) });
    let ticket: Buffer | undefined;
    const timer = setTimeout(() => { socket.destroy(); resolve('no answer'); }, timeoutMs);
    socket.on('session', (s: Buffer) => { ticket = s; });
    socket.once('secureConnect', () => setTimeout(() => {
      clearTimeout(timer);
      const san = socket.getPeerCertificate().subjectaltname ?? '';
      const resumed = socket.isSessionReused();
      socket.destroy();
      resolve({ san, resumed, ...(ticket ? { ticket } : {}) });
    }, 50));
    socket.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

describe('a gateway in front of a hung federation', () => {
  test('the probe SNI, spliced to the federation, gets no answer: a check with it would call the gateway hung', async () => {
    expect(await handshake(formatProbeSni('west'), 1000)).toBe('no answer');
  });

  test('the health SNI is answered by the gateway itself, with its own certificate, and resumes', async () => {
    const first = await handshake('health.gateway.west.isthmus', 2000);
    expect(first).not.toBe('no answer');
    if (first === 'no answer') return;
    expect(first.san).toBe(`URI:${gatewayId}`);
    expect(first.resumed).toBe(false);
    // Resumed: no signature, and no certificate sent again.
    const second = await handshake('health.gateway.west.isthmus', 2000, first.ticket);
    expect(second).toMatchObject({ resumed: true });
  });

  test('the sidecar\'s check passes, again and again, and leaves no connection open at the gateway', async () => {
    // The probe test's connection stays half-open towards the hung federation (the gateway
    // passes a FIN on and waits for the other direction): counted before, and left alone.
    const before = gateway.openConnections;
    const check = new GatewayCheck((a) => (a === address ? 'west' : undefined), 2000);
    for (let i = 0; i < 5; i += 1) expect(await check.probe(address, 1000)).toBe(true);
    for (let i = 0; gateway.openConnections > before && i < 50; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(gateway.openConnections).toBe(before);
  });

  test('another cluster\'s health SNI is refused: it is not this gateway\'s name', async () => {
    await expect(handshake('health.gateway.east.isthmus', 2000)).rejects.toThrow(/unrecognized name|alert number 112/i);
  });
});
