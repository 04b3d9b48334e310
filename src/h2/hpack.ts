import { huffmanDecode, HuffmanError, huffmanEncode, huffmanLength } from './huffman.js';

/**
 * HPACK, HTTP/2's header compression (RFC 7541): a decoder for the header blocks a peer sends
 * and an encoder for ours, each keeping its side's dynamic table. Pure: bytes in, fields out
 * and back; the connection (connection.ts) carries the blocks and the table sizes its SETTINGS
 * agree. Field names and values are latin1 strings, one character per octet, as HPACK sizes
 * them (§4.1) and as node:http2 hands them over; whether a field is allowed in HTTP/2 (lower
 * case, no connection-specific fields) is checked above this layer.
 */

/** The static table (RFC 7541 Appendix A); index 1 is the first entry. */
export const staticTable: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

const staticCount = staticTable.length;

/** What an entry costs in a dynamic table (§4.1): its octets and 32 more. */
export const entrySize = (name: string, value: string): number => name.length + value.length + 32;

/** The table size both sides start with (RFC 9113 §6.5.2, SETTINGS_HEADER_TABLE_SIZE). */
export const defaultTableSize = 4096;

/**
 * A header block this side cannot decode: a connection error of type COMPRESSION_ERROR
 * (RFC 9113 §4.3), since the two dynamic tables may no longer agree.
 */
export class HpackError extends Error {}

/** A decoded header block. */
export interface HeaderBlock {
  /** Names and values in turn: name, value, name, value, ... in the order they came. */
  fields: string[];
  /** Field numbers (0 = the first pair) sent as never indexed (§6.2.3): a relay must send them the same way (§7.1.3). */
  neverIndexed: number[] | undefined;
  /** The list's size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (RFC 9113 §6.5.2): octets of each name and value, plus 32 each. */
  listSize: number;
}

/**
 * The dynamic table (§2.3.2) as a ring of entries, newest first in index order. Both sides
 * keep one: the decoder's mirrors the peer's encoder, the encoder's what the peer's decoder
 * will hold.
 */
class DynamicTable {
  names: string[] = [];
  values: string[] = [];
  /** Ring position of the newest entry. */
  private newest = -1;
  length = 0;
  size = 0;
  /** Entries ever inserted, and ever evicted: entry number n (1-based) is in the table when evicted < n <= inserted. */
  inserted = 0;
  evicted = 0;

  /** `onEvict` hears of each entry as it leaves the table, with its entry number. */
  constructor(public maxSize: number, private readonly onEvict?: (name: string, value: string, n: number) => void) {}

  /** The entry at dynamic index `i` (1 = newest), as a ring position. */
  position(i: number): number {
    const capacity = this.names.length;
    return (this.newest - (i - 1) + capacity) % capacity;
  }

  add(name: string, value: string): void {
    const size = entrySize(name, value);
    // An entry larger than the table empties it and is not added (§4.4).
    this.evictTo(this.maxSize - size);
    if (size > this.maxSize) return;
    if (this.length === this.names.length) this.grow();
    this.newest = (this.newest + 1) % this.names.length;
    this.names[this.newest] = name;
    this.values[this.newest] = value;
    this.length += 1;
    this.size += size;
    this.inserted += 1;
  }

  resize(maxSize: number): void {
    this.maxSize = maxSize;
    this.evictTo(maxSize);
  }

  private evictTo(limit: number): void {
    while (this.length > 0 && this.size > Math.max(limit, 0)) {
      const oldest = this.position(this.length);
      const name = this.names[oldest]!;
      const value = this.values[oldest]!;
      this.size -= entrySize(name, value);
      this.length -= 1;
      this.evicted += 1;
      this.onEvict?.(name, value, this.evicted);
    }
  }

  private grow(): void {
    const capacity = Math.max(16, this.names.length * 2);
    const names = new Array<string>(capacity);
    const values = new Array<string>(capacity);
    for (let i = this.length; i >= 1; i -= 1) {
      const from = this.position(i);
      names[this.length - i] = this.names[from]!;
      values[this.length - i] = this.values[from]!;
    }
    this.names = names;
    this.values = values;
    this.newest = this.length - 1;
  }
}

/** Continuation bytes an integer may take (§5.1): five carry 35 bits, more than any size or index here can need. */
const maxIntegerBytes = 5;

const noBlock = Buffer.alloc(0);

export class HpackDecoder {
  private readonly table: DynamicTable;
  /** Huffman output: a string of n octets decodes to at most 8n/5 octets. */
  private scratch = Buffer.allocUnsafe(256);
  /** The largest table the peer may ask for: what our SETTINGS_HEADER_TABLE_SIZE allows (§4.2, §6.3). */
  private limit: number;
  /** The block being decoded, where the next field starts, and where the block ends. */
  private block: Buffer = noBlock;
  private p = 0;
  private end = 0;

  constructor(maxTableSize = defaultTableSize) {
    this.table = new DynamicTable(maxTableSize);
    this.limit = maxTableSize;
  }

  /** Our SETTINGS_HEADER_TABLE_SIZE changed (and was acknowledged): size updates beyond it are errors from now on. */
  setLimit(maxTableSize: number): void {
    this.limit = maxTableSize;
    if (this.table.maxSize > maxTableSize) this.table.resize(maxTableSize);
  }

  /** The dynamic table's current size in octets (§4.1), for tests and diagnostics. */
  get tableSize(): number {
    return this.table.size;
  }

  /** Decodes one complete header block (a HEADERS frame's fragment and its CONTINUATIONs, joined). Throws HpackError. */
  decode(block: Buffer, start = 0, end = block.length): HeaderBlock {
    this.block = block;
    this.p = start;
    this.end = end;
    try {
      return this.fields();
    } finally {
      // The block is the reader's; keep none of it past the call.
      this.block = noBlock;
    }
  }

  /** The fields of the block being decoded (this.block from this.p to this.end). */
  private fields(): HeaderBlock {
    const fields: string[] = [];
    let neverIndexed: number[] | undefined;
    let listSize = 0;
    let fieldsSeen = false;
    const block = this.block;
    while (this.p < this.end) {
      const byte = block[this.p]!;
      let name: string;
      let value: string;
      if (byte & 0x80) {
        // Indexed field (§6.1).
        const index = this.entry(this.integer(7));
        name = this.nameOf(index);
        value = this.valueOf(index);
      } else if (byte & 0x40) {
        // Literal with incremental indexing (§6.2.1).
        const index = this.integer(6);
        name = index === 0 ? this.string() : this.nameOf(this.entry(index));
        value = this.string();
        this.table.add(name, value);
      } else if (byte & 0x20) {
        // Dynamic table size update (§6.3): only before the block's first field (§4.2).
        if (fieldsSeen) throw new HpackError('a dynamic table size update after a field');
        const size = this.integer(5);
        if (size > this.limit) throw new HpackError(`a dynamic table size update to ${size} octets, over the ${this.limit} allowed`);
        this.table.resize(size);
        continue;
      } else {
        // Literal without indexing (§6.2.2) or never indexed (§6.2.3).
        const never = (byte & 0x10) !== 0;
        const index = this.integer(4);
        name = index === 0 ? this.string() : this.nameOf(this.entry(index));
        value = this.string();
        if (never) (neverIndexed ??= []).push(fields.length / 2);
      }
      fields.push(name, value);
      listSize += entrySize(name, value);
      fieldsSeen = true;
    }
    return { fields, neverIndexed, listSize };
  }

  /** An integer with a `prefixBits`-bit prefix (§5.1) at this.p. */
  private integer(prefixBits: number): number {
    const block = this.block;
    const mask = (1 << prefixBits) - 1;
    let value = block[this.p++]! & mask;
    if (value < mask) return value;
    let shift = 0;
    for (let n = 0; ; n += 1) {
      if (this.p >= this.end) throw new HpackError('a header block ends inside an integer');
      if (n === maxIntegerBytes) throw new HpackError('an integer in a header block is too long');
      const byte = block[this.p++]!;
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if ((byte & 0x80) === 0) return value;
    }
  }

  /** A string literal (§5.2) at this.p, Huffman-coded or not. */
  private string(): string {
    if (this.p >= this.end) throw new HpackError('a header block ends before a string');
    const huffman = (this.block[this.p]! & 0x80) !== 0;
    const length = this.integer(7);
    if (length > this.end - this.p) throw new HpackError('a string runs past the end of its header block');
    const from = this.p;
    this.p += length;
    if (!huffman) return this.block.toString('latin1', from, this.p);
    if (this.scratch.length < length * 2) this.scratch = Buffer.allocUnsafe(length * 2);
    try {
      const n = huffmanDecode(this.block, from, this.p, this.scratch);
      return this.scratch.toString('latin1', 0, n);
    } catch (err) {
      if (err instanceof HuffmanError) throw new HpackError(err.message);
      throw err;
    }
  }

  /** `index`, checked to name an entry of the static or dynamic table. */
  private entry(index: number): number {
    if (index === 0) throw new HpackError('index 0 in a header block');
    if (index > staticCount + this.table.length) throw new HpackError(`index ${index} is beyond the tables (${staticCount} static, ${this.table.length} dynamic)`);
    return index;
  }

  private nameOf(index: number): string {
    return index <= staticCount ? staticTable[index - 1]![0] : this.table.names[this.table.position(index - staticCount)]!;
  }

  private valueOf(index: number): string {
    return index <= staticCount ? staticTable[index - 1]![1] : this.table.values[this.table.position(index - staticCount)]!;
  }
}

/** Static indexes by name, then value (no key string to build per field). */
const staticExact = new Map<string, Map<string, number>>();
const staticName = new Map<string, number>();
staticTable.forEach(([name, value], i) => {
  if (value !== '') {
    const values = staticExact.get(name) ?? new Map<string, number>();
    values.set(value, i + 1);
    staticExact.set(name, values);
  }
  if (!staticName.has(name)) staticName.set(name, i + 1);
});

/**
 * Fields whose values differ from one message to the next: indexing them would only push the
 * fields that repeat (`:authority`, `content-type`, `user-agent`, a caller's identity header)
 * out of the peer's table.
 */
const changingFields = new Set([
  'content-length', 'date', 'etag', 'last-modified', 'if-modified-since', 'if-none-match', 'age', 'expires',
  'traceparent', 'tracestate', 'x-request-id', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'grpc-timeout',
]);

/** Fields sent never indexed (§7.1.3) whatever the caller says: credentials, which compression must not let an attacker probe (§7.1). */
const secretFields = new Set(['authorization', 'proxy-authorization']);

export class HpackEncoder {
  private readonly table: DynamicTable;
  /**
   * Dynamic entry numbers by name then value, and by name: the newest entry for each, forgotten
   * as it leaves the table, so that a long connection with ever new values (paths, say) holds no
   * more of them than the table does.
   */
  private readonly exact = new Map<string, Map<string, number>>();
  private readonly byName = new Map<string, number>();
  private out = Buffer.allocUnsafe(1024);
  private o = 0;
  /**
   * Size updates owed at the start of the next block (§4.2), or -1: the table's size now, and
   * the smallest it was since the last block, sent first when smaller (the peer's decoder must
   * evict what this encoder evicted).
   */
  private pendingResize = -1;
  private pendingLowest = -1;

  /** `maxTableSize`: the most this side will use of the peer's table, whatever the peer allows. */
  constructor(private readonly maxTableSize = defaultTableSize) {
    this.table = new DynamicTable(Math.min(maxTableSize, defaultTableSize), (name, value, n) => this.forget(name, value, n));
  }

  /** How many name-and-value pairs the encoder remembers for its table (for tests and diagnostics). */
  get remembered(): number {
    let n = 0;
    for (const values of this.exact.values()) n += values.size;
    return n;
  }

  private forget(name: string, value: string, n: number): void {
    const values = this.exact.get(name);
    if (values?.get(value) === n) {
      values.delete(value);
      if (values.size === 0) this.exact.delete(name);
    }
    if (this.byName.get(name) === n) this.byName.delete(name);
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE: the table this encoder fills is at most that. */
  setPeerLimit(peerMaxTableSize: number): void {
    const size = Math.min(peerMaxTableSize, this.maxTableSize);
    if (size === this.table.maxSize) return;
    this.table.resize(size);
    this.pendingResize = size;
    this.pendingLowest = this.pendingLowest < 0 ? size : Math.min(this.pendingLowest, size);
  }

  /**
   * One header block for `fields` (name, value, ...; names in lower case). Field numbers in
   * `neverIndexed` (as HpackDecoder reports them), and credentials, go never indexed.
   */
  encode(fields: readonly string[], neverIndexed?: readonly number[]): Buffer {
    this.o = 0;
    if (this.pendingResize >= 0) {
      if (this.pendingLowest < this.pendingResize) this.integer(this.pendingLowest, 5, 0x20);
      this.integer(this.pendingResize, 5, 0x20);
      this.pendingResize = -1;
      this.pendingLowest = -1;
    }
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i]!;
      const value = fields[i + 1]!;
      const secret = secretFields.has(name) || (neverIndexed !== undefined && neverIndexed.includes(i / 2));
      if (!secret) {
        const index = staticExact.get(name)?.get(value) ?? this.dynamicIndex(this.exact.get(name)?.get(value));
        if (index !== undefined) {
          this.integer(index, 7, 0x80);
          continue;
        }
      }
      const nameIndex = staticName.get(name) ?? this.dynamicIndex(this.byName.get(name)) ?? 0;
      const size = entrySize(name, value);
      // Index what will repeat and fits a quarter of the table; leave the rest out of it.
      const index = !secret && !changingFields.has(name) && size <= this.table.maxSize / 4;
      if (secret) this.integer(nameIndex, 4, 0x10);
      else if (index) this.integer(nameIndex, 6, 0x40);
      else this.integer(nameIndex, 4, 0x00);
      if (nameIndex === 0) this.string(name);
      this.string(value);
      if (index) {
        this.table.add(name, value);
        let values = this.exact.get(name);
        if (values === undefined) {
          values = new Map<string, number>();
          this.exact.set(name, values);
        }
        values.set(value, this.table.inserted);
        this.byName.set(name, this.table.inserted);
      }
    }
    return Buffer.from(this.out.subarray(0, this.o));
  }

  /** The HPACK index of dynamic entry number `n`, if it is still in the table. */
  private dynamicIndex(n: number | undefined): number | undefined {
    if (n === undefined || n <= this.table.evicted) return undefined;
    return staticCount + (this.table.inserted - n) + 1;
  }

  private room(n: number): void {
    if (this.o + n <= this.out.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.out.length * 2, this.o + n));
    this.out.copy(grown, 0, 0, this.o);
    this.out = grown;
  }

  /** An integer with an N-bit prefix (§5.1), the byte's other bits set to `pattern`. */
  private integer(value: number, prefixBits: number, pattern: number): void {
    this.room(6);
    const mask = (1 << prefixBits) - 1;
    if (value < mask) {
      this.out[this.o++] = pattern | value;
      return;
    }
    this.out[this.o++] = pattern | mask;
    let rest = value - mask;
    while (rest >= 0x80) {
      this.out[this.o++] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.out[this.o++] = rest;
  }

  /** A string literal (§5.2), Huffman-coded when that is shorter. */
  private string(text: string): void {
    const length = text.length;
    // Room for the raw octets at the end of the buffer, written there first, then either
    // moved into place or Huffman-coded into place (never longer than 30/8 of the raw form).
    this.room(6 + length * 5);
    const rawAt = this.out.length - length;
    this.out.write(text, rawAt, length, 'latin1');
    const coded = huffmanLength(this.out, rawAt, rawAt + length);
    if (coded < length) {
      this.integer(coded, 7, 0x80);
      this.o = huffmanEncode(this.out, rawAt, rawAt + length, this.out, this.o);
    } else {
      this.integer(length, 7, 0x00);
      this.out.copy(this.out, this.o, rawAt, rawAt + length);
      this.o += length;
    }
  }
}
