import { createRequire } from 'node:module';

/**
 * Node's own HTTP/1.1 parser: llhttp compiled into the node binary, the one node:http's client and
 * server use, reached through the module they share. It hands a whole head to JavaScript in one
 * call (names and values in one array) and body bytes as slices of what the socket read. undici's
 * parser is llhttp compiled to WebAssembly and calls into JavaScript once per header name and
 * value: measured on loopback (docs/benchmark-history.md, "Where the CPU goes"), a request through
 * undici's Client cost about 115 µs of CPU against about 71 µs through this parser.
 *
 * `_http_common` is not a documented module, but it is what Node's own HTTP code is built on and
 * it has kept this shape across releases; the tests of the client (h1-connection.test.ts) and the
 * server (h1-server.test.ts) fail at once if it changes.
 */
const nodeRequire = createRequire(import.meta.url);
const common = nodeRequire('_http_common') as { HTTPParser: ParserClass; methods: readonly string[] };

export const HTTPParser = common.HTTPParser;
/** Method names by llhttp's method number, as `kOnHeadersComplete` reports a request's method. */
export const parserMethods = common.methods;

export interface ParserClass {
  new (): NativeParser;
  readonly REQUEST: number;
  readonly RESPONSE: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
  readonly kOnMessageBegin: number;
  /** Called after each read the parser took from a consumed handle, with `execute`'s result. */
  readonly kOnExecute: number;
}

export interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | ParseError;
  finish(): number | ParseError | undefined;
  /** Runs the parser's async-hook destroy callbacks; the native parser stays. */
  free(): void;
  /** Deletes the native parser and the handle that keeps its JavaScript object alive. */
  close(): void;
  /** The parser becomes the handle's reader: reads are parsed as they come (node:http's server does this). */
  consume(handle: StreamHandle): void;
  unconsume(): void;
  /** A copy of the read being parsed, inside kOnExecute. */
  getCurrentBuffer(): Buffer;
  [callback: number]: unknown;
}

/** A socket's native handle (`socket._handle`), as node:http's server drives it for a consumed parser. */
export interface StreamHandle {
  isStreamBase?: boolean;
  /** Set by whoever made a parser consume it: a handle is consumed once. */
  _consumed?: boolean;
  /** net.Socket's own note of whether the handle reads. */
  reading?: boolean;
  readStart(): number;
  readStop(): number;
}

export type ParseError = Error & { code?: string; reason?: string };

/**
 * Ends a parser once its connection is done with it. The native parser holds its JavaScript
 * object through a strong handle until `close()` deletes it, and that object holds the callbacks
 * set on it, so a parser only freed keeps its whole connection alive (sockets, buffers, the
 * request): one leaked connection per connection ever opened. node:http closes the parsers it
 * does not keep for reuse the same way, after the stack that may still be inside one of the
 * parser's callbacks has unwound.
 */
export function releaseParser(parser: NativeParser): void {
  parser.free();
  setImmediate(closeParser, parser);
}

function closeParser(parser: NativeParser): void {
  parser.close();
}
