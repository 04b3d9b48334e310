/**
 * HTTP/2 framing (RFC 9113 §4 and §6): the frame types, flags, error codes and settings, a
 * reader that cuts a connection's bytes into frames and checks each against the rules that do
 * not depend on stream state, and the writers for the frames this side sends. Pure: no sockets.
 * What a frame means for a stream (states, flow-control windows, limits) is the connection's
 * (connection.ts).
 */

export const frameType = {
  data: 0x0, headers: 0x1, priority: 0x2, rstStream: 0x3, settings: 0x4, pushPromise: 0x5, ping: 0x6, goaway: 0x7, windowUpdate: 0x8, continuation: 0x9,
} as const;

export const frameFlag = { endStream: 0x1, ack: 0x1, endHeaders: 0x4, padded: 0x8, priority: 0x20 } as const;

/** Error codes of RST_STREAM and GOAWAY (§7). */
export const h2Error = {
  noError: 0x0, protocolError: 0x1, internalError: 0x2, flowControlError: 0x3, settingsTimeout: 0x4, streamClosed: 0x5,
  frameSizeError: 0x6, refusedStream: 0x7, cancel: 0x8, compressionError: 0x9, connectError: 0xa, enhanceYourCalm: 0xb,
  inadequateSecurity: 0xc, http11Required: 0xd,
} as const;

/** SETTINGS parameters (§6.5.2). */
export const setting = { headerTableSize: 0x1, enablePush: 0x2, maxConcurrentStreams: 0x3, initialWindowSize: 0x4, maxFrameSize: 0x5, maxHeaderListSize: 0x6 } as const;

/** What every client sends first (§3.4). */
export const connectionPreface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const frameHeaderBytes = 9;
/** SETTINGS_MAX_FRAME_SIZE's floor and ceiling (§6.5.2); every peer starts at the floor. */
export const minMaxFrameSize = 16_384;
export const maxMaxFrameSize = 2 ** 24 - 1;
/** The largest flow-control window (§6.9.1). */
export const maxWindow = 2 ** 31 - 1;

/** A frame that breaks the connection (§5.4.1): the reader stops; the connection sends GOAWAY with `code`. */
export class H2ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** A frame that breaks one stream (§5.4.2): that stream is reset with `code`, the connection goes on. */
export class H2StreamError extends Error {
  constructor(readonly streamId: number, readonly code: number, message: string) {
    super(message);
  }
}

/** What the reader hands on, frame by frame. Each method may throw H2ConnectionError or H2StreamError. */
export interface FrameSink {
  /**
   * A DATA frame's header: `length` is what it counts against the flow-control windows
   * (padding included, §6.9.1). Its data follows as pieces (dataPiece), then dataEnd.
   */
  dataStart(streamId: number, length: number): void;
  /** Some of the frame's data, a view of the bytes read: valid during the call only, unless the sink copies or keeps its buffer. */
  dataPiece(streamId: number, piece: Buffer): void;
  dataEnd(streamId: number, endStream: boolean): void;
  /** A whole header block (HEADERS and its CONTINUATIONs, joined), as a view valid during the call. */
  headers(streamId: number, block: Buffer, endStream: boolean): void;
  rstStream(streamId: number, code: number): void;
  /** `entries`: identifier, value, identifier, value, ... */
  settings(ack: boolean, entries: number[]): void;
  ping(ack: boolean, payload: Buffer): void;
  goaway(lastStreamId: number, code: number, debug: Buffer): void;
  windowUpdate(streamId: number, increment: number): void;
  /** A well-formed PRIORITY frame: advisory and deprecated (RFC 9113 §5.3.2), told only so that the sink can bound how many it takes. */
  priority(streamId: number): void;
  /** A frame of a type this side does not know, skipped (§5.5); told only so that the sink can bound how many it takes. */
  unknownFrame(type: number): void;
  /** A frame broke one stream (thrown by the reader's checks or by the sink itself): reset it; reading goes on. */
  streamError(err: H2StreamError): void;
}

interface PendingBlock {
  streamId: number;
  endStream: boolean;
  parts: Buffer[];
  bytes: number;
}

/**
 * Cuts bytes into frames. DATA is handed on as it arrives, in pieces that are views of the
 * reads (no copy, whatever the frame's size); every other frame once it is whole. Checks, per
 * §4–§6: a frame's size against our SETTINGS_MAX_FRAME_SIZE, the stream identifier each type
 * needs (0 or not), fixed payload sizes, padding that fits, settings values, and that a header
 * block's CONTINUATIONs follow it with nothing between. Unknown frame types are skipped (§5.5).
 */
export class FrameReader {
  /** Our SETTINGS_MAX_FRAME_SIZE, once the peer has acknowledged it (until then the floor). */
  maxFrameSize = minMaxFrameSize;
  /** The largest header block assembled from CONTINUATIONs before the connection is closed (a CONTINUATION flood holds memory otherwise). */
  maxHeaderBlockBytes = 65_536;
  /** Bytes of a frame header or a non-DATA frame split across reads. */
  private partial: Buffer | undefined;
  /** The DATA frame being read: stream, data bytes left, padding bytes left, END_STREAM. */
  private dataStream = 0;
  private dataLeft = 0;
  private padLeft = 0;
  private dataEndStream = false;
  /** Waiting for the pad length octet of a padded DATA frame whose header ended a read. */
  private dataNeedsPadLength = false;
  private dataFrameLength = 0;
  /** The DATA frame being read broke its stream: its bytes are skipped. */
  private dataDiscarded = false;
  private block: PendingBlock | undefined;

  constructor(private readonly sink: FrameSink) {}

  /**
   * Feeds one read. Throws H2ConnectionError: the connection must end (GOAWAY with its code)
   * and nothing more be read. A stream's error goes to sink.streamError and reading goes on.
   */
  push(chunk: Buffer): void {
    let bytes = chunk;
    if (this.partial) {
      bytes = Buffer.concat([this.partial, chunk]);
      this.partial = undefined;
    }
    let p = 0;
    while (p < bytes.length) {
      if (this.dataNeedsPadLength || this.dataLeft > 0 || this.padLeft > 0) {
        p = this.continueData(bytes, p);
        continue;
      }
      if (bytes.length - p < frameHeaderBytes) break;
      const length = (bytes[p]! << 16) | (bytes[p + 1]! << 8) | bytes[p + 2]!;
      const type = bytes[p + 3]!;
      const flags = bytes[p + 4]!;
      const streamId = bytes.readUInt32BE(p + 5) & 0x7fffffff;
      if (length > this.maxFrameSize) throw new H2ConnectionError(h2Error.frameSizeError, `a frame of ${length} octets, over the ${this.maxFrameSize} allowed (SETTINGS_MAX_FRAME_SIZE)`);
      if (this.block && (type !== frameType.continuation || streamId !== this.block.streamId)) {
        throw new H2ConnectionError(h2Error.protocolError, `a header block on stream ${this.block.streamId} is interrupted by a frame of type ${type} (RFC 9113 §4.3)`);
      }
      if (type === frameType.data) {
        p += frameHeaderBytes;
        this.startData(streamId, flags, length);
        continue;
      }
      if (bytes.length - p < frameHeaderBytes + length) break;
      const payload = bytes.subarray(p + frameHeaderBytes, p + frameHeaderBytes + length);
      p += frameHeaderBytes + length;
      try {
        this.frame(type, flags, streamId, payload);
      } catch (err) {
        if (!(err instanceof H2StreamError)) throw err;
        this.sink.streamError(err);
      }
    }
    if (p < bytes.length) this.partial = Buffer.from(bytes.subarray(p));
  }

  private startData(streamId: number, flags: number, length: number): void {
    if (streamId === 0) throw new H2ConnectionError(h2Error.protocolError, 'a DATA frame on stream 0');
    this.dataStream = streamId;
    this.dataEndStream = (flags & frameFlag.endStream) !== 0;
    this.dataFrameLength = length;
    this.dataDiscarded = false;
    try {
      this.sink.dataStart(streamId, length);
    } catch (err) {
      if (!(err instanceof H2StreamError)) throw err;
      this.dataDiscarded = true;
      this.sink.streamError(err);
    }
    if (flags & frameFlag.padded) {
      if (length === 0) throw new H2ConnectionError(h2Error.frameSizeError, 'a padded DATA frame with no room for its pad length');
      this.dataNeedsPadLength = true;
      return;
    }
    this.dataLeft = length;
    if (length === 0) this.finishData();
  }

  private continueData(bytes: Buffer, at: number): number {
    let p = at;
    if (this.dataNeedsPadLength) {
      const pad = bytes[p++]!;
      this.dataNeedsPadLength = false;
      if (pad >= this.dataFrameLength) throw new H2ConnectionError(h2Error.protocolError, `DATA padding of ${pad} octets in a frame of ${this.dataFrameLength}`);
      this.dataLeft = this.dataFrameLength - 1 - pad;
      this.padLeft = pad;
      if (this.dataLeft === 0 && pad === 0) {
        this.finishData();
        return p;
      }
    }
    if (this.dataLeft > 0) {
      const take = Math.min(this.dataLeft, bytes.length - p);
      if (take > 0) {
        this.dataLeft -= take;
        if (!this.dataDiscarded) this.dataPiece(bytes.subarray(p, p + take));
        p += take;
      }
    }
    if (this.dataLeft === 0 && this.padLeft > 0) {
      const skip = Math.min(this.padLeft, bytes.length - p);
      this.padLeft -= skip;
      p += skip;
    }
    if (this.dataLeft === 0 && this.padLeft === 0) this.finishData();
    return p;
  }

  private dataPiece(piece: Buffer): void {
    try {
      this.sink.dataPiece(this.dataStream, piece);
    } catch (err) {
      if (!(err instanceof H2StreamError)) throw err;
      this.dataDiscarded = true;
      this.sink.streamError(err);
    }
  }

  private finishData(): void {
    const streamId = this.dataStream;
    this.dataStream = 0;
    if (this.dataDiscarded) return;
    try {
      this.sink.dataEnd(streamId, this.dataEndStream);
    } catch (err) {
      if (!(err instanceof H2StreamError)) throw err;
      this.sink.streamError(err);
    }
  }

  private frame(type: number, flags: number, streamId: number, payload: Buffer): void {
    switch (type) {
      case frameType.headers: {
        if (streamId === 0) throw new H2ConnectionError(h2Error.protocolError, 'a HEADERS frame on stream 0');
        let start = 0;
        let end = payload.length;
        if (flags & frameFlag.padded) {
          if (payload.length < 1) throw new H2ConnectionError(h2Error.frameSizeError, 'a padded HEADERS frame with no room for its pad length');
          const pad = payload[0]!;
          start = 1;
          end -= pad;
        }
        if (flags & frameFlag.priority) {
          if (end - start < 5) throw new H2ConnectionError(h2Error.frameSizeError, 'a HEADERS frame too short for its priority fields');
          if ((payload.readUInt32BE(start) & 0x7fffffff) === streamId) throw new H2StreamError(streamId, h2Error.protocolError, `stream ${streamId} depends on itself`);
          start += 5;
        }
        if (end < start) throw new H2ConnectionError(h2Error.protocolError, 'HEADERS padding longer than the frame');
        const fragment = payload.subarray(start, end);
        const endStream = (flags & frameFlag.endStream) !== 0;
        if (flags & frameFlag.endHeaders) this.sink.headers(streamId, fragment, endStream);
        else this.block = { streamId, endStream, parts: [Buffer.from(fragment)], bytes: fragment.length };
        return;
      }
      case frameType.continuation: {
        const block = this.block;
        if (!block) throw new H2ConnectionError(h2Error.protocolError, `a CONTINUATION frame on stream ${streamId} with no header block open`);
        block.bytes += payload.length;
        if (block.bytes > this.maxHeaderBlockBytes) throw new H2ConnectionError(h2Error.enhanceYourCalm, `a header block of more than ${this.maxHeaderBlockBytes} octets`);
        block.parts.push(Buffer.from(payload));
        if (flags & frameFlag.endHeaders) {
          this.block = undefined;
          this.sink.headers(block.streamId, Buffer.concat(block.parts, block.bytes), block.endStream);
        }
        return;
      }
      case frameType.priority:
        if (streamId === 0) throw new H2ConnectionError(h2Error.protocolError, 'a PRIORITY frame on stream 0');
        if (payload.length !== 5) throw new H2StreamError(streamId, h2Error.frameSizeError, `a PRIORITY frame of ${payload.length} octets, not 5`);
        if ((payload.readUInt32BE(0) & 0x7fffffff) === streamId) throw new H2StreamError(streamId, h2Error.protocolError, `stream ${streamId} depends on itself`);
        // Priorities are advisory and deprecated (§5.3.2): a relay has nothing to do with them.
        this.sink.priority(streamId);
        return;
      case frameType.rstStream:
        if (streamId === 0) throw new H2ConnectionError(h2Error.protocolError, 'a RST_STREAM frame on stream 0');
        if (payload.length !== 4) throw new H2ConnectionError(h2Error.frameSizeError, `a RST_STREAM frame of ${payload.length} octets, not 4`);
        this.sink.rstStream(streamId, payload.readUInt32BE(0));
        return;
      case frameType.settings:
        this.settingsFrame(flags, streamId, payload);
        return;
      case frameType.pushPromise:
        // This side never enables push (SETTINGS_ENABLE_PUSH = 0): a peer must not send it (§8.4).
        throw new H2ConnectionError(h2Error.protocolError, 'a PUSH_PROMISE frame, with push disabled');
      case frameType.ping:
        if (streamId !== 0) throw new H2ConnectionError(h2Error.protocolError, `a PING frame on stream ${streamId}`);
        if (payload.length !== 8) throw new H2ConnectionError(h2Error.frameSizeError, `a PING frame of ${payload.length} octets, not 8`);
        this.sink.ping((flags & frameFlag.ack) !== 0, payload);
        return;
      case frameType.goaway:
        if (streamId !== 0) throw new H2ConnectionError(h2Error.protocolError, `a GOAWAY frame on stream ${streamId}`);
        if (payload.length < 8) throw new H2ConnectionError(h2Error.frameSizeError, `a GOAWAY frame of ${payload.length} octets, under 8`);
        this.sink.goaway(payload.readUInt32BE(0) & 0x7fffffff, payload.readUInt32BE(4), payload.subarray(8));
        return;
      case frameType.windowUpdate: {
        if (payload.length !== 4) throw new H2ConnectionError(h2Error.frameSizeError, `a WINDOW_UPDATE frame of ${payload.length} octets, not 4`);
        const increment = payload.readUInt32BE(0) & 0x7fffffff;
        if (increment === 0) {
          if (streamId === 0) throw new H2ConnectionError(h2Error.protocolError, 'a WINDOW_UPDATE of 0 for the connection');
          throw new H2StreamError(streamId, h2Error.protocolError, `a WINDOW_UPDATE of 0 for stream ${streamId}`);
        }
        this.sink.windowUpdate(streamId, increment);
        return;
      }
      default:
        // Unknown types (and extensions this side did not agree to) are ignored (§5.5).
        this.sink.unknownFrame(type);
        return;
    }
  }

  private settingsFrame(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2ConnectionError(h2Error.protocolError, `a SETTINGS frame on stream ${streamId}`);
    const ack = (flags & frameFlag.ack) !== 0;
    if (ack && payload.length !== 0) throw new H2ConnectionError(h2Error.frameSizeError, 'a SETTINGS acknowledgement with a payload');
    if (payload.length % 6 !== 0) throw new H2ConnectionError(h2Error.frameSizeError, `a SETTINGS frame of ${payload.length} octets, not a multiple of 6`);
    const entries: number[] = [];
    for (let p = 0; p < payload.length; p += 6) {
      const id = payload.readUInt16BE(p);
      const value = payload.readUInt32BE(p + 2);
      if (id === setting.enablePush && value > 1) throw new H2ConnectionError(h2Error.protocolError, `SETTINGS_ENABLE_PUSH of ${value}`);
      if (id === setting.initialWindowSize && value > maxWindow) throw new H2ConnectionError(h2Error.flowControlError, `SETTINGS_INITIAL_WINDOW_SIZE of ${value}, over 2^31-1`);
      if (id === setting.maxFrameSize && (value < minMaxFrameSize || value > maxMaxFrameSize)) throw new H2ConnectionError(h2Error.protocolError, `SETTINGS_MAX_FRAME_SIZE of ${value}, outside 16384..16777215`);
      // Unknown settings are ignored (§6.5.2).
      entries.push(id, value);
    }
    this.sink.settings(ack, entries);
  }
}

/** Writes a frame header into `out` at `at`. */
export function writeFrameHeader(out: Buffer, at: number, length: number, type: number, flags: number, streamId: number): void {
  out[at] = (length >>> 16) & 0xff;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  out.writeUInt32BE(streamId, at + 5);
}

/** A frame with `payload` (empty when omitted). */
export function frame(type: number, flags: number, streamId: number, payload?: Buffer): Buffer {
  const length = payload?.length ?? 0;
  const out = Buffer.allocUnsafe(frameHeaderBytes + length);
  writeFrameHeader(out, 0, length, type, flags, streamId);
  payload?.copy(out, frameHeaderBytes);
  return out;
}

/** SETTINGS with `entries` (identifier, value, ...), or the acknowledgement when `ack`. */
export function settingsFrame(entries: readonly number[], ack = false): Buffer {
  if (ack) return frame(frameType.settings, frameFlag.ack, 0);
  const payload = Buffer.allocUnsafe((entries.length / 2) * 6);
  for (let i = 0; i < entries.length; i += 2) {
    payload.writeUInt16BE(entries[i]!, i * 3);
    payload.writeUInt32BE(entries[i + 1]!, i * 3 + 2);
  }
  return frame(frameType.settings, 0, 0, payload);
}

export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const out = Buffer.allocUnsafe(frameHeaderBytes + 4);
  writeFrameHeader(out, 0, 4, frameType.windowUpdate, 0, streamId);
  out.writeUInt32BE(increment, frameHeaderBytes);
  return out;
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const out = Buffer.allocUnsafe(frameHeaderBytes + 4);
  writeFrameHeader(out, 0, 4, frameType.rstStream, 0, streamId);
  out.writeUInt32BE(code, frameHeaderBytes);
  return out;
}

export function pingFrame(payload: Buffer, ack: boolean): Buffer {
  return frame(frameType.ping, ack ? frameFlag.ack : 0, 0, payload);
}

export function goawayFrame(lastStreamId: number, code: number, debug = ''): Buffer {
  const text = Buffer.from(debug, 'utf8');
  const out = Buffer.allocUnsafe(frameHeaderBytes + 8 + text.length);
  writeFrameHeader(out, 0, 8 + text.length, frameType.goaway, 0, 0);
  out.writeUInt32BE(lastStreamId, frameHeaderBytes);
  out.writeUInt32BE(code, frameHeaderBytes + 4);
  text.copy(out, frameHeaderBytes + 8);
  return out;
}

/** A DATA frame's header alone: the data goes after it as its own buffer (no copy of it). */
export function dataFrameHeader(streamId: number, length: number, endStream: boolean): Buffer {
  const out = Buffer.allocUnsafe(frameHeaderBytes);
  writeFrameHeader(out, 0, length, frameType.data, endStream ? frameFlag.endStream : 0, streamId);
  return out;
}

/** A header block as HEADERS and, when it is larger than `maxFrameSize`, CONTINUATION frames, in one buffer. */
export function headerFrames(streamId: number, block: Buffer, endStream: boolean, maxFrameSize: number): Buffer {
  const frames = Math.max(1, Math.ceil(block.length / maxFrameSize));
  const out = Buffer.allocUnsafe(block.length + frames * frameHeaderBytes);
  let o = 0;
  for (let i = 0; i < frames; i += 1) {
    const start = i * maxFrameSize;
    const length = Math.min(maxFrameSize, block.length - start);
    const last = i === frames - 1;
    const type = i === 0 ? frameType.headers : frameType.continuation;
    const flags = (last ? frameFlag.endHeaders : 0) | (i === 0 && endStream ? frameFlag.endStream : 0);
    writeFrameHeader(out, o, length, type, flags, streamId);
    block.copy(out, o + frameHeaderBytes, start, start + length);
    o += frameHeaderBytes + length;
  }
  return out;
}
