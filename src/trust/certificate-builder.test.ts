import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { ipAddressBytes, keyIdentifier, newSerialNumber } from './certificate-builder.js';

describe('newSerialNumber', () => {
  test('is always a positive, minimally encoded 128-bit INTEGER and never repeats', () => {
    // 4000 draws make it all but certain (1 - 2^-22) that both a leading 0x00 and a high first
    // byte come up, so the encoding rules are exercised every run.
    const seen = new Set<string>();
    let highBit = 0;
    for (let i = 0; i < 4000; i++) {
      const serial = newSerialNumber();
      seen.add(serial.toString('hex'));
      if (serial.length === 17) {
        highBit++;
        expect(serial[0]).toBe(0);
        expect((serial[1] ?? 0) & 0x80).toBe(0x80);
      } else {
        expect(serial).toHaveLength(16);
        expect(serial[0]).toBeGreaterThan(0);
        expect(serial[0]).toBeLessThan(0x80);
      }
    }
    expect(seen.size).toBe(4000);
    expect(highBit).toBeGreaterThan(1000);
  });
});

describe('ipAddressBytes', () => {
  test.each([
    ['127.0.0.1', '7f000001'],
    ['10.0.0.255', '0a0000ff'],
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['1::', '00010000000000000000000000000000'],
    ['2001:db8::8a2e:370:7334', '20010db80000000000008a2e03707334'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001'],
    ['fe80::1:2', 'fe800000000000000000000000010002'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
    ['64:ff9b::10.0.0.1', '0064ff9b0000000000000000' + '0a000001'],
  ])('%s', (ip, hex) => {
    expect(ipAddressBytes(ip).toString('hex')).toBe(hex);
  });

  test.each(['', 'localhost', '1.2.3', '256.0.0.1', 'fe80::1%eth0', '1:2:3:4:5:6:7:8:9'])('refuses %j', (ip) => {
    let error: unknown;
    try {
      ipAddressBytes(ip);
    } catch (err) {
      error = err;
    }
    expect(isIsthmusError(error, 'ISTHMUS_ERR_TRUST_CERT_INVALID')).toBe(true);
  });
});

describe('keyIdentifier', () => {
  test.each([
    ['RSA', ['rsa:2048']],
    ['EC P-256', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']],
  ])('equals the subjectKeyIdentifier openssl computes for a %s key (RFC 5280 §4.2.1.2 method 1)', (_name, newkey) => {
    const pem = execFileSync(
      '/usr/bin/openssl',
      ['req', '-x509', '-newkey', ...newkey, '-nodes', '-keyout', '/dev/null', '-subj', '/CN=k', '-days', '1', '-addext', 'subjectKeyIdentifier=hash'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const text = execFileSync('/usr/bin/openssl', ['x509', '-noout', '-ext', 'subjectKeyIdentifier'], { input: pem, encoding: 'utf8' });
    const ours = keyIdentifier(new X509Certificate(pem).publicKey).toString('hex').toUpperCase().match(/../g)?.join(':');
    expect(ours).toHaveLength(59);
    expect(text).toContain(ours);
  });
});
