/**
 * HPACK's Huffman code (RFC 7541 §5.2, Appendix B). The code is canonical: sorting the symbols
 * by code length, then by value, and counting upwards gives every code in the appendix. So only
 * each symbol's code length is written here (the appendix's "len in bits" column, symbols 0–255
 * and EOS = 256); the codes, the encoder's table and the decoder's state machine are built from
 * them when the module loads. huffman.test.ts checks codes against the appendix and the RFC's
 * worked examples (Appendix C.4).
 */
const repeat = (count: number, length: number): number[] => new Array<number>(count).fill(length);

const codeLengths: readonly number[] = [
  // 0–31: control characters
  13, 23, ...repeat(7, 28), 24, 30, 28, 28, 30, ...repeat(8, 28), 30, ...repeat(9, 28),
  // 32–96: ' ' to '`'
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, ...repeat(7, 6), 7, 8, 15, 6, 12, 10, 13, 6,
  ...repeat(22, 7), 8, 7, 8, 13, 19, 13, 14, 6, 15,
  // 97–127: 'a' to DEL
  5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  // 128–255
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  // EOS
  30,
];

const eos = 256;

/** Each symbol's code, right-aligned in `codeLengths[symbol]` bits (the appendix's hex column). */
export const huffmanCodes: readonly number[] = (() => {
  const order = codeLengths.map((length, symbol) => ({ symbol, length })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  const codes = new Array<number>(codeLengths.length);
  let code = 0;
  let length = order[0]!.length;
  for (const entry of order) {
    code *= 2 ** (entry.length - length);
    length = entry.length;
    codes[entry.symbol] = code;
    code += 1;
  }
  return codes;
})();

export { codeLengths as huffmanCodeLengths };

/** Bytes `bytes[start..end)` take Huffman-coded, padding included. */
export function huffmanLength(bytes: Uint8Array, start: number, end: number): number {
  let bits = 0;
  for (let i = start; i < end; i += 1) bits += codeLengths[bytes[i]!]!;
  return Math.ceil(bits / 8);
}

/**
 * Writes `bytes[start..end)` Huffman-coded into `out` at `at`, padded with the most significant
 * bits of EOS (all ones, §5.2); returns the offset after it. `out` must have room for
 * huffmanLength() bytes.
 */
export function huffmanEncode(bytes: Uint8Array, start: number, end: number, out: Uint8Array, at: number): number {
  // Fewer than 8 bits wait in `pending` between symbols. A code (up to 30 bits) goes in by
  // pieces of at most 24, so that pending stays below 2^31 and every step is 32-bit integer
  // arithmetic (no powers or floating division per bit, which cost the encoder 80% of its time).
  let pending = 0;
  let bits = 0;
  let o = at;
  for (let i = start; i < end; i += 1) {
    const symbol = bytes[i]!;
    const code = huffmanCodes[symbol]!;
    let left = codeLengths[symbol]!;
    while (left > 0) {
      const take = left > 24 ? 24 : left;
      left -= take;
      pending = (pending << take) | ((code >>> left) & ((1 << take) - 1));
      bits += take;
      while (bits >= 8) {
        bits -= 8;
        out[o++] = (pending >>> bits) & 0xff;
      }
      pending &= (1 << bits) - 1;
    }
  }
  if (bits > 0) out[o++] = (pending << (8 - bits)) | (0xff >> bits);
  return o;
}

const failFlag = 1;
/** A transition after which the string may end (what follows the last symbol is valid padding). */
const acceptFlag = 2;

/**
 * The decoder reads four bits at a time through a state machine over the code's tree: a state
 * is an inner node (0 = the root), and for each state and nibble the table says the node the
 * nibble leads to, the symbol completed on the way if any (at most one: no code is shorter than
 * five bits), and whether stopping there would be valid padding. Built once from the codes.
 */
const transitions = (() => {
  // The tree: children of inner node n at 2n, 2n+1; a leaf is stored as ~symbol.
  const children: number[] = [0, 0];
  let nodes = 1;
  for (let symbol = 0; symbol < codeLengths.length; symbol += 1) {
    const length = codeLengths[symbol]!;
    const code = huffmanCodes[symbol]!;
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit -= 1) {
      const side = Math.floor(code / 2 ** bit) & 1;
      const slot = 2 * node + side;
      if (bit === 0) children[slot] = ~symbol;
      else {
        if (children[slot] === 0 || children[slot] === undefined) {
          children[slot] = nodes;
          children.push(0, 0);
          nodes += 1;
        }
        node = children[slot]!;
      }
    }
  }
  // Whether a node is reached from the root by ones only, at most seven of them: stopping
  // there leaves valid padding (§5.2: EOS's first bits, shorter than a byte).
  const paddingOk = new Uint8Array(nodes);
  paddingOk[0] = 1;
  let onesNode = 0;
  for (let depth = 1; depth <= 7; depth += 1) {
    onesNode = children[2 * onesNode + 1]!;
    paddingOk[onesNode] = 1;
  }
  // Per state × nibble: next state, symbol + 1 (0: none), flags.
  const next = new Uint16Array(nodes * 16);
  const emit = new Uint16Array(nodes * 16);
  const flags = new Uint8Array(nodes * 16);
  for (let state = 0; state < nodes; state += 1) {
    for (let nibble = 0; nibble < 16; nibble += 1) {
      let node = state;
      let emitted = 0;
      let failed = false;
      for (let bit = 3; bit >= 0; bit -= 1) {
        const child = children[2 * node + ((nibble >> bit) & 1)]!;
        if (child < 0) {
          const symbol = ~child;
          if (symbol === eos) failed = true;
          emitted = symbol + 1;
          node = 0;
        } else node = child;
      }
      const slot = state * 16 + nibble;
      next[slot] = node;
      emit[slot] = emitted;
      flags[slot] = (failed ? failFlag : 0) | (paddingOk[node] ? acceptFlag : 0);
    }
  }
  return { next, emit, flags };
})();

/** A Huffman-coded string that RFC 7541 §5.2 forbids: EOS inside it, or padding that is not EOS's first bits or is a byte or more. */
export class HuffmanError extends Error {}

/**
 * Decodes `bytes[start..end)` into `scratch` (which must hold at least (end - start) * 8 / 5
 * bytes) and returns the decoded length. Throws HuffmanError on an invalid string.
 */
export function huffmanDecode(bytes: Uint8Array, start: number, end: number, scratch: Uint8Array): number {
  const { next, emit, flags } = transitions;
  let state = 0;
  let accept = true;
  let o = 0;
  for (let i = start; i < end; i += 1) {
    const byte = bytes[i]!;
    let slot = state * 16 + (byte >> 4);
    let symbol = emit[slot]!;
    if (flags[slot]! & failFlag) throw new HuffmanError('EOS inside a Huffman-coded string');
    if (symbol !== 0) scratch[o++] = symbol - 1;
    state = next[slot]!;
    slot = state * 16 + (byte & 15);
    symbol = emit[slot]!;
    const f = flags[slot]!;
    if (f & failFlag) throw new HuffmanError('EOS inside a Huffman-coded string');
    if (symbol !== 0) scratch[o++] = symbol - 1;
    state = next[slot]!;
    accept = (f & acceptFlag) !== 0;
  }
  if (!accept) throw new HuffmanError('a Huffman-coded string ends in padding that is not the first bits of EOS, or is a byte or more');
  return o;
}
