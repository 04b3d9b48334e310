import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { createCsr } from './csr-request.js';
import { readCsr } from './csr.js';
import { binary, children, explicit, fromDer, node, oid, oids, pemBlocks as forgePemBlocks, sequence, smallInteger, Tag, toDer } from './der.js';
import { derAlgorithmIdentifier, derBitString, derElement, derExplicit, derNull, derOid, derSequence, derSmallInteger, signatureAlgorithms } from './pkix.js';

// node-forge's ASN.1 encoder (der.ts, which the CA uses) is the reference: the DER a sidecar
// writes without it must be byte for byte what forge writes for the same structure.
describe('the DER writer a sidecar uses instead of node-forge', () => {
  test.each([0, 1, 127, 128, 255, 256, 65_535, 65_536])('an element with %i content bytes has forge\'s length octets', (length) => {
    const content = Buffer.alloc(length, 0x5a);
    expect(derElement(0x04, content).equals(toDer(node(Tag.OCTETSTRING, binary(content))))).toBe(true);
  });

  test.each([
    ...Object.values(oids), ...signatureAlgorithms.map((a) => a.oid),
    '2.999.3', '0.9.2342.19200300.100.1.1', '1.3.6.1.4.1.311.21.20', '2.5.29.32.0',
  ])('OBJECT IDENTIFIER %s', (dotted) => {
    expect(derOid(dotted).equals(toDer(oid(dotted)))).toBe(true);
  });

  test.each(['3.1', '1.40', '1', '1.2.x', '1..2', '1.2.-3'])('refuses %j as an object identifier', (dotted) => {
    expect(() => derOid(dotted)).toThrow(/not an object identifier/);
  });

  test('small integers, NULL, bit strings, sequences and [0] EXPLICIT match forge', () => {
    for (const n of [0, 1, 42, 127]) expect(derSmallInteger(n).equals(toDer(smallInteger(n)))).toBe(true);
    expect(() => derSmallInteger(128)).toThrow(RangeError);
    expect(() => derSmallInteger(-1)).toThrow(RangeError);
    expect(derNull().equals(toDer(node(Tag.NULL, '')))).toBe(true);
    const signature = Buffer.from('3045022100ff', 'hex');
    expect(derBitString(signature).equals(toDer(node(Tag.BITSTRING, `\x00${binary(signature)}`)))).toBe(true);
    expect(derSequence([]).equals(toDer(sequence([])))).toBe(true);
    expect(derExplicit(0, []).equals(toDer(explicit(0, [])))).toBe(true);
    expect(derExplicit(3, [derNull()]).equals(toDer(explicit(3, [node(Tag.NULL, '')])))).toBe(true);
  });

  test.each(signatureAlgorithms)('the AlgorithmIdentifier of $oid: NULL parameters for RSA, none for ECDSA', (algorithm) => {
    const reference = sequence(algorithm.keyType === 'rsa' ? [oid(algorithm.oid), node(Tag.NULL, '')] : [oid(algorithm.oid)]);
    expect(derAlgorithmIdentifier(algorithm).equals(toDer(reference))).toBe(true);
  });

  test.each([
    ['an ECDSA P-256 key (a sidecar\'s own)', () => undefined],
    ['an RSA 2048 key (a renewal with an older key)', () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string],
    ['an ECDSA P-384 key', () => generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string],
  ])('a CSR for %s is what forge would have written, and the CA reads it', (_name, key) => {
    const { csrPem, keyPem } = createCsr({ keyPem: key() });
    const der = forgePemBlocks(csrPem)[0]?.der ?? Buffer.alloc(0);
    const [info] = children(fromDer(der));
    const spki = createPublicKey(keyPem).export({ type: 'spki', format: 'der' });
    const reference = sequence([smallInteger(0), sequence([]), fromDer(spki), explicit(0, [])]);
    expect(info && toDer(info).equals(toDer(reference))).toBe(true);
    expect(toDer(fromDer(der)).equals(der)).toBe(true);
    expect(readCsr(csrPem).export({ type: 'spki', format: 'der' }).equals(spki)).toBe(true);
  });
});
