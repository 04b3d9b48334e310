import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  clientHelloRefusals,
  maxClientHelloRecords,
  parseClientHello,
  type ClientHelloRefusal,
  type ClientHelloResult,
} from './client-hello.js';

const fixtureDir = new URL('../../test/fixtures/client-hello/', import.meta.url);
const load = (name: string): Buffer => readFileSync(new URL(`${name}.bin`, fixtureDir));
const sni = 'reviews.shop.svc.west.isthmus';

/** Every capture in test/fixtures/client-hello/ (README.md says how each was made). OpenSSL 3.0
 * as Debian configures it still lists TLS 1.1 and 1.0 in supported_versions; curl uses it too. */
const fixtures: { name: string; serverName: string | undefined; alpn: string[]; tlsVersions: string[] }[] = [
  { name: 'openssl-tls13', serverName: sni, alpn: [], tlsVersions: ['TLSv1.3', 'TLSv1.2', 'TLSv1.1', 'TLSv1'] },
  { name: 'openssl-tls12', serverName: sni, alpn: [], tlsVersions: ['TLSv1.2'] },
  { name: 'openssl-no-sni', serverName: undefined, alpn: [], tlsVersions: ['TLSv1.3', 'TLSv1.2', 'TLSv1.1', 'TLSv1'] },
  { name: 'curl', serverName: sni, alpn: ['h2', 'http/1.1'], tlsVersions: ['TLSv1.3', 'TLSv1.2', 'TLSv1.1', 'TLSv1'] },
  { name: 'node', serverName: sni, alpn: ['h2', 'http/1.1'], tlsVersions: ['TLSv1.3', 'TLSv1.2'] },
  { name: 'chromium', serverName: sni, alpn: ['h2', 'http/1.1'], tlsVersions: ['TLSv1.3', 'TLSv1.2'] },
];

/** mulberry32: a seeded PRNG so every "random" case is the same on every run. */
function prng(seed: number): (below: number) => number {
  let state = seed >>> 0;
  return (below) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * below);
  };
}

// Byte builders for hand-made ClientHellos (RFC 8446 §3.4 vectors).
const u8 = (n: number): Buffer => Buffer.from([n & 0xff]);
const u16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u24 = (n: number): Buffer => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
const vec8 = (...parts: Buffer[]): Buffer => Buffer.concat([u8(Buffer.concat(parts).length), ...parts]);
const vec16 = (...parts: Buffer[]): Buffer => Buffer.concat([u16(Buffer.concat(parts).length), ...parts]);
const ext = (type: number, ...body: Buffer[]): Buffer => Buffer.concat([u16(type), vec16(...body)]);
const sniExt = (name: string): Buffer => ext(0, vec16(u8(0), vec16(Buffer.from(name, 'latin1'))));
const alpnExt = (...protocols: string[]): Buffer => ext(16, vec16(...protocols.map((p) => vec8(Buffer.from(p)))));
const versionsExt = (...codes: number[]): Buffer => ext(43, vec8(...codes.map(u16)));

type HelloParts = { version?: number; sessionId?: Buffer; ciphers?: Buffer; compression?: Buffer; extensions?: Buffer[]; extensionsBlock?: Buffer };
function helloBody(parts: HelloParts = {}): Buffer {
  const extensions = parts.extensions ?? [sniExt(sni), alpnExt('h2'), versionsExt(0x0304, 0x0303)];
  return Buffer.concat([
    u16(parts.version ?? 0x0303),
    Buffer.alloc(32, 0xab),
    parts.sessionId ?? vec8(Buffer.alloc(32, 7)),
    parts.ciphers ?? vec16(u16(0x1301), u16(0x1302)),
    parts.compression ?? vec8(u8(0)),
    parts.extensionsBlock ?? vec16(...extensions),
  ]);
}
const handshake = (body: Buffer, type = 1, length = body.length): Buffer => Buffer.concat([u8(type), u24(length), body]);
const record = (fragment: Buffer, length = fragment.length): Buffer => Buffer.concat([Buffer.from([22, 3, 1]), u16(length), fragment]);
const hello = (parts: HelloParts = {}): Buffer => record(handshake(helloBody(parts)));

/** The handshake bytes carried by a buffer of whole records. */
function handshakeOf(records: Buffer): Buffer {
  const fragments: Buffer[] = [];
  for (let offset = 0; offset < records.length; offset += 5 + records.readUInt16BE(offset + 3)) {
    fragments.push(records.subarray(offset + 5, offset + 5 + records.readUInt16BE(offset + 3)));
  }
  return Buffer.concat(fragments);
}

/** Re-frames handshake bytes into records whose sizes come from `size()` (RFC 8446 §5.1 allows it). */
function reframe(handshakeBytes: Buffer, size: () => number): Buffer {
  const records: Buffer[] = [];
  for (let offset = 0; offset < handshakeBytes.length; ) {
    const fragment = handshakeBytes.subarray(offset, offset + size());
    records.push(record(fragment));
    offset += fragment.length;
  }
  return Buffer.concat(records);
}

const kinds = new Set(['complete', 'incomplete', 'invalid']);
function expectWellFormed(result: ClientHelloResult): void {
  expect(kinds.has(result.kind)).toBe(true);
  if (result.kind === 'incomplete') expect(result.bytesNeeded).toBeGreaterThan(0);
  if (result.kind === 'invalid') expect(clientHelloRefusals).toContain(result.reason);
}

/**
 * Asserts every strict prefix is incomplete, and that its bytesNeeded is a true lower bound: one
 * byte fewer than asked for, whatever those bytes are, still cannot give a verdict.
 */
function expectEveryPrefixIncomplete(bytes: Buffer): void {
  for (let length = 0; length < bytes.length; length++) {
    const prefix = bytes.subarray(0, length);
    const result = parseClientHello(prefix);
    if (result.kind !== 'incomplete') expect.fail(`prefix of ${length} bytes gave ${JSON.stringify(result)}`);
    if (length + result.bytesNeeded > bytes.length) expect.fail(`prefix of ${length} bytes asked for ${result.bytesNeeded}`);
    for (const fill of [0x00, 0xff]) {
      const padded = parseClientHello(Buffer.concat([prefix, Buffer.alloc(result.bytesNeeded - 1, fill)]));
      if (padded.kind !== 'incomplete') expect.fail(`prefix of ${length} bytes asked for ${result.bytesNeeded} but fewer gave ${padded.kind}`);
    }
  }
}

describe('parseClientHello on captured ClientHellos', () => {
  it('has a table row for every capture', () => {
    const captured = readdirSync(fixtureDir).filter((f) => f.endsWith('.bin')).map((f) => f.slice(0, -4));
    expect(captured.sort()).toEqual(fixtures.map((f) => f.name).sort());
  });

  it.each(fixtures)('$name: reads SNI $serverName and ALPN $alpn', ({ name, serverName, alpn, tlsVersions }) => {
    expect(parseClientHello(load(name))).toEqual({ kind: 'complete', serverName, alpn, tlsVersions, bytesNeeded: 0 });
  });

  it.each(fixtures)('$name: every truncation is incomplete, with a bytesNeeded that never overshoots', ({ name }) => {
    expectEveryPrefixIncomplete(load(name));
  });

  it.each(fixtures)('$name: bytes arriving in random chunks reach the same verdict', ({ name }) => {
    const bytes = Buffer.concat([load(name), Buffer.from([23, 3, 3, 0, 2, 0, 0])]); // early data after it
    const expected = parseClientHello(load(name));
    for (let seed = 1; seed <= 50; seed++) {
      const random = prng(seed);
      let received = Buffer.alloc(0);
      let result: ClientHelloResult = { kind: 'incomplete', bytesNeeded: 1 };
      while (result.kind === 'incomplete' && received.length < bytes.length) {
        received = bytes.subarray(0, received.length + 1 + random(600));
        result = parseClientHello(received);
      }
      expect(result).toEqual(expected);
    }
  });

  it.each(fixtures)('$name: re-framed into records of 1..50 bytes still parses, and its prefixes are incomplete', ({ name }) => {
    const expected = parseClientHello(load(name));
    for (let seed = 1; seed <= 10; seed++) {
      const random = prng(seed);
      const reframed = reframe(handshakeOf(load(name)), () => 1 + random(50));
      expect(parseClientHello(reframed)).toEqual(expected);
      if (seed === 1) expectEveryPrefixIncomplete(reframed);
    }
  });

  it.each(fixtures)('$name: mutating any byte never throws and gives one of the three kinds', ({ name }) => {
    const original = load(name);
    const expected = parseClientHello(original);
    const mutated = Buffer.from(original);
    for (let offset = 0; offset < original.length; offset++) {
      const byte = original[offset] as number;
      for (const value of [0x00, 0xff, byte ^ 0x01, byte ^ 0x80, (byte + 1) & 0xff]) {
        mutated[offset] = value;
        const result = parseClientHello(mutated);
        expectWellFormed(result);
        // ClientHello.random (record 5 + handshake header 4 + version 2) carries no meaning here.
        if (offset >= 11 && offset < 43) expect(result).toEqual(expected);
      }
      mutated[offset] = byte;
    }
  });
});

describe('parseClientHello on records', () => {
  const chromium = handshakeOf(load('chromium'));

  it(`accepts a ClientHello over exactly ${maxClientHelloRecords} records`, () => {
    let records = 0;
    const reframed = reframe(chromium, () => (++records < maxClientHelloRecords ? 1 : chromium.length));
    expect(parseClientHello(reframed).kind).toBe('complete');
  });

  it(`refuses one needing more than ${maxClientHelloRecords} records, before the rest arrives`, () => {
    const reframed = reframe(chromium, () => 1).subarray(0, 6 * maxClientHelloRecords);
    expect(parseClientHello(reframed)).toMatchObject({ kind: 'invalid', reason: 'too-many-records' });
  });

  it('asks for the next record when the message outruns its record, then checks what comes', () => {
    const body = helloBody();
    const first = record(handshake(body, 1, body.length + 1));
    expect(parseClientHello(first)).toEqual({ kind: 'incomplete', bytesNeeded: 1 });
    expect(parseClientHello(Buffer.concat([first, Buffer.from('GET')]))).toMatchObject({ reason: 'not-tls-handshake' });
    expect(parseClientHello(Buffer.concat([first, record(u8(0))]))).toMatchObject({ reason: 'malformed-client-hello' });
  });

  it('ignores the rest of a record that outlasts the ClientHello', () => {
    const bytes = record(handshake(helloBody()), 1000);
    expect(parseClientHello(bytes)).toMatchObject({ kind: 'complete', serverName: sni });
  });

  it('gives an empty buffer incomplete, needing one byte', () => {
    expect(parseClientHello(Buffer.alloc(0))).toEqual({ kind: 'incomplete', bytesNeeded: 1 });
  });
});

describe('parseClientHello on hand-made ClientHellos', () => {
  const ok = (serverName: string | undefined, extra: Partial<ClientHelloResult> = {}) => ({ serverName, ...extra });
  it.each<[string, Buffer, Record<string, unknown>]>([
    ['the builder default', hello(), ok(sni, { alpn: ['h2'], tlsVersions: ['TLSv1.3', 'TLSv1.2'] })],
    ['an upper-case SNI, lower-cased', hello({ extensions: [sniExt('Reviews.SHOP.svc.West.ISTHMUS')] }), ok(sni)],
    ['a 253-byte SNI', hello({ extensions: [sniExt(`${'a'.repeat(63)}.`.repeat(3) + 'b'.repeat(61))] }), ok(`${'a'.repeat(63)}.`.repeat(3) + 'b'.repeat(61))],
    ['a one-label SNI', hello({ extensions: [sniExt('localhost')] }), ok('localhost')],
    ['a digit-led label', hello({ extensions: [sniExt('1password.com')] }), ok('1password.com')],
    ['no extensions block at all (RFC 5246)', hello({ extensionsBlock: Buffer.alloc(0) }), ok(undefined, { alpn: [], tlsVersions: ['TLSv1.2'] })],
    ['GREASE versions and extensions (RFC 8701)', hello({ extensions: [ext(0x0a0a), versionsExt(0x3a3a, 0x0304), ext(0x1a1a, u8(0))] }), ok(undefined, { tlsVersions: ['TLSv1.3'] })],
    ['TLS 1.0 next to 1.2', hello({ extensions: [versionsExt(0x0303, 0x0301)] }), ok(undefined, { tlsVersions: ['TLSv1.2', 'TLSv1'] })],
  ])('accepts %s', (_, bytes, expected) => {
    expect(parseClientHello(bytes)).toMatchObject({ kind: 'complete', bytesNeeded: 0, ...expected });
  });

  const fixed = helloBody({ extensionsBlock: Buffer.alloc(0) });
  const withExtensions = (...extensions: Buffer[]): Buffer => hello({ extensions });
  const cases: [string, Buffer, ClientHelloRefusal][] = [
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: reviews\r\n\r\n'), 'not-tls-handshake'],
    ['an SSH banner', Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n'), 'not-tls-handshake'],
    ['zero bytes', Buffer.alloc(64), 'not-tls-handshake'],
    ['one byte of HTTP', Buffer.from('G'), 'not-tls-handshake'],
    ['an SSLv2-compatible ClientHello', Buffer.from([0x80, 0x2e, 0x01, 0x03, 0x01]), 'not-tls-handshake'],
    ['a record of version major 2', Buffer.from([22, 2, 0, 0, 5]), 'not-tls-handshake'],
    ['an alert record', Buffer.from([21, 3, 3, 0, 2, 2, 40]), 'not-tls-handshake'],
    ['an application-data record', Buffer.from([23, 3, 3, 0, 1, 0]), 'not-tls-handshake'],
    ['a change_cipher_spec record', Buffer.from([20, 3, 3, 0, 1, 1]), 'not-tls-handshake'],
    ['a second record of another type', Buffer.concat([record(handshake(fixed).subarray(0, 10)), Buffer.from([23, 3, 3])]), 'not-tls-handshake'],
    ['a record length of 0', Buffer.from([22, 3, 1, 0, 0]), 'empty-record'],
    ['a record longer than 2^14', Buffer.from([22, 3, 1, 0x40, 0x01]), 'record-too-large'],
    ['a ServerHello', record(handshake(fixed, 2)), 'not-client-hello'],
    ['a ServerHello, seen from its first byte', Buffer.from([22, 3, 3, 0, 90, 2]), 'not-client-hello'],
    ['a ClientHello claiming 16 KiB + 1', Buffer.from([22, 3, 1, 0x40, 0x00, 1, 0, 0x40, 0x01]), 'client-hello-too-large'],
    ['a handshake length short of its fields', record(handshake(fixed, 1, fixed.length - 1)), 'malformed-client-hello'],
    ['a handshake length beyond its fields', record(handshake(Buffer.concat([fixed, u8(0)]))), 'malformed-client-hello'],
    ['a ClientHello cut inside random', record(handshake(fixed.subarray(0, 20))), 'malformed-client-hello'],
    ['a 33-byte session id', hello({ sessionId: vec8(Buffer.alloc(33)) }), 'malformed-client-hello'],
    ['a session id overrunning the message', record(handshake(Buffer.concat([fixed.subarray(0, 34), u8(200), Buffer.alloc(10)]))), 'malformed-client-hello'],
    ['an odd cipher_suites length', hello({ ciphers: vec16(u16(0x1301), u8(0)) }), 'malformed-client-hello'],
    ['empty cipher_suites', hello({ ciphers: vec16() }), 'malformed-client-hello'],
    ['cipher_suites overrunning the message', hello({ ciphers: u16(0xfff0), compression: Buffer.alloc(0), extensionsBlock: Buffer.alloc(0) }), 'malformed-client-hello'],
    ['empty compression methods', hello({ compression: vec8() }), 'malformed-client-hello'],
    ['an extensions block one byte too long', hello({ extensionsBlock: Buffer.concat([u16(sniExt(sni).length + 1), sniExt(sni)]) }), 'malformed-client-hello'],
    ['an extensions block one byte too short', hello({ extensionsBlock: Buffer.concat([u16(sniExt(sni).length - 1), sniExt(sni)]) }), 'malformed-client-hello'],
    ['an extension overrunning a block that fits the message', hello({ extensionsBlock: vec16(sniExt(sni).subarray(0, -1)) }), 'malformed-extension'],
    ['an extension overrunning the block', hello({ extensionsBlock: vec16(u16(0xff01), u16(10), Buffer.alloc(4)) }), 'malformed-extension'],
    ['half an extension header', hello({ extensionsBlock: vec16(u16(0xff01), u8(0)) }), 'malformed-extension'],
    ['supported_versions of odd length', withExtensions(ext(43, vec8(u16(0x0304), u8(3)))), 'malformed-extension'],
    ['supported_versions overrunning', withExtensions(ext(43, u8(4), u16(0x0304))), 'malformed-extension'],
    ['empty supported_versions', withExtensions(ext(43, vec8())), 'malformed-extension'],
    ['two server_name extensions', withExtensions(sniExt(sni), sniExt(sni)), 'duplicate-extension'],
    ['two unknown extensions of one type', withExtensions(ext(0xff01), sniExt(sni), ext(0xff01)), 'duplicate-extension'],
    ['an empty server_name extension', withExtensions(ext(0)), 'malformed-sni'],
    ['an empty server_name_list', withExtensions(ext(0, vec16())), 'malformed-sni'],
    ['a server_name_list overrunning its extension', withExtensions(ext(0, u16(40), u8(0), vec16(Buffer.from('a.b')))), 'malformed-sni'],
    ['a server_name_list short of its extension', withExtensions(ext(0, vec16(u8(0), vec16(Buffer.from('a.b'))), u8(0))), 'malformed-sni'],
    ['a host_name overrunning its list', withExtensions(ext(0, vec16(u8(0), u16(9), Buffer.from('a.b')))), 'malformed-sni'],
    ['an empty host_name', withExtensions(ext(0, vec16(u8(0), vec16()))), 'malformed-sni'],
    ['a name_type other than host_name', withExtensions(ext(0, vec16(u8(1), vec16(Buffer.from('a.b'))))), 'malformed-sni'],
    ['two host_names', withExtensions(ext(0, vec16(u8(0), vec16(Buffer.from('a.b')), u8(0), vec16(Buffer.from('c.d'))))), 'malformed-sni'],
    ['an SNI with a trailing dot', withExtensions(sniExt(`${sni}.`)), 'sni-not-hostname'],
    ['an SNI with a leading dot', withExtensions(sniExt(`.${sni}`)), 'sni-not-hostname'],
    ['an SNI with an empty label', withExtensions(sniExt('reviews..isthmus')), 'sni-not-hostname'],
    ['an SNI with an underscore', withExtensions(sniExt('_reviews.shop')), 'sni-not-hostname'],
    ['an SNI with a space', withExtensions(sniExt('reviews shop')), 'sni-not-hostname'],
    ['an SNI with a NUL byte', withExtensions(sniExt('reviews\0.evil')), 'sni-not-hostname'],
    ['an SNI with a non-ASCII byte', withExtensions(sniExt('révïews.shop')), 'sni-not-hostname'],
    ['an SNI with a hyphen-edged label', withExtensions(sniExt('-reviews.shop')), 'sni-not-hostname'],
    ['an SNI with a 64-byte label', withExtensions(sniExt(`${'a'.repeat(64)}.shop`)), 'sni-not-hostname'],
    ['an SNI of 254 bytes', withExtensions(sniExt(`${'a'.repeat(63)}.`.repeat(3) + 'b'.repeat(62))), 'sni-not-hostname'],
    ['an SNI with a port', withExtensions(sniExt('reviews.shop:443')), 'sni-not-hostname'],
    ['an IPv4 SNI', withExtensions(sniExt('10.0.0.1')), 'sni-ip-literal'],
    ['an IPv6 SNI', withExtensions(sniExt('2001:db8::1')), 'sni-ip-literal'],
    ['a bracketed IPv6 SNI', withExtensions(sniExt('[::1]')), 'sni-ip-literal'],
    ['an empty ALPN extension', withExtensions(ext(16)), 'malformed-alpn'],
    ['an empty protocol_name_list', withExtensions(ext(16, vec16())), 'malformed-alpn'],
    ['an empty protocol name', withExtensions(ext(16, vec16(vec8(Buffer.from('h2')), vec8()))), 'malformed-alpn'],
    ['a protocol name overrunning its list', withExtensions(ext(16, vec16(u8(5), Buffer.from('h2')))), 'malformed-alpn'],
    ['a protocol_name_list short of its extension', withExtensions(ext(16, vec16(vec8(Buffer.from('h2'))), u8(0))), 'malformed-alpn'],
    ['TLS 1.0 only', hello({ version: 0x0301, extensions: [sniExt(sni)] }), 'unsupported-version'],
    ['SSL 3.0 only', hello({ version: 0x0300, extensions: [] }), 'unsupported-version'],
    ['supported_versions with only GREASE and TLS 1.1', withExtensions(versionsExt(0x5a5a, 0x0302)), 'unsupported-version'],
  ];

  it.each(cases)('refuses %s', (_, bytes, reason) => {
    expect(parseClientHello(bytes)).toMatchObject({ kind: 'invalid', reason });
  });

  it('has a case for every refusal reason', () => {
    const covered = new Set(cases.map(([, , reason]) => reason));
    covered.add('too-many-records'); // covered under "records" above
    expect([...covered].sort()).toEqual([...clientHelloRefusals].sort());
  });
});

describe('parseClientHello on noise', () => {
  it('refuses 10,000 random byte strings (seeded)', () => {
    const random = prng(0x15_7_4_05);
    for (let i = 0; i < 10_000; i++) {
      const bytes = Buffer.from(Array.from({ length: 1 + random(300) }, () => random(256)));
      const result = parseClientHello(bytes);
      if (result.kind !== 'invalid') expect.fail(`case ${i} (${bytes.toString('hex')}) gave ${result.kind}`);
    }
  });

  /**
   * Random bytes stop at the first byte 255 times in 256 (not a handshake record). Mutations of
   * real ClientHellos keep the framing and most of the structure, so they reach the extension,
   * SNI, ALPN and version parsers; the test checks they did, by the verdicts they produced.
   */
  it('gives a well-formed verdict for 20,000 mutations of real ClientHellos, reaching every parser (seeded)', () => {
    const random = prng(0x0c11e47);
    const originals = fixtures.map((f) => load(f.name));
    const verdicts = new Map<string, number>();
    const mutate = (original: Buffer): Buffer => {
      const bytes = Buffer.from(original);
      const mutations = 1 + random(4);
      for (let m = 0; m < mutations; m++) {
        // Past the 5-byte record header and the 4-byte handshake header most of the time.
        const at = random(4) === 0 ? random(bytes.length) : 9 + random(bytes.length - 9);
        switch (random(5)) {
          case 0: bytes[at] = random(256); break; // a byte replaced
          case 1: bytes[at] = bytes[at]! ^ (1 << random(8)); break; // a bit flipped
          case 2: bytes[at] = (bytes[at]! + (random(2) === 0 ? 1 : 255)) & 0xff; break; // a length off by one
          case 3: bytes[at] = random(2) === 0 ? 0 : 0xff; break; // a field zeroed or maxed
          default: bytes.copy(bytes, at, random(bytes.length), random(bytes.length)); // a run of bytes copied elsewhere
        }
      }
      return random(8) === 0 ? bytes.subarray(0, random(bytes.length)) : bytes;
    };
    for (let i = 0; i < 20_000; i++) {
      const bytes = mutate(originals[i % originals.length]!);
      let result: ClientHelloResult;
      try {
        result = parseClientHello(bytes);
      } catch (err) {
        return expect.fail(`mutation ${i} (${bytes.toString('hex')}) threw ${String(err)}`);
      }
      expectWellFormed(result);
      if (result.kind === 'complete' && result.serverName !== undefined) expect(result.serverName).toMatch(/^[a-z0-9.-]+$/);
      const verdict = result.kind === 'invalid' ? result.reason : result.kind;
      verdicts.set(verdict, (verdicts.get(verdict) ?? 0) + 1);
    }
    // Deep states, not only the first byte: every parser refused something, and some mutations
    // still parsed (a changed random or session id) or were cut short.
    for (const deep of ['complete', 'incomplete', 'malformed-client-hello', 'malformed-extension', 'duplicate-extension', 'malformed-sni', 'sni-not-hostname', 'malformed-alpn', 'unsupported-version']) {
      expect(verdicts.get(deep) ?? 0, `${deep} in ${JSON.stringify(Object.fromEntries(verdicts))}`).toBeGreaterThan(0);
    }
    expect(verdicts.get('not-tls-handshake') ?? 0).toBeLessThan(20_000 / 4);
  });

  it('never throws on 10,000 random ClientHello bodies inside valid framing (seeded)', () => {
    const random = prng(42);
    const verdicts = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const body = Buffer.from(Array.from({ length: random(400) }, () => random(256)));
      const result = parseClientHello(record(handshake(body)));
      expectWellFormed(result);
      verdicts.add(result.kind === 'invalid' ? result.reason : result.kind);
    }
    expect(verdicts.has('malformed-client-hello')).toBe(true);
  });
});
