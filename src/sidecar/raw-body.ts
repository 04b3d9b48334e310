import { ChunkedDecoder } from './chunked-decoder.js';

/**
 * Where a body read past Node's parser ends, for the one connection reading it (h1-server.ts for
 * a request, h1-connection.ts for an answer): after the bytes its content-length still owes, or
 * at a chunked body's last chunk (ChunkedDecoder, which checks its framing as llhttp would).
 */
export class RawBody {
  /** Bytes still owed by a body with a length. */
  private left = 0;
  private decoder: ChunkedDecoder | undefined;
  /** After `take`: where the body ended in the bytes taken (what follows is the next message's), or -1. */
  end = -1;
  /** After the `take` that ended a chunked body: its trailer fields, name and value pairs. */
  trailers: string[] | undefined;

  /** A body is being read past the parser and has not ended. */
  get pending(): boolean {
    return this.left > 0 || this.decoder !== undefined;
  }

  /** The next body has `length` bytes. */
  counted(length: number): void {
    this.left = length;
  }

  /** The next body is chunked. */
  chunked(): void {
    this.decoder = new ChunkedDecoder();
  }

  /**
   * The body's bytes in `chunk`, as one view of it (undefined when it held only framing), and
   * `end`. Throws ChunkedBodyError at framing llhttp would refuse; the body is then given up.
   * A chunked body's data may be moved within `chunk` (ChunkedDecoder.feed).
   */
  take(chunk: Buffer): Buffer | undefined {
    this.trailers = undefined;
    const decoder = this.decoder;
    if (decoder) {
      let part: Buffer | undefined;
      try {
        part = decoder.feed(chunk);
      } catch (err) {
        this.decoder = undefined;
        throw err;
      }
      this.end = decoder.end;
      if (this.end >= 0) {
        this.trailers = decoder.trailers;
        this.decoder = undefined;
      }
      return part;
    }
    const take = Math.min(chunk.length, this.left);
    this.left -= take;
    this.end = this.left === 0 ? take : -1;
    return take === chunk.length ? chunk : chunk.subarray(0, take);
  }
}
