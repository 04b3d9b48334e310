import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../test/helpers/random.js';
import { huffmanCodeLengths, huffmanCodes, huffmanDecode, HuffmanError, huffmanEncode, huffmanLength } from './huffman.js';

const encode = (text: string): string => {
  const raw = Buffer.from(text, 'latin1');
  const out = Buffer.alloc(huffmanLength(raw, 0, raw.length));
  const end = huffmanEncode(raw, 0, raw.length, out, 0);
  expect(end).toBe(out.length);
  return out.toString('hex');
};
const decode = (hex: string): string => {
  const coded = Buffer.from(hex, 'hex');
  const scratch = Buffer.alloc(coded.length * 2);
  return scratch.toString('latin1', 0, huffmanDecode(coded, 0, coded.length, scratch));
};

describe('HPACK Huffman code (RFC 7541 Appendix B)', () => {
  it.each([
    // symbol, code as the appendix prints it, length
    [0, 0x1ff8, 13], [1, 0x7fffd8, 23], [9, 0xffffea, 24], [10, 0x3ffffffc, 30], [32, 0x14, 6], [48, 0x0, 5],
    [58, 0x5c, 7], [92, 0x7fff0, 19], [97, 0x3, 5], [127, 0xffffffc, 28], [128, 0xfffe6, 20], [195, 0x7fff1, 19],
    [255, 0x3ffffee, 26], [256, 0x3fffffff, 30],
  ])('symbol %i has the appendix code %s in %i bits', (symbol, code, length) => {
    expect(huffmanCodes[symbol]).toBe(code);
    expect(huffmanCodeLengths[symbol]).toBe(length);
  });

  it('is a complete prefix code: the lengths fill the code space exactly (Kraft sum 1)', () => {
    const sum = huffmanCodeLengths.reduce((total, length) => total + 2 ** (30 - length), 0);
    expect(sum).toBe(2 ** 30);
  });

  it.each([
    // RFC 7541 Appendix C.4 and C.6
    ['www.example.com', 'f1e3c2e5f23a6ba0ab90f4ff'],
    ['no-cache', 'a8eb10649cbf'],
    ['custom-key', '25a849e95ba97d7f'],
    ['custom-value', '25a849e95bb8e8b4bf'],
    ['302', '6402'],
    ['private', 'aec3771a4b'],
    ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07abe941054d444a8200595040b8166e082a62d1bff'],
    ['https://www.example.com', '9d29ad171863c78f0b97c8e9ae82ae43d3'],
  ])('codes %j as the RFC example does, and back', (text, hex) => {
    expect(encode(text)).toBe(hex);
    expect(decode(hex)).toBe(text);
  });

  it('round-trips every octet and random strings', () => {
    const all = String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i));
    expect(decode(encode(all))).toBe(all);
    const random = mulberry32(7);
    for (let n = 0; n < 2000; n += 1) {
      const length = Math.floor(random() * 40);
      const text = String.fromCharCode(...Array.from({ length }, () => Math.floor(random() * 256)));
      expect(decode(encode(text))).toBe(text);
    }
  });

  it.each([
    ['padding of eight ones or more', '1fff'], // 'a' (00011), then eleven ones
    ['padding with a zero bit in it', '1e'], // 'a', then 110: not EOS's first bits
    ['EOS inside the string', 'ffffffff'], // thirty ones are EOS
  ])('refuses %s', (_what, hex) => {
    const coded = Buffer.from(hex, 'hex');
    expect(() => huffmanDecode(coded, 0, coded.length, Buffer.alloc(16))).toThrow(HuffmanError);
  });

  it('accepts an empty string and padding of up to seven ones', () => {
    expect(decode('')).toBe('');
    // 'a' = 00011, then three ones of padding.
    expect(decode('1f')).toBe('a');
  });
});
