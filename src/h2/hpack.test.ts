import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../test/helpers/random.js';
import { HpackDecoder, HpackEncoder, HpackError } from './hpack.js';

const pairs = (fields: string[]): [string, string][] => {
  const out: [string, string][] = [];
  for (let i = 0; i < fields.length; i += 2) out.push([fields[i]!, fields[i + 1]!]);
  return out;
};
const decodeHex = (decoder: HpackDecoder, hex: string) => decoder.decode(Buffer.from(hex.replace(/\s/g, ''), 'hex'));

describe('HPACK decoder, RFC 7541 Appendix C', () => {
  it.each([
    ['C.2.1 literal with indexing', '400a637573746f6d2d6b65790d637573746f6d2d686561646572', [['custom-key', 'custom-header']], 55],
    ['C.2.2 literal without indexing', '040c2f73616d706c652f70617468', [[':path', '/sample/path']], 0],
    ['C.2.3 literal never indexed', '100870617373776f726406736563726574', [['password', 'secret']], 0],
    ['C.2.4 indexed', '82', [[':method', 'GET']], 0],
  ])('%s', (_name, hex, fields, tableSize) => {
    const decoder = new HpackDecoder();
    const block = decodeHex(decoder, hex);
    expect(pairs(block.fields)).toEqual(fields);
    expect(decoder.tableSize).toBe(tableSize);
    if (hex.startsWith('10')) expect(block.neverIndexed).toEqual([0]);
  });

  const requests = [
    [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']],
    [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache']],
    [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']],
  ];
  it.each([
    ['C.3 requests without Huffman', ['828684410f7777772e6578616d706c652e636f6d', '828684be58086e6f2d6361636865', '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565']],
    ['C.4 requests with Huffman', ['828684418cf1e3c2e5f23a6ba0ab90f4ff', '828684be5886a8eb10649cbf', '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf']],
  ])('%s: three blocks on one connection, sharing the table', (_name, blocks) => {
    const decoder = new HpackDecoder();
    blocks.forEach((hex, i) => expect(pairs(decodeHex(decoder, hex).fields)).toEqual(requests[i]));
    expect(decoder.tableSize).toBe(164);
  });

  const date1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
  const responses = [
    [[':status', '302'], ['cache-control', 'private'], ['date', date1], ['location', 'https://www.example.com']],
    [[':status', '307'], ['cache-control', 'private'], ['date', date1], ['location', 'https://www.example.com']],
    [[':status', '200'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'], ['location', 'https://www.example.com'],
      ['content-encoding', 'gzip'], ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1']],
  ];
  it.each([
    ['C.5 responses without Huffman', [
      '4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d',
      '4803333037c1c0bf',
      '88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31',
    ]],
    ['C.6 responses with Huffman', [
      '488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3',
      '4883640effc1c0bf',
      '88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007',
    ]],
  ])('%s: a 256-octet table that evicts', (_name, blocks) => {
    const decoder = new HpackDecoder(256);
    const sizes = [222, 222, 215];
    blocks.forEach((hex, i) => {
      expect(pairs(decodeHex(decoder, hex).fields)).toEqual(responses[i]);
      expect(decoder.tableSize).toBe(sizes[i]);
    });
  });
});

describe('HPACK decoder refuses what would desynchronise the tables', () => {
  it.each([
    ['index 0', '80'],
    ['an index past both tables', 'be'],
    ['a string longer than the block', '400a6375'],
    ['a block that ends inside an integer', 'ff'],
    ['an integer of more than five continuation bytes', 'ff8080808080808001'],
    ['a size update after a field', '8220'],
    ['a size update over the limit', '3fe21f'], // 31 + 98 + 31 × 128 = 4097
    ['a Huffman string with bad padding', '00811e'], // a new name of one Huffman octet: 'a', then 110
  ])('%s', (_name, hex) => {
    expect(() => decodeHex(new HpackDecoder(), hex)).toThrow(HpackError);
  });

  it('counts the header list size as SETTINGS_MAX_HEADER_LIST_SIZE does', () => {
    const block = decodeHex(new HpackDecoder(), '82' + '400a637573746f6d2d6b65790d637573746f6d2d686561646572');
    expect(block.listSize).toBe(':method'.length + 'GET'.length + 32 + 'custom-key'.length + 'custom-header'.length + 32);
  });

  it('takes a size update to zero at the start of a block, and empties the table', () => {
    const decoder = new HpackDecoder();
    decodeHex(decoder, '400a637573746f6d2d6b65790d637573746f6d2d686561646572');
    expect(decoder.tableSize).toBe(55);
    expect(pairs(decodeHex(decoder, '2082').fields)).toEqual([[':method', 'GET']]);
    expect(decoder.tableSize).toBe(0);
    expect(() => decodeHex(decoder, 'be')).toThrow(HpackError);
  });
});

describe('HPACK encoder', () => {
  const roundTrip = (encoder: HpackEncoder, decoder: HpackDecoder, fields: string[], never?: number[]) => {
    const block = decoder.decode(encoder.encode(fields, never));
    expect(block.fields).toEqual(fields);
    return block;
  };

  it('indexes what repeats: the second identical block is one octet per field', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    const fields = [':method', 'POST', ':scheme', 'https', ':path', '/isthmus.dev.Echo/Echo', ':authority', 'grpc-echo.demo.mesh', 'content-type', 'application/grpc', 'te', 'trailers'];
    const first = encoder.encode(fields);
    expect(pairs(decoder.decode(first).fields)).toEqual(pairs(fields));
    const second = encoder.encode(fields);
    expect(second.length).toBe(fields.length / 2);
    expect(decoder.decode(second).fields).toEqual(fields);
  });

  it('never indexes credentials or the fields it is told to, and marks them so', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    const block = roundTrip(encoder, decoder, ['authorization', 'Bearer x', 'x-secret', 'y', 'x-plain', 'z'], [1]);
    expect(block.neverIndexed).toEqual([0, 1]);
    expect(decoder.tableSize).toBe('x-plain'.length + 1 + 32);
  });

  it('leaves values that change per message out of the table', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    roundTrip(encoder, decoder, ['content-length', '1024', 'grpc-timeout', '4999m', 'traceparent', '00-abc-def-01']);
    expect(decoder.tableSize).toBe(0);
  });

  it('follows a smaller table the peer asks for with a size update, and keeps decoding in step', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    roundTrip(encoder, decoder, ['x-a', 'one', 'x-b', 'two']);
    encoder.setPeerLimit(0);
    const block = encoder.encode(['x-a', 'one']);
    expect(block[0]).toBe(0x20);
    expect(decoder.decode(block).fields).toEqual(['x-a', 'one']);
    expect(decoder.tableSize).toBe(0);
    encoder.setPeerLimit(4096);
    roundTrip(encoder, decoder, ['x-a', 'one']);
    expect(decoder.tableSize).toBe(3 + 3 + 32);
  });

  it('stays in step with the decoder over thousands of random blocks with eviction', () => {
    const random = mulberry32(11);
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    const names = ['x-a', 'x-b', 'content-type', 'user-agent', ':path', 'accept', 'x-long', 'cookie'];
    for (let n = 0; n < 3000; n += 1) {
      const fields: string[] = [];
      const count = 1 + Math.floor(random() * 8);
      for (let i = 0; i < count; i += 1) {
        const name = names[Math.floor(random() * names.length)]!;
        const length = name === 'x-long' ? 200 + Math.floor(random() * 900) : Math.floor(random() * 12);
        fields.push(name, String.fromCharCode(...Array.from({ length }, () => 32 + Math.floor(random() * 223))));
      }
      if (random() < 0.02) {
        const limit = [0, 64, 256, 4096][Math.floor(random() * 4)]!;
        encoder.setPeerLimit(limit);
      }
      roundTrip(encoder, decoder, fields);
    }
  });

  it('forgets entries as they leave the table: a long connection with ever new paths holds no more than the table', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    for (let n = 0; n < 20_000; n += 1) roundTrip(encoder, decoder, [':method', 'GET', ':path', `/users/${n}`, 'accept', 'application/json']);
    // 4096 octets hold at most 4096 / (5 + 6 + 32) entries of the smallest kind here.
    expect(encoder.remembered).toBeLessThanOrEqual(Math.floor(4096 / 43));
    expect(encoder.remembered).toBeGreaterThan(10);
    // What it still remembers it still uses: a repeat of the newest path is one octet.
    expect(encoder.encode([':path', '/users/19999'])).toHaveLength(1);
  });
});

describe('HPACK encoder, table size changes between blocks', () => {
  it('sends the smallest size first when the table shrank and grew again, so the peer evicts what it evicted', () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    decoder.decode(encoder.encode(['x-a', 'one']));
    encoder.setPeerLimit(0);
    encoder.setPeerLimit(4096);
    const block = encoder.encode(['x-b', 'two']);
    expect([...block.subarray(0, 4)]).toEqual([0x20, 0x3f, 0xe1, 0x1f]);
    expect(decoder.decode(block).fields).toEqual(['x-b', 'two']);
    expect(decoder.tableSize).toBe(3 + 3 + 32);
  });
});
