import { describe, expect, test } from 'vitest';
import { ChunkedBodyError, ChunkedDecoder, maxTrailerBytes } from './chunked-decoder.js';
import { HTTPParser } from './native-http-parser.js';
import { mulberry32 } from '../../test/helpers/random.js';

/**
 * The decoder against Node's own llhttp on the same bytes: a request head with
 * `Transfer-Encoding: chunked`, then the body. What llhttp refuses must be refused; what it reads
 * whole must be read whole, to the same data; and how the bytes are split into reads must not
 * matter.
 */

interface Reading { error: string | undefined; complete: boolean; data: string }

function byLlhttp(body: Buffer): Reading {
  const parser = new HTTPParser();
  parser.initialize(HTTPParser.REQUEST, {}, 0, 0);
  const data: Buffer[] = [];
  let complete = false;
  parser[HTTPParser.kOnHeaders] = () => undefined;
  parser[HTTPParser.kOnHeadersComplete] = () => 0;
  parser[HTTPParser.kOnBody] = (chunk: Buffer) => { data.push(Buffer.from(chunk)); };
  parser[HTTPParser.kOnMessageComplete] = () => { complete = true; };
  const head = Buffer.from('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n', 'latin1');
  const result = parser.execute(Buffer.concat([head, body]));
  parser.free();
  return { error: typeof result === 'number' ? undefined : result.code ?? 'error', complete, data: Buffer.concat(data).toString('latin1') };
}

/** Ours, fed in pieces cut at `cuts` (offsets into `body`). */
function byDecoder(body: Buffer, cuts: number[] = []): Reading & { end: number; trailers: string[] } {
  const decoder = new ChunkedDecoder();
  const data: Buffer[] = [];
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < body.length).sort((a, b) => a - b), body.length];
  try {
    for (let k = 0; k + 1 < bounds.length; k += 1) {
      const from = bounds[k] as number;
      const view = decoder.feed(body.subarray(from, bounds[k + 1]));
      if (view) data.push(Buffer.from(view));
      if (decoder.end >= 0) return { error: undefined, complete: true, end: from + decoder.end, data: Buffer.concat(data).toString('latin1'), trailers: decoder.trailers };
    }
    return { error: undefined, complete: false, end: -1, data: Buffer.concat(data).toString('latin1'), trailers: decoder.trailers };
  } catch (err) {
    expect(err).toBeInstanceOf(ChunkedBodyError);
    return { error: (err as ChunkedBodyError).code, complete: false, end: -1, data: Buffer.concat(data).toString('latin1'), trailers: decoder.trailers };
  }
}

/** Whether the two agree: a refusal for a refusal, the same data for a whole body, nothing decided for a partial one. */
function agree(body: Buffer, cuts: number[] = []): { llhttp: Reading; ours: Reading } {
  return { llhttp: byLlhttp(body), ours: byDecoder(body, cuts) };
}

function expectAgreement(text: string): void {
  const { llhttp, ours } = agree(Buffer.from(text, 'latin1'));
  if (llhttp.error !== undefined && !llhttp.complete) expect(ours.error, `llhttp refused (${llhttp.error}); ours must too`).toBeDefined();
  else expect({ error: ours.error, complete: ours.complete, data: ours.data }).toEqual({ error: undefined, complete: llhttp.complete, data: llhttp.data });
}

describe('ChunkedDecoder against llhttp, case by case', () => {
  test.each([
    ['5\r\nhello\r\n0\r\n\r\n', 'one chunk'],
    ['5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n', 'two chunks'],
    ['A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n', 'hexadecimal sizes in either case'],
    ['0005\r\nhello\r\n000\r\n\r\n', 'leading zeros'],
    ['5;a=b\r\nhello\r\n0;last\r\n\r\n', 'extensions, on the last chunk too'],
    ['5;a="x y";b;c=\r\nhello\r\n0\r\n\r\n', 'a quoted value, a bare name, an empty value'],
    ['5;a="b\\"c"\r\nhello\r\n0\r\n\r\n', 'a quoted pair'],
    ['5;=b\r\nhello\r\n0\r\n\r\n', 'an empty name before = (llhttp takes it)'],
    ['5;a=;b\r\nhello\r\n0\r\n\r\n', 'an empty value before ;'],
    ['5\r\nhello\r\n0\r\nfoo: bar\r\nx-sum:\tabc \r\n\r\n', 'trailer fields'],
    ['5 \r\nhello\r\n0\r\n\r\n', 'a space after the size'],
    ['5\t\r\nhello\r\n0\r\n\r\n', 'a tab after the size'],
    ['5 ;a=b\r\nhello\r\n0\r\n\r\n', 'whitespace before an extension'],
    ['5;a b\r\nhello\r\n0\r\n\r\n', 'whitespace in an extension'],
    ['5;\r\nhello\r\n0\r\n\r\n', 'an empty extension'],
    ['5;;\r\nhello\r\n0\r\n\r\n', 'two semicolons'],
    ['5;a==b\r\nhello\r\n0\r\n\r\n', 'two equals signs'],
    ['5;a="b\r\nhello\r\n0\r\n\r\n', 'an unterminated quote'],
    ['5;a="b"c\r\nhello\r\n0\r\n\r\n', 'text after a quoted value'],
    ['5;a=\u0080\r\nhello\r\n0\r\n\r\n', 'obs-text unquoted'],
    ['5;a="\u0001"\r\nhello\r\n0\r\n\r\n', 'a control character quoted'],
    ['5\nhello\r\n0\r\n\r\n', 'a bare LF after the size'],
    ['5\r\nhello\n0\r\n\r\n', 'a bare LF after the data'],
    ['5\r\nhelloX\r\n0\r\n\r\n', 'more data than the size'],
    ['5\r\nhello\r\n0\r\n\n', 'a bare LF at the end'],
    ['-5\r\nhello\r\n0\r\n\r\n', 'a sign'],
    ['0x5\r\nhello\r\n0\r\n\r\n', 'a 0x prefix'],
    ['ffffffffffffffffff\r\n', 'a size past 2^64'],
    ['\r\n5\r\nhello\r\n0\r\n\r\n', 'no size'],
    ['5\r\nhello\r\n0\r\nfoo bar\r\n\r\n', 'a trailer without a colon'],
    ['5\r\nhello\r\n0\r\n foo: bar\r\n\r\n', 'a trailer starting with a space'],
    ['5\r\nhello\r\n0\r\nfoo: bar\r\n baz\r\n\r\n', 'a folded trailer'],
    ['5\r\nhello\r\n0\r\nfoo:\u0001\r\n\r\n', 'a control character in a trailer value'],
    ['5\r\nhello\r\n0\r\nfoo\u0000: x\r\n\r\n', 'NUL in a trailer name'],
    ['5\r\nhel', 'cut short in the data'],
    ['5\r\nhello\r\n0\r\n', 'cut short before the last CRLF'],
  ])('%j (%s)', (text) => {
    expectAgreement(text);
  });

  test('a size beyond any body this side of 2^53 is refused before any data', () => {
    expect(byDecoder(Buffer.from('20000000000000\r\n')).error).toBe('HPE_INVALID_CHUNK_SIZE');
    expect(byDecoder(Buffer.from('1fffffffffffff\r\n')).error).toBeUndefined();
  });

  test('trailers are read, names lower-cased and values trimmed; a trailer section past its limit is refused', () => {
    expect(byDecoder(Buffer.from('1\r\na\r\n0\r\nX-Sum: abc \r\nfoo:\r\n\r\n')).trailers).toEqual(['x-sum', 'abc', 'foo', '']);
    const long = `1\r\na\r\n0\r\nx: ${'v'.repeat(maxTrailerBytes)}\r\n\r\n`;
    expect(byDecoder(Buffer.from(long)).error).toBe('HPE_HEADER_OVERFLOW');
  });

  test('the end is where the body ends: what follows is the next message\'s', () => {
    const body = Buffer.from('3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n');
    const read = byDecoder(body);
    expect(read.complete).toBe(true);
    expect(body.subarray(read.end).toString()).toBe('GET / HTTP/1.1\r\n');
  });

  test('the data of one feed comes back as one view of what was fed: pieces of several chunks moved together, not copied elsewhere', () => {
    const body = Buffer.from('5\r\nhello\r\n6;x=y\r\n world\r\n4\r\n!!!');
    const decoder = new ChunkedDecoder();
    const view = decoder.feed(body);
    expect(decoder.end).toBe(-1);
    expect(view?.toString()).toBe('hello world!!!');
    expect(view?.buffer).toBe(body.buffer);
    expect(view?.byteOffset).toBe(body.byteOffset + 3);
    // The rest of the third chunk, and the end, in the next read; then a read of framing alone.
    expect(decoder.feed(Buffer.from('?\r\n0\r\n\r\n'))?.toString()).toBe('?');
    expect(decoder.end).toBe(8);
    const framing = new ChunkedDecoder();
    expect(framing.feed(Buffer.from('0\r\n\r\n'))).toBeUndefined();
    expect(framing.end).toBe(5);
  });

  test('a framing error names the byte and where it stands', () => {
    expect(() => new ChunkedDecoder().feed(Buffer.from('3\r\nabc\r\n2\r\nde\n'))).toThrow("malformed chunked body: byte 0x0a where CRLF must end a chunk's data");
  });
});

describe('ChunkedDecoder against llhttp, generated', () => {
  const pick = <T>(r: () => number, items: readonly T[]): T => items[Math.floor(r() * items.length)] as T;
  // Each list: the parts llhttp takes first, then those it refuses.
  const extensions = ['', ';a', ';a=b', ';a="x y"', ';a="\\""', ';=b', ';a=', ';a=;b', ';a="\u00e9"', ';', ';;', ' ;a', ';a b', ';a="b', ';a="b"c', ';a=\u00e9', ';a=\t', ';\u0000'];
  const goodExtensions = 9;
  const endings = ['\r\n', '\n', '\r', '\r\r\n', ' \r\n'];
  const trailers = ['', 'a: b\r\n', 'X-Sum: 1\r\nY: \r\n', 'd: \u00e9\r\n', 'bad line\r\n', ' lead: x\r\n', 'c:\u0001\r\n', 'e:x\r\n f\r\n'];
  const goodTrailers = 4;

  /** A chunked body: all its parts right for half of them, each part maybe wrong for the rest, and then maybe one byte changed. */
  function body(r: () => number): Buffer {
    const clean = r() < 0.5;
    const part = (items: readonly string[], good: number) => (clean || r() < 0.7 ? pick(r, items.slice(0, good)) : pick(r, items));
    let text = '';
    const chunks = Math.floor(r() * 4);
    for (let c = 0; c < chunks; c += 1) {
      const length = Math.floor(r() * 40);
      let sizeText = length.toString(16);
      if (r() < 0.2) sizeText = sizeText.toUpperCase();
      if (r() < 0.1) sizeText = `00${sizeText}`;
      if (!clean && r() < 0.1) sizeText = (length + pick(r, [-1, 1])).toString(16);
      text += `${sizeText}${part(extensions, goodExtensions)}${part(endings, 1)}${'d'.repeat(length)}${part(endings, 1)}`;
    }
    text += `${pick(r, ['0', '00'])}${part(extensions, goodExtensions)}${part(endings, 1)}${part(trailers, goodTrailers)}${part(endings, 1)}`;
    const bytes = Buffer.from(text, 'latin1');
    if (!clean && r() < 0.5 && bytes.length > 0) {
      const at = Math.floor(r() * bytes.length);
      const kind = r();
      if (kind < 0.4) bytes[at] = Math.floor(r() * 256);
      else if (kind < 0.7) return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
      else return Buffer.concat([bytes.subarray(0, at), Buffer.from([pick(r, [0x0d, 0x0a, 0x20, 0x3b, 0x30, 0x00, 0x22])]), bytes.subarray(at)]);
    }
    return bytes;
  }

  test('20,000 bodies: every one llhttp refuses is refused; every one it reads whole is read whole, to the same data, however the reads are cut', () => {
    const r = mulberry32(20261206);
    let refusedByBoth = 0;
    let wholeByBoth = 0;
    const stricter: string[] = [];
    for (let n = 0; n < 20_000; n += 1) {
      const bytes = body(r);
      const cuts = Array.from({ length: Math.floor(r() * 4) }, () => Math.floor(r() * bytes.length));
      // Before the decoder moves data within the bytes.
      const text = JSON.stringify(bytes.toString('latin1'));
      const { llhttp, ours } = agree(bytes, cuts);
      if (llhttp.error !== undefined && !llhttp.complete) {
        expect(ours.error, `${text}: llhttp refused it (${llhttp.error}); ours read ${ours.complete ? 'it whole' : 'on'}`).toBeDefined();
        refusedByBoth += 1;
      } else if (llhttp.complete) {
        if (ours.error !== undefined) stricter.push(`${text} (${ours.error})`);
        else {
          expect({ complete: ours.complete, data: ours.data }, text).toEqual({ complete: true, data: llhttp.data });
          wholeByBoth += 1;
        }
      } else if (ours.error !== undefined) stricter.push(`${text} (${ours.error})`);
      else expect(ours.complete, `${text}: llhttp waits for more`).toBe(false);
    }
    // Both kinds are well represented, and nothing llhttp accepts is refused here.
    expect(refusedByBoth).toBeGreaterThan(2_000);
    expect(wholeByBoth).toBeGreaterThan(2_000);
    expect(stricter).toEqual([]);
  });
});
