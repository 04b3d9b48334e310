/**
 * The chunked transfer coding (RFC 9112 §7.1), decoded as bytes arrive, for a body read past
 * Node's parser (h1-server.ts, startRaw): each chunk's data is handed on as a view of the bytes
 * fed, with no copy, where Node's parser copies every piece of a body into a fresh buffer (and
 * V8 counts those as external memory, which starts major collections: a chunked upload cost a
 * sidecar about half as much CPU again as one with a content-length, docs/benchmark-history.md).
 *
 * The framing is checked at least as strictly as Node's llhttp checks it with no lenient flags:
 * what llhttp refuses is refused here (chunked-decoder.test.ts feeds both the same inputs). A
 * request is framed by this decoder alone: the body goes on re-framed, without the caller's
 * chunk extensions or trailers, so no other parser can read its boundaries differently.
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   last-chunk   = 1*("0") [ chunk-ext ] CRLF
 */

/** Where the decoder is in the framing. */
const size = 0;
const sizeLf = 1;
const data = 2;
const dataCr = 3;
const dataLf = 4;
const trailerStart = 5;
const trailer = 6;
const trailerLf = 7;
const endLf = 8;
const done = 9;
// A chunk extension: `;` name [ `=` ( token | quoted-string ) ], with no whitespace anywhere, as
// llhttp reads it: it also takes an empty name before `=` or `;` (not before the line's end), and
// an empty value.
const extNameStart = 10;
const extName = 11;
const extValue = 12;
const extToken = 13;
const extQuoted = 14;
const extQuotedPair = 15;
const extQuotedEnd = 16;

const CR = 0x0d;
const LF = 0x0a;
const HTAB = 0x09;
const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** The most bytes of one chunk's extensions, and of the whole trailer section (Node's default limit on a head is 16 KiB). */
export const maxExtensionBytes = 16 * 1024;
export const maxTrailerBytes = 16 * 1024;

/** RFC 9110 §5.6.2 token characters, by byte. */
const tokenByte = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") tokenByte[c.charCodeAt(0)] = 1;

/** A hexadecimal digit's value, or -1. */
function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/** A field value's or a quoted-pair's byte: visible, space, tab or obs-text; no other control character. */
function textByte(byte: number): boolean {
  return byte === HTAB || (byte >= 0x20 && byte !== 0x7f);
}

/** qdtext (RFC 9110 §5.6.4): text but for the quote and the backslash. */
function quotedTextByte(byte: number): boolean {
  return textByte(byte) && byte !== QUOTE && byte !== BACKSLASH;
}

/** A Transfer-Encoding of `chunked` alone (any case, no other coding before it): a body this decoder may frame. */
export function onlyChunked(encoding: string): boolean {
  return encoding.length === 7 ? encoding.toLowerCase() === 'chunked' : encoding.trim().toLowerCase() === 'chunked';
}

/** A malformed chunked body; `code` is llhttp's for the same fault, as the servers' clientError reads it. */
export class ChunkedBodyError extends Error {
  constructor(readonly code: string, message: string) {
    super(`malformed chunked body: ${message}`);
  }
}

export class ChunkedDecoder {
  private state = size;
  /** The chunk size read so far (state size), then the data bytes still to come (state data). */
  private left = 0;
  private digits = 0;
  private extBytes = 0;
  private line = '';
  private trailerBytes = 0;
  /** Trailer fields as name, value pairs, names lower-cased. */
  readonly trailers: string[] = [];
  /**
   * After `feed`: the index just past the body's last byte (its final CRLF) in the bytes fed,
   * what follows being the next message's, or -1 when more is to come.
   */
  end = -1;

  /** The chunk data found so far in the bytes being fed, moved together: chunk[from, to). */
  private from = -1;
  private to = -1;

  /**
   * Decodes `chunk` and returns the chunk data in it as one view of `chunk` (undefined when it
   * held only framing); `end` says whether the body ended in it. Throws ChunkedBodyError at the
   * first byte the framing does not allow; the request or answer then fails whole, so the data
   * of that read before the fault is not handed on.
   *
   * Data after the first piece is moved up against it within `chunk`, over the framing between
   * them (a few bytes: CRLF, the next size line): a read that holds the end of one chunk and the
   * start of the next still goes on as one piece, one write. Two writes in a row to a TLS socket
   * cost a record and a system call each, and the second waits in the socket's buffer behind the
   * first, holding the read's buffer, so the connection would read into a fresh one every time.
   * `feed` therefore writes into `chunk`: pass only bytes that are the caller's to change.
   */
  feed(chunk: Buffer): Buffer | undefined {
    this.from = -1;
    this.end = this.decode(chunk);
    if (this.from < 0) return undefined;
    return this.from === 0 && this.to === chunk.length ? chunk : chunk.subarray(this.from, this.to);
  }

  private decode(chunk: Buffer): number {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      const state = this.state;
      if (state === data) {
        const take = Math.min(this.left, n - i);
        this.left -= take;
        if (this.from < 0) {
          this.from = i;
          this.to = i + take;
        } else {
          chunk.copyWithin(this.to, i, i + take);
          this.to += take;
        }
        i += take;
        if (this.left === 0) this.state = dataCr;
        continue;
      }
      const byte = chunk[i] as number;
      i += 1;
      switch (state) {
        case size: {
          const digit = hexValue(byte);
          if (digit >= 0) {
            this.left = this.left * 16 + digit;
            this.digits += 1;
            if (this.left > Number.MAX_SAFE_INTEGER) throw new ChunkedBodyError('HPE_INVALID_CHUNK_SIZE', 'a chunk size too large');
          } else if (this.digits === 0) {
            throw new ChunkedBodyError('HPE_INVALID_CHUNK_SIZE', `a chunk size must start with a hexadecimal digit, not ${describe(byte)}`);
          } else if (byte === SEMICOLON) {
            this.state = extNameStart;
            this.extBytes = 0;
          } else if (byte === CR) {
            this.state = sizeLf;
          } else {
            throw new ChunkedBodyError('HPE_INVALID_CHUNK_SIZE', `${describe(byte)} after a chunk size`);
          }
          break;
        }
        case extNameStart:
        case extName:
        case extValue:
        case extToken:
        case extQuoted:
        case extQuotedPair:
        case extQuotedEnd:
          this.extension(state, byte);
          break;
        case sizeLf: {
          if (byte !== LF) throw new ChunkedBodyError('HPE_STRICT', `${describe(byte)} where LF must follow CR after a chunk size`);
          this.digits = 0;
          if (this.left === 0) this.state = trailerStart;
          else this.state = data;
          break;
        }
        case dataCr: {
          if (byte !== CR) throw new ChunkedBodyError('HPE_STRICT', `${describe(byte)} where CRLF must end a chunk's data`);
          this.state = dataLf;
          break;
        }
        case dataLf: {
          if (byte !== LF) throw new ChunkedBodyError('HPE_STRICT', `${describe(byte)} where LF must follow CR after a chunk's data`);
          this.state = size;
          break;
        }
        case trailerStart: {
          if (byte === CR) this.state = endLf;
          else if (tokenByte[byte] === 1) {
            this.state = trailer;
            this.line = String.fromCharCode(byte);
            this.countTrailer();
          } else throw new ChunkedBodyError('HPE_INVALID_HEADER_TOKEN', `${describe(byte)} at the start of a trailer field`);
          break;
        }
        case trailer: {
          if (byte === CR) {
            this.state = trailerLf;
            this.takeTrailer();
          } else if (!textByte(byte)) throw new ChunkedBodyError('HPE_INVALID_HEADER_TOKEN', `${describe(byte)} in a trailer field`);
          else {
            this.line += String.fromCharCode(byte);
            this.countTrailer();
          }
          break;
        }
        case trailerLf: {
          if (byte !== LF) throw new ChunkedBodyError('HPE_STRICT', `${describe(byte)} where LF must follow CR after a trailer field`);
          this.state = trailerStart;
          break;
        }
        case endLf: {
          if (byte !== LF) throw new ChunkedBodyError('HPE_STRICT', `${describe(byte)} where LF must follow CR at the end of a chunked body`);
          this.state = done;
          return i;
        }
        default:
          // done: nothing more is this body's.
          return i - 1;
      }
    }
    return -1;
  }

  /** One byte of a chunk's extensions (read and checked, then dropped). */
  private extension(state: number, byte: number): void {
    if (++this.extBytes > maxExtensionBytes) throw new ChunkedBodyError('HPE_CHUNK_EXTENSIONS_OVERFLOW', `chunk extensions longer than ${maxExtensionBytes} bytes`);
    let next = -1;
    switch (state) {
      case extNameStart:
        if (tokenByte[byte] === 1) next = extName;
        else if (byte === EQUALS) next = extValue;
        else if (byte === SEMICOLON) next = extNameStart;
        break;
      case extName:
        if (tokenByte[byte] === 1) next = extName;
        else if (byte === EQUALS) next = extValue;
        else if (byte === SEMICOLON) next = extNameStart;
        else if (byte === CR) next = sizeLf;
        break;
      case extValue:
        if (tokenByte[byte] === 1) next = extToken;
        else if (byte === QUOTE) next = extQuoted;
        else if (byte === SEMICOLON) next = extNameStart;
        else if (byte === CR) next = sizeLf;
        break;
      case extToken:
        if (tokenByte[byte] === 1) next = extToken;
        else if (byte === QUOTE) next = extQuoted; // llhttp takes a quoted string after a token's start too
        else if (byte === SEMICOLON) next = extNameStart;
        else if (byte === CR) next = sizeLf;
        break;
      case extQuoted:
        if (byte === QUOTE) next = extQuotedEnd;
        else if (byte === BACKSLASH) next = extQuotedPair;
        else if (quotedTextByte(byte)) next = extQuoted;
        break;
      case extQuotedPair:
        if (textByte(byte)) next = extQuoted;
        break;
      default: // extQuotedEnd
        if (byte === SEMICOLON) next = extNameStart;
        else if (byte === CR) next = sizeLf;
        break;
    }
    if (next < 0) throw new ChunkedBodyError('HPE_STRICT', `${describe(byte)} in a chunk extension`);
    this.state = next;
  }

  private countTrailer(): void {
    if (++this.trailerBytes > maxTrailerBytes) throw new ChunkedBodyError('HPE_HEADER_OVERFLOW', `trailer fields longer than ${maxTrailerBytes} bytes`);
  }

  /** A whole trailer line: `token ":" OWS value OWS`. */
  private takeTrailer(): void {
    const line = this.line;
    this.line = '';
    const colon = line.indexOf(':');
    if (colon <= 0) throw new ChunkedBodyError('HPE_INVALID_HEADER_TOKEN', 'a trailer field without a colon after its name');
    for (let k = 0; k < colon; k += 1) {
      if (tokenByte[line.charCodeAt(k)] !== 1) throw new ChunkedBodyError('HPE_INVALID_HEADER_TOKEN', `${describe(line.charCodeAt(k))} in a trailer field's name`);
    }
    this.trailers.push(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, ''));
  }
}

function describe(byte: number): string {
  return byte >= 0x21 && byte <= 0x7e ? `'${String.fromCharCode(byte)}'` : `byte 0x${byte.toString(16).padStart(2, '0')}`;
}
