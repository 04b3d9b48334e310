import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startNodeFloor } from './node-floor-process.js';
import { writePeerCertificates, type PeerCertificates } from './peer-certs.js';

// The memory bench's floor must do the job it stands for, or "over the floor" means nothing:
// relay over mutual TLS, and refuse a caller without a certificate of our CA.
const host = '127.0.48.1';

const startFloor = (args: string[]) => startNodeFloor(['--host', host, ...args], new URL('../../dist/bench/node-floor.js', import.meta.url));

describe('the memory bench\'s Node floor (dist/bench/node-floor.js)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'isthmus-floor-test-'));
  const children: ChildProcess[] = [];
  let certs: PeerCertificates;
  let upstream: { inbound: string };
  let proxy: { outbound?: string };

  beforeAll(async () => {
    certs = writePeerCertificates(join(dir, 'certs'), {
      trustDomain: 'test.isthmus', namespace: 'demo', clientCluster: 'east', inbounds: [{ service: 'up', cluster: 'west', sniName: 'up' }],
    });
    const up = certs.inbound.up as { certChain: string; key: string };
    const started = await startFloor(['--role', 'upstream', '--ca', certs.rootCa, '--cert', up.certChain, '--key', up.key]);
    children.push(started.child);
    upstream = started;
    const relay = await startFloor(['--role', 'proxy', '--ca', certs.rootCa, '--cert', certs.outbound.certChain, '--key', certs.outbound.key, '--upstream', started.inbound]);
    children.push(relay.child);
    proxy = relay;
  });
  afterAll(() => {
    for (const child of children) child.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  test('relays a GET through its outbound over mutual TLS to the upstream, which answers 1 KiB', async () => {
    const [phost, pport] = (proxy.outbound as string).split(':') as [string, string];
    const { status, length } = await new Promise<{ status: number; length: number }>((resolve, reject) => {
      request({ host: phost, port: Number(pport), path: 'http://svc-0001.demo.mesh/', headers: { host: 'svc-0001.demo.mesh' } }, (res) => {
        let length = 0;
        res.on('data', (c: Buffer) => { length += c.length; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, length }));
      }).on('error', reject).end();
    });
    expect([status, length]).toEqual([200, 1024]);
  });

  test('its inbound refuses a TLS client without a certificate', async () => {
    const [uhost, uport] = upstream.inbound.split(':') as [string, string];
    const outcome = await new Promise<string>((resolve) => {
      const socket = tls.connect({ host: uhost, port: Number(uport), ca: readFileSync(certs.rootCa), checkServerIdentity: () => undefined }, () => {
        socket.write('GET / HTTP/1.1\r\nhost: up\r\n\r\n');
      });
      let answered = '';
      socket.on('data', (c: Buffer) => { answered += c.toString(); });
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
      socket.on('close', () => resolve(answered ? `answered ${answered.slice(0, 12)}` : 'closed'));
    });
    expect(outcome).toMatch(/^error ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED$/);
  });
});
