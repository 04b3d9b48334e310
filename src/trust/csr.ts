/**
 * PKCS#10 certificate signing requests (RFC 2986). A sidecar makes its key where it runs and
 * proves it holds it by signing the request; the CA takes only the public key from it.
 * Everything else a CSR can say (subject, SAN attributes) is ignored on purpose: the identity
 * comes from the authenticated caller (docs/trust.md).
 *
 * Making one is csr-request.ts, which a sidecar loads without this module's ASN.1 library.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { checkSubjectKey, csrInvalid } from './csr-request.js';
import {
  children,
  fromDer,
  isContextTag,
  isTag,
  oidOf,
  pemBlocks,
  primitiveBytes,
  signatureAlgorithms,
  Tag,
  toDer,
  type Asn1,
} from './der.js';

export { checkSubjectKey, createCsr, generateLeafKey, generateRsaKey } from './csr-request.js';

function parseCsrDer(csrPem: string): { der: Buffer; tree: Asn1 } {
  if (typeof csrPem !== 'string') throw csrInvalid('The CSR must be PEM text ("-----BEGIN CERTIFICATE REQUEST-----").');
  const blocks = pemBlocks(csrPem);
  const requests = blocks.filter((block) => block.label === 'CERTIFICATE REQUEST' || block.label === 'NEW CERTIFICATE REQUEST');
  if (requests.length !== 1 || blocks.length !== 1) {
    throw csrInvalid(
      `Expected exactly one "CERTIFICATE REQUEST" PEM block, found ${blocks.map((b) => `"${b.label}"`).join(', ') || 'none'}. ` +
        'Send the CSR only (never the private key).',
    );
  }
  const der = (requests[0] as { der: Buffer }).der;
  let tree: Asn1;
  try {
    tree = fromDer(der);
  } catch (cause) {
    throw csrInvalid(`The CSR is not valid DER (${(cause as Error).message}). Re-create it with \`isthmus\` or \`openssl req\`.`, cause);
  }
  // The signature covers the exact bytes sent. Requiring that a re-encoding gives back the same
  // bytes means the bytes we verify below are those bytes, not forge's reading of BER.
  if (!toDer(tree).equals(der)) throw csrInvalid('The CSR is not canonical DER. Re-create it with `isthmus` or `openssl req`.');
  return { der, tree };
}

/**
 * Parses a CSR, checks its key is one we certify and that its self-signature verifies (the
 * requester holds the private key: proof of possession), and returns the public key.
 */
export function readCsr(csrPem: string): KeyObject {
  const { tree } = parseCsrDer(csrPem);
  const [info, algorithm, signature, ...rest] = children(tree);
  const [version, subject, spki, attributes] = info ? children(info) : [];
  if (
    !isTag(tree, Tag.SEQUENCE) || rest.length > 0 ||
    !isTag(info, Tag.SEQUENCE) || !isTag(algorithm, Tag.SEQUENCE) || !isTag(signature, Tag.BITSTRING) ||
    !isTag(version, Tag.INTEGER) || !isTag(subject, Tag.SEQUENCE) || !isTag(spki, Tag.SEQUENCE) ||
    !isContextTag(attributes, 0)
  ) {
    throw csrInvalid('The CSR does not have the PKCS#10 structure (RFC 2986 §4). Re-create it with `isthmus` or `openssl req`.');
  }
  if (!primitiveBytes(version).equals(Buffer.from([0]))) throw csrInvalid('The CSR has a version other than 1 (v1 = 0); only PKCS#10 v1 exists.');

  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: toDer(spki), format: 'der', type: 'spki' });
  } catch (cause) {
    throw csrInvalid(`The CSR's public key cannot be read (${(cause as Error).message}). Use an RSA or EC P-256/P-384 key.`, cause);
  }
  checkSubjectKey(publicKey);

  const [algorithmId, parameters, ...more] = children(algorithm);
  const chosen = signatureAlgorithms.find((candidate) => candidate.oid === oidOf(algorithmId));
  if (!chosen) {
    throw csrInvalid(`The CSR is signed with algorithm ${String(oidOf(algorithmId))}, which we do not accept. Sign it with SHA-256 (RSA PKCS#1 v1.5 or ECDSA).`);
  }
  const parametersOk = more.length === 0 && (parameters === undefined || (chosen.keyType === 'rsa' && isTag(parameters, Tag.NULL)));
  // An algorithm for one key type with a key of the other would have Node pick the scheme from
  // the key, not from what the requester declared; refuse the mismatch outright.
  if (!parametersOk || chosen.keyType !== publicKey.asymmetricKeyType) {
    throw csrInvalid(`The CSR's signature algorithm does not fit its ${String(publicKey.asymmetricKeyType)} key. Re-create the CSR.`);
  }
  const signatureBits = primitiveBytes(signature);
  if (signatureBits[0] !== 0) throw csrInvalid('The CSR signature is not a whole number of bytes. Re-create the CSR.');
  if (!verify(chosen.digest, toDer(info), publicKey, signatureBits.subarray(1))) {
    throw csrInvalid(
      "The CSR's signature does not verify with the public key it contains: it was altered in transit, or was not signed " +
        'by the holder of that key. Make a new CSR with the private key that belongs to it.',
    );
  }
  return publicKey;
}
