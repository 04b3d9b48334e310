import type { Duplex } from 'node:stream';
import {
  connectionPreface, dataFrameHeader, FrameReader, type FrameSink, goawayFrame, H2ConnectionError, h2Error, H2StreamError, headerFrames,
  maxWindow, minMaxFrameSize, pingFrame, rstStreamFrame, setting, settingsFrame, windowUpdateFrame,
} from './frames.js';
import { checkBlock, type BlockKind } from './head-rules.js';
import { HpackDecoder, HpackEncoder, HpackError, type HeaderBlock } from './hpack.js';
import { H2Stream, type StreamHandler, type StreamOwner } from './stream.js';

/** What this side advertises in its SETTINGS. */
export interface LocalSettings {
  maxConcurrentStreams: number;
  /** Each stream's receive window: what a peer may send on a stream before this side has passed it on. */
  initialWindowSize: number;
  maxHeaderListSize: number;
  /** The connection's receive window, over all streams (opened with a WINDOW_UPDATE after SETTINGS). */
  connectionWindowSize: number;
  /** How long the peer has to acknowledge this side's SETTINGS before the connection ends with SETTINGS_TIMEOUT (RFC 9113 §6.5.3). */
  settingsTimeoutMs: number;
}

/**
 * Defaults for a relay: a stream's window of 256 KiB lets a stream run at speed across a
 * hop without letting one stream hold more than that; the connection's 8 MiB bounds what all of
 * a connection's streams together can leave in this process. 1,000 streams at a time and a
 * 64 KiB header list.
 */
export const defaultLocalSettings: LocalSettings = {
  maxConcurrentStreams: 1000, initialWindowSize: 256 * 1024, maxHeaderListSize: 64 * 1024, connectionWindowSize: 8 * 1024 * 1024,
  settingsTimeoutMs: 10_000,
};

/** Every peer's settings until its SETTINGS frame says otherwise (RFC 9113 §6.5.2). */
const defaultWindow = 65_535;

export interface H2ConnectionOptions {
  role: 'client' | 'server';
  settings?: Partial<LocalSettings>;
  /**
   * Server: the peer opened a stream with `head` (checked as a request). Attach its handler now
   * or later (`stream.attach`): what arrives before that is kept and replayed.
   */
  onStream?: (stream: H2Stream, head: HeaderBlock, endStream: boolean) => void;
  /** The connection is over: after a GOAWAY both ways and its streams' end, a connection error (`err`), or its socket's close. */
  onClose?: (err: Error | undefined) => void;
}

/**
 * Resets allowed from a peer before the connection is closed with ENHANCE_YOUR_CALM: a burst of
 * 1000, refilled at 33 a second, nghttp2's defaults for the "rapid reset" attack (CVE-2023-44487).
 */
const resetBurst = 1000;
const resetRefillPerSecond = 33;
/**
 * PRIORITY frames a peer may send: this many for each stream opened on the connection, and as
 * many before the first. They change nothing here, but each costs a read and a check; Envoy
 * bounds them the same way and with the same default (`max_inbound_priority_frames_per_stream`,
 * 100), against floods of them (CVE-2019-9513). RFC 9218's PRIORITY_UPDATE frames, unknown to
 * this side and sent by clients per request, count as PRIORITY frames.
 */
const priorityFramesPerStream = 100;
const priorityUpdateType = 0x10;
/** Bytes waiting in the socket past which PING and SETTINGS from the peer are a flood (it does not read our acknowledgements). */
const controlFloodBytes = 4 * 1024 * 1024;

const empty = Buffer.alloc(0);

/**
 * One HTTP/2 connection over a socket this side has already connected or accepted (plain TCP
 * for h2c, or TLS after ALPN chose h2), either side of it. It keeps the stream table, the
 * settings of both sides, flow control both ways and the limits that protect the process, and
 * hands each stream's head, data, trailers and end to that stream's handler. It checks what the
 * peer sends (frames.ts for framing, head-rules.ts for header blocks, stream states and windows
 * here) and answers a broken stream with RST_STREAM and a broken connection with GOAWAY.
 *
 * Writes are corked until the end of the current tick, so the frames one read causes go out
 * together. Data handed to a stream's write must not change until then (a read's fresh
 * buffer, as 'data' events give, is safe).
 */
export class H2Connection implements FrameSink, StreamOwner {
  private readonly reader: FrameReader;
  private readonly decoder = new HpackDecoder();
  private readonly encoder = new HpackEncoder();
  private readonly local: LocalSettings;
  private readonly streams = new Map<number, H2Stream>();
  private readonly role: 'client' | 'server';
  private prefaceLeft: number;
  private peerSettingsSeen = false;
  /** The peer's settings that this side obeys. */
  private peerMaxFrameSize = minMaxFrameSize;
  private peerInitialWindow = defaultWindow;
  private peerMaxStreams = Number.POSITIVE_INFINITY;
  private connectionSendWindow = defaultWindow;
  private connectionReceiveWindow: number;
  private connectionUnacknowledged = 0;
  /** The highest stream the peer opened, and the next this side will open (client). */
  private lastPeerStream = 0;
  /**
   * The last streams to close, by id: true for those this side reset, whose peer may still have
   * frames in flight (ignored, §5.1 "closed"), false for those that ended otherwise, where a new
   * HEADERS or DATA is the peer's error (STREAM_CLOSED). Bounded: the oldest are forgotten.
   */
  private readonly recentlyClosed = new RecentlyClosed(1000);
  private nextStreamId = 1;
  /** Client requests waiting for a stream slot (the peer's SETTINGS_MAX_CONCURRENT_STREAMS). */
  private readonly queued: { stream: H2Stream; fields: readonly string[]; endStream: boolean; neverIndexed: readonly number[] | undefined }[] = [];
  /** Streams whose writes wait for the connection's window. */
  private readonly blocked = new Set<H2Stream>();
  /** GOAWAY: the last stream the peer will process (received), and whether this side sent one. */
  private peerGoaway = -1;
  private goawaySent = false;
  private closedWith: Error | null | undefined;
  private corked = false;
  private resetTokens = resetBurst;
  private resetRefilledAt = Date.now();
  /** Streams opened on this connection by either side, and PRIORITY frames from the peer (bounded by them). */
  private streamsOpened = 0;
  private priorityFrames = 0;
  /** The DATA frame being read: its flow-control length and the octets handed on from it. */
  private dataLength = 0;
  private dataDelivered = 0;
  private settingsTimer: NodeJS.Timeout | undefined;

  constructor(private readonly socket: Duplex, private readonly options: H2ConnectionOptions) {
    this.role = options.role;
    this.local = { ...defaultLocalSettings, ...options.settings };
    this.connectionReceiveWindow = this.local.connectionWindowSize;
    this.prefaceLeft = this.role === 'server' ? connectionPreface.length : 0;
    this.reader = new FrameReader(this);
    this.reader.maxHeaderBlockBytes = this.local.maxHeaderListSize * 2;
    if (this.role === 'client') this.queue(connectionPreface);
    this.queue(settingsFrame([
      ...(this.role === 'client' ? [setting.enablePush, 0] : []),
      setting.maxConcurrentStreams, this.local.maxConcurrentStreams,
      setting.initialWindowSize, this.local.initialWindowSize,
      setting.maxHeaderListSize, this.local.maxHeaderListSize,
    ]));
    if (this.local.connectionWindowSize > defaultWindow) this.queue(windowUpdateFrame(0, this.local.connectionWindowSize - defaultWindow));
    this.settingsTimer = setTimeout(() => {
      this.fail(new H2ConnectionError(h2Error.settingsTimeout, `the peer did not acknowledge this side's SETTINGS within ${this.local.settingsTimeoutMs} ms`));
    }, this.local.settingsTimeoutMs);
    this.settingsTimer.unref();
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('drain', () => this.drained());
    socket.on('error', (err: Error) => this.end(err));
    socket.on('close', () => this.end(undefined));
    // A socket handed over paused (a sniffer read its first bytes and put them back) reads on.
    socket.resume();
  }

  /** Streams open now. */
  get activeStreams(): number {
    return this.streams.size;
  }

  /** Whether the connection takes new streams (no GOAWAY either way, not closed). */
  get usable(): boolean {
    return this.closedWith === undefined && this.peerGoaway < 0 && !this.goawaySent;
  }

  get writable(): boolean {
    return !(this.socket as { writableNeedDrain?: boolean }).writableNeedDrain;
  }

  /**
   * Client: opens a stream with `fields` as its request head. When the peer's stream limit is
   * reached the head waits for a slot. Throws when the connection no longer takes streams.
   */
  request(fields: readonly string[], endStream: boolean, handler: StreamHandler, neverIndexed?: readonly number[]): H2Stream {
    if (this.role !== 'client') throw new Error('only a client opens streams');
    if (!this.usable) throw new H2ConnectionError(h2Error.refusedStream, 'the connection takes no new streams (GOAWAY, or closed)');
    const stream = new H2Stream(this.nextStreamId, this, this.peerInitialWindow, this.local.initialWindowSize);
    this.nextStreamId += 2;
    stream.attach(handler);
    if (this.streams.size >= this.peerMaxStreams) this.queued.push({ stream, fields, endStream, neverIndexed });
    else this.open(stream, fields, endStream, neverIndexed);
    return stream;
  }

  /** Closes gracefully: GOAWAY (NO_ERROR); streams already open finish; then the socket ends. */
  close(): void {
    if (this.closedWith !== undefined) return;
    if (!this.goawaySent) {
      this.goawaySent = true;
      this.queue(goawayFrame(this.lastPeerStream, h2Error.noError));
    }
    this.endIfIdle();
  }

  /** Ends at once: GOAWAY with `code`, every stream closed with it, the socket ended. */
  destroy(code: number = h2Error.cancel, message = ''): void {
    this.fail(new H2ConnectionError(code, message || 'closed by this side'));
  }

  // --- reading -------------------------------------------------------------------------

  private read(chunk: Buffer): void {
    if (this.closedWith !== undefined) return;
    let bytes = chunk;
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, bytes.length);
      const at = connectionPreface.length - this.prefaceLeft;
      if (!bytes.subarray(0, n).equals(connectionPreface.subarray(at, at + n))) {
        this.fail(new H2ConnectionError(h2Error.protocolError, 'the connection does not start with the HTTP/2 preface'));
        return;
      }
      this.prefaceLeft -= n;
      bytes = bytes.subarray(n);
      if (bytes.length === 0) return;
    }
    try {
      this.reader.push(bytes);
    } catch (err) {
      if (err instanceof H2ConnectionError) this.fail(err);
      else if (err instanceof HpackError) this.fail(new H2ConnectionError(h2Error.compressionError, err.message));
      // A handler's own failure: thrown from a socket's read it would end the process; it ends
      // this connection instead, and onClose hears why.
      else this.fail(Object.assign(new H2ConnectionError(h2Error.internalError, `a stream handler failed: ${(err as Error).message}`), { cause: err }));
    }
  }

  /** The peer's first frame must be SETTINGS (§3.4). */
  private expectSettings(): void {
    if (!this.peerSettingsSeen) throw new H2ConnectionError(h2Error.protocolError, 'the peer\'s first frame is not SETTINGS');
  }

  /** The stream a frame is for: open, or undefined when closed; a frame for an idle stream is a connection error. */
  private streamFor(streamId: number, what: string): H2Stream | undefined {
    const stream = this.streams.get(streamId);
    if (stream) return stream;
    const peerOpens = (streamId % 2 === 1) === (this.role === 'server');
    const idle = peerOpens ? streamId > this.lastPeerStream : streamId >= this.nextStreamId;
    if (idle) throw new H2ConnectionError(h2Error.protocolError, `${what} on stream ${streamId}, which was never opened`);
    return undefined;
  }

  dataStart(streamId: number, length: number): void {
    this.expectSettings();
    if (length > this.connectionReceiveWindow) throw new H2ConnectionError(h2Error.flowControlError, `${length} octets of DATA with ${this.connectionReceiveWindow} left in the connection's window`);
    this.connectionReceiveWindow -= length;
    this.dataLength = length;
    this.dataDelivered = 0;
    const stream = this.streamFor(streamId, 'DATA');
    if (!stream) {
      // A closed stream: what it sent counted against the connection's window all the same (§6.9).
      this.dataLength = 0;
      this.creditConnection(length);
      // Reset by this side (or long gone): frames the peer sent before it knew are ignored.
      if (this.recentlyClosed.get(streamId) !== false) return;
      throw new H2StreamError(streamId, h2Error.streamClosed, `DATA on stream ${streamId}, which had ended`);
    }
    if (stream.state === 'half-closed-remote') {
      this.dataLength = 0;
      this.creditConnection(length);
      throw new H2StreamError(streamId, h2Error.streamClosed, `DATA on stream ${streamId} after the peer ended it`);
    }
    if (!stream.headReceived) throw new H2StreamError(streamId, h2Error.protocolError, `DATA on stream ${streamId} before its head`);
    if (length > stream.receiveWindow) throw new H2StreamError(streamId, h2Error.flowControlError, `${length} octets of DATA with ${stream.receiveWindow} left in stream ${streamId}'s window`);
    stream.receiveWindow -= length;
  }

  dataPiece(streamId: number, piece: Buffer): void {
    const stream = this.streams.get(streamId);
    this.dataDelivered += piece.length;
    if (!stream) {
      // Closed while its frame was being read (the handler reset it), or ignored at the frame's start.
      if (this.dataLength > 0) this.creditConnection(piece.length);
      return;
    }
    stream.receivedBytes += piece.length;
    stream.held += piece.length;
    if (stream.expectedBytes >= 0 && stream.receivedBytes > stream.expectedBytes) {
      throw new H2StreamError(streamId, h2Error.protocolError, `more DATA on stream ${streamId} than its content-length of ${stream.expectedBytes}`);
    }
    stream.emitData(piece, false);
  }

  dataEnd(streamId: number, endStream: boolean): void {
    // An empty DATA frame that does not end its stream carries nothing: a flood of them costs this
    // side work for no data (CVE-2019-9518, "empty frames"). The same budget as resets.
    if (this.dataLength === 0 && !endStream) this.spend('empty DATA frames');
    const stream = this.streams.get(streamId);
    // Padding is never handed on: credit it at once.
    const padding = this.dataLength - this.dataDelivered;
    if (padding > 0) {
      if (stream) this.credit(stream, padding);
      else this.creditConnection(padding);
    }
    if (!stream || !endStream) return;
    if (stream.expectedBytes >= 0 && stream.receivedBytes !== stream.expectedBytes) {
      throw new H2StreamError(streamId, h2Error.protocolError, `stream ${streamId} ended after ${stream.receivedBytes} octets of DATA, not its content-length of ${stream.expectedBytes}`);
    }
    stream.emitData(empty, true);
    this.remoteEnded(stream);
  }

  headers(streamId: number, blockBytes: Buffer, endStream: boolean): void {
    this.expectSettings();
    // Decoded whatever becomes of the stream: the peer's table changed with it.
    const block = this.decoder.decode(blockBytes);
    const existing = this.streams.get(streamId);
    if (!existing) {
      if (this.role === 'client') {
        this.streamFor(streamId, 'HEADERS');
        if (this.recentlyClosed.get(streamId) !== false) return;
        throw new H2ConnectionError(h2Error.streamClosed, `HEADERS on stream ${streamId}, which had ended`);
      }
      return this.openedByPeer(streamId, block, endStream);
    }
    if (existing.state === 'half-closed-remote') throw new H2StreamError(streamId, h2Error.streamClosed, `HEADERS on stream ${streamId} after its end`);
    if (block.listSize > this.local.maxHeaderListSize) throw new H2StreamError(streamId, h2Error.protocolError, `a header list of ${block.listSize} octets, over the ${this.local.maxHeaderListSize} allowed`);
    const kind: BlockKind = existing.headReceived || this.role === 'server' ? 'trailers' : 'response';
    if (kind === 'trailers' && !endStream) throw new H2StreamError(streamId, h2Error.protocolError, `trailers on stream ${streamId} without END_STREAM`);
    const facts = checkBlock(block.fields, kind);
    if (typeof facts === 'string') throw new H2StreamError(streamId, h2Error.protocolError, `a malformed ${kind} on stream ${streamId}: ${facts}`);
    let report: 'head' | 'informational' | 'trailers' = kind === 'trailers' ? 'trailers' : 'head';
    if (kind === 'response') {
      const informational = block.fields[1]!.charCodeAt(0) === 0x31; // :status comes first: 1xx
      if (informational) {
        if (endStream) throw new H2StreamError(streamId, h2Error.protocolError, `an informational head that ends stream ${streamId}`);
        report = 'informational';
      } else {
        existing.headReceived = true;
        existing.expectedBytes = facts.contentLength;
      }
    }
    existing.emitHeaders(block, endStream, report);
    if (endStream) this.remoteEnded(existing);
  }

  private openedByPeer(streamId: number, block: HeaderBlock, endStream: boolean): void {
    if (streamId % 2 === 0) throw new H2ConnectionError(h2Error.protocolError, `a client opened the even stream ${streamId}`);
    if (streamId <= this.lastPeerStream) {
      const resetHere = this.recentlyClosed.get(streamId);
      // Trailers that crossed this side's RST_STREAM: decoded above (the table changed with
      // them), otherwise ignored (§5.1, "closed").
      if (resetHere === true) return;
      if (resetHere === false) throw new H2ConnectionError(h2Error.streamClosed, `HEADERS on stream ${streamId}, which had ended`);
      throw new H2ConnectionError(h2Error.protocolError, `a new stream ${streamId} below the last one opened (${this.lastPeerStream}), RFC 9113 §5.1.1`);
    }
    this.lastPeerStream = streamId;
    this.streamsOpened += 1;
    if (this.goawaySent) return; // after our GOAWAY: not processed (the peer knows from its last stream id)
    if (this.streams.size >= this.local.maxConcurrentStreams) throw new H2StreamError(streamId, h2Error.refusedStream, `stream ${streamId} is over the ${this.local.maxConcurrentStreams} allowed at a time`);
    if (block.listSize > this.local.maxHeaderListSize) throw new H2StreamError(streamId, h2Error.protocolError, `a header list of ${block.listSize} octets, over the ${this.local.maxHeaderListSize} allowed`);
    const facts = checkBlock(block.fields, 'request');
    if (typeof facts === 'string') throw new H2StreamError(streamId, h2Error.protocolError, `a malformed request on stream ${streamId}: ${facts}`);
    const stream = new H2Stream(streamId, this, this.peerInitialWindow, this.local.initialWindowSize);
    stream.state = endStream ? 'half-closed-remote' : 'open';
    stream.headReceived = true;
    stream.expectedBytes = facts.contentLength;
    if (endStream && facts.contentLength > 0) throw new H2StreamError(streamId, h2Error.protocolError, `stream ${streamId} ended with its head, before the ${facts.contentLength} octets its content-length says`);
    this.streams.set(streamId, stream);
    if (this.options.onStream) this.options.onStream(stream, block, endStream);
    else stream.reset(h2Error.refusedStream);
  }

  priority(): void {
    this.priorityFrames += 1;
    if (this.priorityFrames > priorityFramesPerStream * (1 + this.streamsOpened)) {
      throw new H2ConnectionError(h2Error.enhanceYourCalm, `more than ${priorityFramesPerStream} PRIORITY frames per stream opened`);
    }
  }

  unknownFrame(type: number): void {
    if (type === priorityUpdateType) this.priority();
    else this.spend('frames of a type this side does not know');
  }

  rstStream(streamId: number, code: number): void {
    this.expectSettings();
    const stream = this.streamFor(streamId, 'RST_STREAM');
    if (!stream) return;
    if (this.role === 'server') this.spend('streams reset by the peer (a rapid-reset flood)');
    this.finish(stream, code, code === h2Error.refusedStream);
  }

  settings(ack: boolean, entries: number[]): void {
    if (ack) {
      if (!this.peerSettingsSeen) throw new H2ConnectionError(h2Error.protocolError, 'a SETTINGS acknowledgement before the peer\'s SETTINGS');
      clearTimeout(this.settingsTimer);
      return;
    }
    this.peerSettingsSeen = true;
    for (let i = 0; i < entries.length; i += 2) {
      const value = entries[i + 1]!;
      switch (entries[i]) {
        case setting.headerTableSize: this.encoder.setPeerLimit(value); break;
        case setting.enablePush:
          if (this.role === 'client' && value !== 0) throw new H2ConnectionError(h2Error.protocolError, 'a server sent SETTINGS_ENABLE_PUSH of 1');
          break;
        case setting.maxConcurrentStreams: this.peerMaxStreams = value; break;
        case setting.initialWindowSize: {
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const stream of this.streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > maxWindow) throw new H2ConnectionError(h2Error.flowControlError, `SETTINGS_INITIAL_WINDOW_SIZE takes stream ${stream.id}'s window over 2^31-1`);
          }
          break;
        }
        case setting.maxFrameSize: this.peerMaxFrameSize = value; break;
        default: break;
      }
    }
    if ((this.socket as { writableLength?: number }).writableLength! > controlFloodBytes) throw new H2ConnectionError(h2Error.enhanceYourCalm, 'SETTINGS faster than this side\'s acknowledgements are read');
    this.queue(settingsFrame([], true));
    this.flushBlocked();
    this.startQueued();
  }

  ping(ack: boolean, payload: Buffer): void {
    this.expectSettings();
    if (ack) return;
    if ((this.socket as { writableLength?: number }).writableLength! > controlFloodBytes) throw new H2ConnectionError(h2Error.enhanceYourCalm, 'PINGs faster than their answers are read');
    this.queue(pingFrame(Buffer.from(payload), true));
  }

  goaway(lastStreamId: number, code: number, debug: Buffer): void {
    this.expectSettings();
    this.peerGoaway = lastStreamId;
    // Streams this side opened past the peer's last were not processed: they may go elsewhere (§6.8).
    for (const stream of [...this.streams.values()]) {
      if (stream.id > lastStreamId && (stream.id % 2 === 1) === (this.role === 'client')) this.finish(stream, h2Error.refusedStream, true);
    }
    for (const { stream } of this.queued.splice(0)) this.finish(stream, h2Error.refusedStream, true);
    if (code !== h2Error.noError) {
      this.fail(new H2ConnectionError(code, `the peer ended the connection (GOAWAY ${code}${debug.length > 0 ? `: ${debug.toString('utf8', 0, 200)}` : ''})`), false);
      return;
    }
    this.endIfIdle();
  }

  windowUpdate(streamId: number, increment: number): void {
    this.expectSettings();
    if (streamId === 0) {
      this.connectionSendWindow += increment;
      if (this.connectionSendWindow > maxWindow) throw new H2ConnectionError(h2Error.flowControlError, 'a WINDOW_UPDATE takes the connection\'s window over 2^31-1');
      this.flushBlocked();
      return;
    }
    const stream = this.streamFor(streamId, 'WINDOW_UPDATE');
    if (!stream) return;
    stream.sendWindow += increment;
    if (stream.sendWindow > maxWindow) throw new H2StreamError(streamId, h2Error.flowControlError, `a WINDOW_UPDATE takes stream ${streamId}'s window over 2^31-1`);
    stream.flush();
  }

  streamError(err: H2StreamError): void {
    const stream = this.streams.get(err.streamId);
    this.queue(rstStreamFrame(err.streamId, err.code));
    if (stream) this.finish(stream, err.code, false, true);
    else this.recentlyClosed.add(err.streamId, true);
  }

  // --- writing -------------------------------------------------------------------------

  sendHeaders(stream: H2Stream, fields: readonly string[], endStream: boolean, neverIndexed?: readonly number[]): void {
    if (this.closedWith !== undefined) return;
    this.queue(headerFrames(stream.id, this.encoder.encode(fields, neverIndexed), endStream, this.peerMaxFrameSize));
    stream.headSent = true;
    if (endStream) this.localEnded(stream);
  }

  sendData(stream: H2Stream, data: Buffer, endStream: boolean): number {
    if (this.closedWith !== undefined) return 0;
    let sent = 0;
    if (data.length === 0) {
      if (endStream) {
        this.queue(dataFrameHeader(stream.id, 0, true));
        this.localEnded(stream);
      }
      return 0;
    }
    while (sent < data.length) {
      const room = Math.min(stream.sendWindow, this.connectionSendWindow, this.peerMaxFrameSize);
      if (room <= 0) {
        if (this.connectionSendWindow <= 0) this.blocked.add(stream);
        return sent;
      }
      const length = Math.min(room, data.length - sent);
      const last = sent + length === data.length;
      this.queue(dataFrameHeader(stream.id, length, last && endStream));
      this.queue(data.subarray(sent, sent + length));
      stream.sendWindow -= length;
      this.connectionSendWindow -= length;
      sent += length;
    }
    if (endStream) this.localEnded(stream);
    return sent;
  }

  sendReset(stream: H2Stream, code: number): void {
    if (this.closedWith === undefined) this.queue(rstStreamFrame(stream.id, code));
    this.finish(stream, code, false, true);
  }

  credit(stream: H2Stream, n: number): void {
    this.creditConnection(n);
    // A stream the peer has ended sends nothing more: its window no longer matters.
    if (stream.state !== 'open' && stream.state !== 'half-closed-local') return;
    stream.unacknowledged += n;
    if (stream.unacknowledged >= this.local.initialWindowSize / 2) {
      this.queue(windowUpdateFrame(stream.id, stream.unacknowledged));
      stream.receiveWindow += stream.unacknowledged;
      stream.unacknowledged = 0;
    }
  }

  private creditConnection(n: number): void {
    this.connectionUnacknowledged += n;
    if (this.connectionUnacknowledged >= this.local.connectionWindowSize / 4) {
      this.queue(windowUpdateFrame(0, this.connectionUnacknowledged));
      this.connectionReceiveWindow += this.connectionUnacknowledged;
      this.connectionUnacknowledged = 0;
    }
  }

  /** Writes `bytes`, corked until the end of this tick with whatever else is written in it. */
  private queue(bytes: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
  }

  private drained(): void {
    for (const stream of this.streams.values()) if (stream.needsWritable) stream.flush();
  }

  private flushBlocked(): void {
    if (this.connectionSendWindow <= 0) return;
    for (const stream of [...this.blocked]) {
      this.blocked.delete(stream);
      stream.flush();
      if (this.connectionSendWindow <= 0) return;
    }
    for (const stream of this.streams.values()) if (stream.blocked && stream.sendWindow > 0) stream.flush();
  }

  // --- stream and connection ends --------------------------------------------------------

  private open(stream: H2Stream, fields: readonly string[], endStream: boolean, neverIndexed?: readonly number[]): void {
    this.streams.set(stream.id, stream);
    this.streamsOpened += 1;
    stream.state = 'open';
    this.sendHeaders(stream, fields, endStream, neverIndexed);
    // What was written while the head waited for a slot.
    stream.flush();
  }

  private startQueued(): void {
    while (this.queued.length > 0 && this.streams.size < this.peerMaxStreams && this.usable) {
      const { stream, fields, endStream, neverIndexed } = this.queued.shift()!;
      this.open(stream, fields, endStream, neverIndexed);
    }
  }

  private remoteEnded(stream: H2Stream): void {
    if (stream.state === 'open') stream.state = 'half-closed-remote';
    else if (stream.state === 'half-closed-local') this.finish(stream, h2Error.noError, false);
  }

  private localEnded(stream: H2Stream): void {
    if (stream.state === 'open') stream.state = 'half-closed-local';
    else if (stream.state === 'half-closed-remote') this.finish(stream, h2Error.noError, false);
  }

  private finish(stream: H2Stream, code: number, unprocessed: boolean, resetHere = false): void {
    if (stream.state === 'closed') return;
    stream.state = 'closed';
    this.recentlyClosed.add(stream.id, resetHere);
    stream.closeCode = code;
    stream.discard();
    // What the handler never passed on would otherwise stay out of the connection's window for good.
    if (stream.held > 0) this.creditConnection(stream.held);
    stream.held = 0;
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    stream.emitClose(code, unprocessed);
    this.startQueued();
    this.endIfIdle();
  }

  /** One frame that costs work for nothing: resets by the peer, empty DATA frames. Past the budget the connection ends with ENHANCE_YOUR_CALM. */
  private spend(what: string): void {
    const now = Date.now();
    this.resetTokens = Math.min(resetBurst, this.resetTokens + ((now - this.resetRefilledAt) / 1000) * resetRefillPerSecond);
    this.resetRefilledAt = now;
    this.resetTokens -= 1;
    if (this.resetTokens < 0) throw new H2ConnectionError(h2Error.enhanceYourCalm, `${what}, faster than this side allows`);
  }

  /** After GOAWAY either way, the connection ends once its last stream has. */
  private endIfIdle(): void {
    if (this.streams.size > 0 || this.closedWith !== undefined) return;
    if (this.goawaySent || this.peerGoaway >= 0) {
      this.closedWith = null;
      this.socket.end();
      this.options.onClose?.(undefined);
    }
  }

  /** A connection error: GOAWAY with its code (unless the peer's GOAWAY caused it), every stream closed, the socket ended. */
  private fail(err: H2ConnectionError, sendGoaway = true): void {
    if (this.closedWith !== undefined) return;
    if (sendGoaway && !this.goawaySent) {
      this.goawaySent = true;
      this.queue(goawayFrame(this.lastPeerStream, err.code, err.message));
    }
    this.closedWith = err;
    clearTimeout(this.settingsTimer);
    for (const stream of [...this.streams.values()]) this.finish(stream, err.code, false);
    for (const { stream } of this.queued.splice(0)) this.finish(stream, err.code, true);
    this.socket.end();
    // A peer that does not close its side is not waited for.
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.options.onClose?.(err);
  }

  /** The socket ended or failed under the connection. */
  private end(err: Error | undefined): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = err ?? null;
    clearTimeout(this.settingsTimer);
    const code = h2Error.cancel;
    for (const stream of [...this.streams.values()]) this.finish(stream, code, false);
    for (const { stream } of this.queued.splice(0)) this.finish(stream, code, true);
    this.socket.destroy();
    this.options.onClose?.(err);
  }
}

/**
 * The last `capacity` streams that closed, and whether this side reset each (RFC 9113 §5.1,
 * "closed": frames the peer sent before it learnt of our RST_STREAM are ignored, others on a
 * closed stream are errors). A ring of ids, made at the first close: a Map here allocated and
 * rehashed on every stream once full (an iterator per eviction, a new table now and then),
 * about 1 KB per gRPC call over a sidecar's two connections. Looked up only for frames on
 * streams that are not open, which are rare.
 */
export class RecentlyClosed {
  private ids: Uint32Array | undefined;
  private resets: Uint8Array | undefined;
  private next = 0;
  private count = 0;

  constructor(private readonly capacity: number) {}

  add(streamId: number, resetHere: boolean): void {
    this.ids ??= new Uint32Array(this.capacity);
    this.resets ??= new Uint8Array(this.capacity);
    this.ids[this.next] = streamId;
    this.resets[this.next] = resetHere ? 1 : 0;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count += 1;
  }

  /** Whether this side reset `streamId`, if it is among the streams remembered; undefined if not. */
  get(streamId: number): boolean | undefined {
    if (!this.ids || !this.resets) return undefined;
    for (let k = 1; k <= this.count; k += 1) {
      const i = (this.next - k + this.capacity) % this.capacity;
      if (this.ids[i] === streamId) return this.resets[i] === 1;
    }
    return undefined;
  }
}
