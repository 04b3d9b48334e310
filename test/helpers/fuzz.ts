import { mulberry32 } from './random.js';

/**
 * Seeded mutation fuzzing for the suite. A run lasts `ISTHMUS_FUZZ_SECONDS` (default: a couple
 * of seconds, so CI stays short; set it to minutes for a long run) and starts from
 * `ISTHMUS_FUZZ_SEED` (default: a new seed each run). Every case is made from (seed, case number)
 * alone, so a failure message's `seed=… case=…` reproduces it exactly:
 * `ISTHMUS_FUZZ_SEED=<seed> npx vitest run <file>`.
 */
export interface FuzzRun {
  seed: number;
  /** Seconds this run may take, from ISTHMUS_FUZZ_SECONDS or the caller's default. */
  seconds: number;
  /** The input of case `n`: a mutation of one of the corpus entries (or pure noise, now and then). */
  input(n: number): Buffer;
  /** `seed=… case=…`, for failure messages. */
  label(n: number): string;
}

/** Bytes that matter to the parsers under test: framing, separators, encodings. */
const dictionary = [
  '\r\n', '\n', '\r', '\r\n\r\n', ' ', '\t', ':', ';', ',', '\0', '\x7f', '\xff', '%', '%2F', '%2e%2e', '../', '//', '?', '#',
  'Content-Length: ', 'Transfer-Encoding: chunked', 'Host: ', 'Connection: upgrade', 'Upgrade: websocket', 'Expect: 100-continue',
  'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'CONNECT ', 'GET ', 'POST ', '0\r\n\r\n', 'ffffffff', '-1', '99999999999999999999',
  '{', '}', '[', ']', '"', '\\', '\\u0000', 'null', 'true', '1e999', '- ', '&a', '*a', '!!binary', '---\n', '...\n', '? ', '|', '>',
];

/** `seed`: another run's, for a second corpus that one printed seed must reproduce too. */
export function fuzzRun(defaultSeconds = 2, corpus: readonly (string | Buffer)[] = [], seed = Number(process.env.ISTHMUS_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))): FuzzRun {
  const seconds = Number(process.env.ISTHMUS_FUZZ_SECONDS ?? defaultSeconds);
  const bases = corpus.map((c) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c));
  return {
    seed,
    seconds,
    label: (n) => `seed=${seed} case=${n}`,
    input: (n) => {
      const random = mulberry32((seed ^ Math.imul(n + 1, 0x9e3779b1)) >>> 0);
      const below = (k: number) => Math.floor(random() * k);
      if (bases.length === 0 || below(20) === 0) return Buffer.from(Array.from({ length: below(512) }, () => below(256)));
      let bytes: Buffer = Buffer.from(bases[below(bases.length)]!);
      for (let step = 1 + below(4); step > 0; step--) bytes = mutate(bytes, below, bases);
      return bytes;
    },
  };
}

function mutate(bytes: Buffer, below: (k: number) => number, bases: readonly Buffer[]): Buffer {
  const at = below(bytes.length + 1);
  switch (below(7)) {
    case 0: { // flip a bit
      if (bytes.length === 0) return bytes;
      const copy = Buffer.from(bytes);
      const i = Math.min(at, copy.length - 1);
      copy[i] = copy[i]! ^ (1 << below(8));
      return copy;
    }
    case 1: // insert a dictionary token
      return Buffer.concat([bytes.subarray(0, at), Buffer.from(dictionary[below(dictionary.length)]!, 'latin1'), bytes.subarray(at)]);
    case 2: // delete a range
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + 1 + below(16)))]);
    case 3: { // repeat a range
      const piece = bytes.subarray(at, at + 1 + below(32));
      return Buffer.concat([bytes.subarray(0, at), piece, piece, bytes.subarray(at)]);
    }
    case 4: // cut short
      return bytes.subarray(0, at);
    case 5: { // splice in part of another corpus entry
      const other = bases[below(bases.length)]!;
      const from = below(other.length + 1);
      return Buffer.concat([bytes.subarray(0, at), other.subarray(from, from + below(64)), bytes.subarray(at)]);
    }
    default: // a random byte
      return Buffer.concat([bytes.subarray(0, at), Buffer.from([below(256)]), bytes.subarray(at)]);
  }
}
