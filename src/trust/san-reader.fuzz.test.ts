/**
 * Fuzzing the one SAN reader, altNamesFromText, with generated names: quoted commas, quotes,
 * backslashes, control characters, unicode, empty and huge values. Three oracles: a model of how
 * Node prints subjectAltName (checked against Node itself on real certificates), Node's own text
 * for certificates we encode, and certificates `openssl req` makes (with openssl's own printing
 * of them). The mutation runs use the suite's fuzzer (fuzzRun): ISTHMUS_FUZZ_SEED replays one.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fuzzRun } from '../../test/helpers/fuzz.js';
import { mulberry32 } from '../../test/helpers/random.js';
import { buildCertificate, encodeName, keyIdentifier } from './certificate-builder.js';
import { oids, toDer } from './der.js';
import { altNamesFromText, altNamesOf, type AltNames } from './x509-facts.js';

type Kind = 'URI' | 'DNS' | 'IP Address';
interface Name { kind: Kind; value: string }

/**
 * Node's printing of one IA5String SAN (its PrintAltName in C++, since the fix
 * for CVE-2021-44532): printed as it is unless it holds `"`, `\`, `,`, `'` or a byte outside
 * printable ASCII; then JSON-quoted, with `"` and `\` escaped and `,`, control and non-ASCII
 * bytes as \u00XX (each byte as Latin-1).
 */
function nodeFormatValue(bytes: Buffer): string {
  const safe = [...bytes].every((b) => b >= 0x20 && b <= 0x7e && !'"\\,\''.includes(String.fromCharCode(b)));
  if (safe) return bytes.toString('latin1');
  let out = '"';
  for (const b of bytes) {
    const c = String.fromCharCode(b);
    if (c === '"' || c === '\\') out += `\\${c}`;
    else if (b >= 0x20 && b <= 0x7e && c !== ',') out += c;
    else out += `\\u00${b.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

const nodeFormat = (names: Name[]) => names.map((n) => `${n.kind}:${n.kind === 'IP Address' ? n.value : nodeFormatValue(Buffer.from(n.value, 'latin1'))}`).join(', ');

function expected(names: Name[]): AltNames {
  return {
    uris: names.filter((n) => n.kind === 'URI').map((n) => n.value),
    dnsNames: names.filter((n) => n.kind === 'DNS').map((n) => n.value),
    ipAddresses: names.filter((n) => n.kind === 'IP Address').map((n) => n.value),
  };
}

// Pieces an attacker would reach for: separators, quotes, escapes, a second "URI:", controls, unicode.
const pieces = [', ', ',', '"', '\\', "'", ':', 'URI:', ', URI:spiffe://evil/ns/x/sa/y', '\\"', '\\u002c', '\n', '\u0000', '\u007f', 'é', '中', '😀', ' ', 'spiffe://', 'mesh.test', '/ns/', 'a', 'Z', '9', '-', '.', '%2C', '=', '@'];

function randomValue(rand: () => number, maxPieces: number): string {
  const n = Math.floor(rand() * maxPieces);
  let value = '';
  for (let i = 0; i < n; i++) value += pieces[Math.floor(rand() * pieces.length)];
  return value;
}

/** A value as it travels in an IA5String: UTF-8 bytes, which Node prints byte by byte as Latin-1. */
const asIa5 = (text: string) => Buffer.from(text, 'utf8').toString('latin1');

let dir: string;
let key: ReturnType<typeof generateKeyPairSync>;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'isthmus-san-fuzz-'));
  key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A self-signed certificate we encode ourselves, carrying exactly these URI SANs. */
function certWithUris(uris: string[]): X509Certificate {
  const subject = [{ oid: oids.organizationName, value: 'fuzz' }];
  const now = Date.now();
  return new X509Certificate(buildCertificate({
    profile: 'leaf', subject, publicKey: key.publicKey,
    issuer: { nameDer: toDer(encodeName(subject)), keyId: keyIdentifier(key.publicKey), privateKey: key.privateKey },
    notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000), uris,
  }));
}

describe('altNamesFromText, fuzzed', () => {
  test('reads back every generated list of names from Node\'s printing of it (2000 lists)', () => {
    const rand = mulberry32(12);
    for (let round = 0; round < 2000; round++) {
      const names: Name[] = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => {
        const r = rand();
        if (r < 0.6) return { kind: 'URI' as const, value: asIa5(randomValue(rand, 8)) };
        if (r < 0.9) return { kind: 'DNS' as const, value: asIa5(randomValue(rand, 5)) };
        return { kind: 'IP Address' as const, value: rand() < 0.5 ? '10.0.0.1' : 'FD00:0:0:0:0:0:0:1' };
      });
      const text = nodeFormat(names);
      expect(altNamesFromText(text), text).toEqual(expected(names));
    }
  });

  test('the printing model is Node\'s: real certificates with generated URIs print and read back the same (150 certificates)', () => {
    const rand = mulberry32(7);
    for (let round = 0; round < 150; round++) {
      const uris = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => randomValue(rand, 6));
      // The UTF-8 bytes go into the certificate as they are (the builder writes one byte per character).
      const ia5 = uris.map(asIa5);
      const cert = certWithUris(ia5);
      expect(cert.subjectAltName, JSON.stringify(uris)).toBe(nodeFormat(ia5.map((value) => ({ kind: 'URI', value }))));
      expect(altNamesOf(cert).uris).toEqual(ia5);
    }
  });

  test('empty and huge values, and a crafted second identity, stay what they are', () => {
    const huge = `spiffe://mesh.test/${'a'.repeat(100_000)}`;
    const crafted = 'spiffe://mesh.test/ns/demo/sa/web, URI:spiffe://mesh.test/ns/demo/sa/admin';
    const cert = certWithUris(['', huge, crafted]);
    expect(altNamesOf(cert).uris).toEqual(['', huge, crafted]);
    expect(altNamesFromText('')).toEqual({ uris: [], dnsNames: [], ipAddresses: [] });
  });

  test('never throws on text Node would not print, and never finds more names than "<kind>:" prefixes (5000 strings)', () => {
    const rand = mulberry32(99);
    for (let round = 0; round < 5000; round++) {
      const text = randomValue(rand, 12);
      const names = altNamesFromText(text);
      const found = names.uris.length + names.dnsNames.length + names.ipAddresses.length;
      expect(found, JSON.stringify(text)).toBeLessThanOrEqual(text.split(':').length - 1);
    }
    // Unbalanced or broken quoting: kept as one raw value, which can never be a SPIFFE ID.
    expect(altNamesFromText('URI:"spiffe://mesh.test/ns/a/sa/b').uris).toEqual(['"spiffe://mesh.test/ns/a/sa/b']);
    expect(altNamesFromText('URI:"\\x41"').uris).toEqual(['"\\x41"']);
    expect(altNamesFromText('URI:"a\\').uris).toEqual(['"a\\']);
  });
});

describe('altNamesFromText on certificates openssl made', () => {
  const keyPath = () => join(dir, 'key.pem');
  beforeAll(() => {
    writeFileSync(keyPath(), key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  });

  /** `openssl req -x509 -addext subjectAltName=<san>`: the names as openssl's own syntax puts them. */
  function addext(san: string): X509Certificate {
    return new X509Certificate(execFileSync('/usr/bin/openssl', ['req', '-x509', '-new', '-key', keyPath(), '-subj', '/O=fuzz', '-days', '1', '-addext', `subjectAltName=${san}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** Through a config section, where a value may hold commas (-addext splits on them). */
  function section(uris: string[]): X509Certificate {
    const config = join(dir, `san-${Math.random().toString(36).slice(2)}.cnf`);
    writeFileSync(config, `[req]\ndistinguished_name = dn\n[dn]\n[ext]\nsubjectAltName = @alt\n[alt]\n${uris.map((u, i) => `URI.${i + 1} = ${u}`).join('\n')}\n`);
    return new X509Certificate(execFileSync('/usr/bin/openssl', ['req', '-x509', '-new', '-key', keyPath(), '-subj', '/O=fuzz', '-days', '1', '-config', config, '-extensions', 'ext'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  test.each([
    ['one URI', 'URI:spiffe://mesh.test/ns/demo/sa/web', { uris: ['spiffe://mesh.test/ns/demo/sa/web'], dnsNames: [], ipAddresses: [] }],
    ['every kind', 'URI:spiffe://mesh.test/ns/a/sa/b,DNS:web.mesh.test,IP:10.1.2.3,DNS:*.mesh.test', { uris: ['spiffe://mesh.test/ns/a/sa/b'], dnsNames: ['web.mesh.test', '*.mesh.test'], ipAddresses: ['10.1.2.3'] }],
    ['two URIs', 'URI:spiffe://mesh.test/ns/a/sa/b,URI:spiffe://other.test/ns/a/sa/b', { uris: ['spiffe://mesh.test/ns/a/sa/b', 'spiffe://other.test/ns/a/sa/b'], dnsNames: [], ipAddresses: [] }],
    // openssl's own value syntax strips quotes and backslashes; the fuzz above covers those.
    ['a percent-encoded comma and colons', 'URI:spiffe://mesh.test/a%2C:b:c', { uris: ['spiffe://mesh.test/a%2C:b:c'], dnsNames: [], ipAddresses: [] }],
    ['an empty-looking path and a query', 'URI:spiffe://mesh.test/?x=URI:y', { uris: ['spiffe://mesh.test/?x=URI:y'], dnsNames: [], ipAddresses: [] }],
    ['IPv6', 'IP:fd00::1', { uris: [], dnsNames: [], ipAddresses: ['FD00:0:0:0:0:0:0:1'] }],
  ])('-addext %s', (_what, san, names) => {
    expect(altNamesOf(addext(san))).toEqual(names);
  });

  test('a URI that spells out ", URI:" stays one name, whatever the generator puts around it (20 certificates)', () => {
    const rand = mulberry32(3);
    for (let round = 0; round < 20; round++) {
      // What a config value can hold literally: printable ASCII without quotes or backslashes.
      const uris = [`spiffe://mesh.test/ns/demo/sa/web${randomValue(rand, 4).replace(/[^\x20-\x7e]|["'\\]/g, '')}, URI:spiffe://mesh.test/ns/demo/sa/admin`];
      const cert = section(uris);
      expect(altNamesOf(cert).uris, cert.subjectAltName).toEqual(uris.map(asIa5));
    }
  });
});

/**
 * Mutation fuzzing with the suite's fuzzer (test/helpers/fuzz.ts): ISTHMUS_FUZZ_SECONDS longer,
 * ISTHMUS_FUZZ_SEED to replay a failure.
 */
describe('altNamesFromText under fuzzRun', () => {
  // Node's printing of names an attacker would craft, and of ordinary ones.
  const corpus = [
    nodeFormat([{ kind: 'URI', value: 'spiffe://mesh.test/ns/demo/sa/web, URI:spiffe://mesh.test/ns/demo/sa/admin' }]),
    nodeFormat([{ kind: 'URI', value: 'spiffe://mesh.test/ns/demo/sa/web' }, { kind: 'DNS', value: 'web.mesh.test' }, { kind: 'IP Address', value: '10.0.0.1' }]),
    nodeFormat([{ kind: 'URI', value: 'a"b\\c,d\'e\u0000\u00e9' }, { kind: 'DNS', value: 'x, DNS:y' }]),
    'URI:"spiffe://mesh.test/ns/a/sa/b\\u002c URI:spiffe://evil/ns/x/sa/y", DNS:"a\\"b"',
  ];

  /** Cases for the run's seconds, at least `min`; the problems, each named with its seed and case. */
  function fuzzCases(min: number, check: (input: Buffer) => string | undefined): { problems: string[]; n: number } {
    const run = fuzzRun(2, corpus);
    const problems: string[] = [];
    const end = Date.now() + run.seconds * 1000;
    let n = 0;
    for (; Date.now() < end || n < min; n++) {
      const problem = check(run.input(n));
      if (problem) problems.push(`${run.label(n)}: ${problem}`);
    }
    return { problems, n };
  }

  test('never throws on mutated text, and never finds more names than "<kind>:" prefixes', () => {
    const { problems, n } = fuzzCases(2000, (input) => {
      const text = input.toString('latin1');
      let names: AltNames;
      try {
        names = altNamesFromText(text);
      } catch (err) {
        return `threw ${(err as Error).message} on ${JSON.stringify(text)}`;
      }
      const found = names.uris.length + names.dnsNames.length + names.ipAddresses.length;
      return found > text.split(':').length - 1 ? `${found} names from ${JSON.stringify(text)}` : undefined;
    });
    expect(problems, `${n} cases`).toEqual([]);
  });

  test('one URI SAN holding fuzzed bytes (quoted commas, ", URI:", quotes, escapes) is read as exactly that one URI, from Node\'s printing and from a real certificate', () => {
    let certificates = 0;
    const { problems, n } = fuzzCases(500, (input) => {
      const value = input.toString('latin1');
      const printed = nodeFormat([{ kind: 'URI', value }, { kind: 'DNS', value: 'after.mesh.test' }]);
      const read = altNamesFromText(printed);
      if (read.uris.length !== 1 || read.uris[0] !== value || read.dnsNames.join() !== 'after.mesh.test') return `read ${JSON.stringify(read)} from ${JSON.stringify(printed)}`;
      // Every twentieth case also through a certificate Node parses, so the model stays honest.
      if (certificates++ % 20 !== 0) return undefined;
      const uris = altNamesOf(certWithUris([value])).uris;
      return uris.length === 1 && uris[0] === value ? undefined : `certificate with ${JSON.stringify(value)} read as ${JSON.stringify(uris)}`;
    });
    expect(problems, `${n} cases`).toEqual([]);
  });
});

describe('altNamesFromText agrees with openssl on certificates `openssl req` made with generated SANs', () => {
  // What an openssl config value holds literally: printable ASCII without quotes, backslashes,
  // backquotes (the config parser drops them, as it does quotes), `$` (variable expansion) or `#`
  // (a comment), and no space at either end (trimmed).
  const literal = (bytes: Buffer, max: number) => bytes.toString('latin1').replace(/[^\x21-\x7e ]|["'`\\$#]/g, '').slice(0, max).trim();

  test('36 certificates: the names Node gives us are those the generator wrote, and openssl prints the same list', () => {
    const run = fuzzRun(0, ['spiffe://mesh.test/ns/demo/sa/web', ', URI:spiffe://mesh.test/ns/demo/sa/admin', 'web.mesh.test', 'a,b, c:d/e?f=g&h%2C']);
    const keyPath = join(dir, 'openssl-agreement-key.pem');
    writeFileSync(keyPath, key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    for (let c = 0; c < 36; c++) {
      const rand = mulberry32(run.seed + c);
      const names: Name[] = Array.from({ length: 1 + Math.floor(rand() * 4) }, (_, i) => {
        const r = rand();
        const value = literal(run.input(c * 8 + i), 200);
        if (r < 0.6) return { kind: 'URI' as const, value: `spiffe://mesh.test/${value}` };
        if (r < 0.85) return { kind: 'DNS' as const, value: `${value.replace(/[^a-z0-9.-]/gi, '') || 'x'}.mesh.test` };
        return { kind: 'IP Address' as const, value: `10.${Math.floor(rand() * 256)}.${Math.floor(rand() * 256)}.${1 + Math.floor(rand() * 254)}` };
      });
      const config = join(dir, `agreement-${c}.cnf`);
      const keyword = { URI: 'URI', DNS: 'DNS', 'IP Address': 'IP' } as const;
      writeFileSync(config, `[req]\ndistinguished_name = dn\n[dn]\n[ext]\nsubjectAltName = @alt\n[alt]\n${names.map((m, i) => `${keyword[m.kind]}.${i + 1} = ${m.value}`).join('\n')}\n`);
      const pem = execFileSync('/usr/bin/openssl', ['req', '-x509', '-new', '-key', keyPath, '-subj', '/O=fuzz', '-days', '1', '-config', config, '-extensions', 'ext'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      const printed = execFileSync('/usr/bin/openssl', ['x509', '-noout', '-ext', 'subjectAltName'], { input: pem, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] })
        .split('\n').slice(1).map((l) => l.trim()).filter(Boolean).join(', ');
      const label = `${run.label(c)} names ${JSON.stringify(names)}`;
      // openssl's own text does not quote, so a comma inside a value is ambiguous there; it is
      // checked against the list the generator wrote, and ours against the same list by kind.
      expect(printed, label).toBe(names.map((m) => `${m.kind}:${m.value}`).join(', '));
      expect(altNamesOf(new X509Certificate(pem)), label).toEqual(expected(names));
    }
  });
});
