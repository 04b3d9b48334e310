/**
 * Making a PKCS#10 certificate signing request (RFC 2986), as a sidecar does at start and at each
 * renewal: a key made here, an empty subject, no attributes, signed with that key. Its bytes are
 * written by pkix.ts, so a sidecar process loads no ASN.1 library; reading CSRs (the CA's side)
 * is csr.ts.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { IsthmusError } from '../core/errors.js';
import { derExplicit, derSequence, derSmallInteger, signedDer, toPem } from './pkix.js';

export function csrInvalid(message: string, cause?: unknown): IsthmusError {
  return new IsthmusError('ISTHMUS_ERR_TRUST_CSR_INVALID', message, cause === undefined ? {} : { cause });
}

/** The key of a CA Isthmus makes (root, cluster intermediate): RSA 2048, which every TLS stack accepts and verifies fastest. */
export function generateRsaKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('rsa', { modulusLength: 2048 });
}

/**
 * The key of every leaf Isthmus makes (workloads, gateways, the federation API, operators):
 * ECDSA P-256, as Linkerd, Consul and SPIRE make theirs. Made in about 0.1 ms where an RSA 2048
 * key took 130 ms of CPU (a pause at every sidecar start and renewal), and a full handshake
 * signs with it in 0.03 ms instead of 0.27 (measured here, docs/trust.md).
 */
export function generateLeafKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

/**
 * Which subject keys we certify. RSA is capped at 8192 bits because checking a signature
 * costs the CA time that grows with the modulus, and a CSR is untrusted input.
 */
export function checkSubjectKey(key: KeyObject): void {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits >= 2048 && bits <= 8192) return;
    throw csrInvalid(`The CSR's RSA key has ${bits} bits; use 2048 to 8192 bits (the sidecar default is 2048).`);
  }
  if (key.asymmetricKeyType === 'ec') {
    if (details.namedCurve === 'prime256v1' || details.namedCurve === 'secp384r1') return;
    throw csrInvalid(`The CSR's EC key is on curve ${String(details.namedCurve)}; use P-256 or P-384.`);
  }
  throw csrInvalid(`The CSR's key is of type ${String(key.asymmetricKeyType)}; use RSA (2048 bits or more) or EC P-256/P-384.`);
}

/**
 * What a sidecar sends: a CSR with an empty subject and no attributes, signed by a key made
 * here with Node's crypto (or by `keyPem`, to renew with the same key).
 */
export function createCsr(opts: { keyPem?: string } = {}): { csrPem: string; keyPem: string } {
  let privateKey: KeyObject;
  if (opts.keyPem === undefined) {
    privateKey = generateLeafKey().privateKey;
  } else {
    try {
      privateKey = createPrivateKey(opts.keyPem);
    } catch (cause) {
      throw csrInvalid('keyPem is not a PEM private key. Pass the PEM the sidecar wrote, or omit it to make a new key.', cause);
    }
  }
  const publicKey = createPublicKey(privateKey);
  checkSubjectKey(publicKey);
  // CertificationRequestInfo: version 1 (0), an empty subject, the key, no attributes.
  const info = derSequence([
    derSmallInteger(0),
    derSequence([]),
    publicKey.export({ type: 'spki', format: 'der' }),
    derExplicit(0, []),
  ]);
  return {
    csrPem: toPem('CERTIFICATE REQUEST', signedDer(info, privateKey)),
    keyPem: opts.keyPem ?? (privateKey.export({ type: 'pkcs8', format: 'pem' }) as string),
  };
}
