import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../test/helpers/random.js';
import {
  dataFrameHeader, frame, frameFlag, FrameReader, type FrameSink, frameType, goawayFrame, H2ConnectionError, h2Error, H2StreamError,
  headerFrames, pingFrame, rstStreamFrame, setting, settingsFrame, windowUpdateFrame,
} from './frames.js';

/** A sink that writes down what it is handed, DATA pieces joined per frame. */
function recorder() {
  const events: string[] = [];
  let data: Buffer[] = [];
  const sink: FrameSink = {
    dataStart: (id, length) => { data = []; events.push(`data-start ${id} ${length}`); },
    dataPiece: (_id, piece) => { data.push(Buffer.from(piece)); },
    dataEnd: (id, end) => events.push(`data ${id} ${Buffer.concat(data).toString('latin1')}${end ? ' end' : ''}`),
    headers: (id, block, end) => events.push(`headers ${id} ${block.toString('hex')}${end ? ' end' : ''}`),
    rstStream: (id, code) => events.push(`rst ${id} ${code}`),
    settings: (ack, entries) => events.push(`settings${ack ? ' ack' : ''} ${entries.join(',')}`),
    ping: (ack, payload) => events.push(`ping${ack ? ' ack' : ''} ${payload.toString('hex')}`),
    goaway: (last, code, debug) => events.push(`goaway ${last} ${code} ${debug.toString()}`),
    windowUpdate: (id, increment) => events.push(`window ${id} ${increment}`),
    priority: (id) => events.push(`priority ${id}`),
    unknownFrame: (type) => events.push(`unknown ${type}`),
    streamError: (err) => events.push(`stream-error ${err.streamId} ${err.code}`),
  };
  return { events, sink };
}

const padded = (type: number, flags: number, id: number, body: Buffer, pad: number) =>
  frame(type, flags | frameFlag.padded, id, Buffer.concat([Buffer.from([pad]), body, Buffer.alloc(pad)]));

const conversation = Buffer.concat([
  settingsFrame([setting.maxConcurrentStreams, 100, setting.initialWindowSize, 1 << 20]),
  settingsFrame([], true),
  headerFrames(1, Buffer.from('8286', 'hex'), false, 16_384),
  dataFrameHeader(1, 5, false), Buffer.from('hello'),
  padded(frameType.data, frameFlag.endStream, 1, Buffer.from(' world'), 7),
  headerFrames(3, Buffer.from('a'.repeat(40)), true, 16),
  padded(frameType.headers, frameFlag.endHeaders | frameFlag.priority, 5, Buffer.concat([Buffer.from([0, 0, 0, 1, 15]), Buffer.from('82', 'hex')]), 3),
  frame(0xfa, 0, 0, Buffer.from('an extension nobody agreed to')),
  frame(frameType.priority, 0, 7, Buffer.from([0, 0, 0, 1, 200])),
  windowUpdateFrame(0, 65_535),
  windowUpdateFrame(1, 10),
  rstStreamFrame(3, h2Error.cancel),
  pingFrame(Buffer.from('01234567'), false),
  pingFrame(Buffer.from('76543210'), true),
  dataFrameHeader(9, 0, true),
  goawayFrame(5, h2Error.noError, 'bye'),
]);

const expected = [
  'settings 3,100,4,1048576',
  'settings ack ',
  'headers 1 8286',
  'data-start 1 5', 'data 1 hello',
  'data-start 1 14', 'data 1  world end',
  `headers 3 ${Buffer.from('a'.repeat(40)).toString('hex')} end`,
  'headers 5 82',
  'unknown 250',
  'priority 7',
  'window 0 65535',
  'window 1 10',
  'rst 3 8',
  'ping 3031323334353637',
  'ping ack 3736353433323130',
  'data-start 9 0', 'data 9  end',
  'goaway 5 0 bye',
];

describe('FrameReader', () => {
  it('reads a conversation of every frame type whole', () => {
    const { events, sink } = recorder();
    new FrameReader(sink).push(conversation);
    expect(events).toEqual(expected);
  });

  it('reads the same however the bytes are cut: one at a time, and at random', () => {
    const byByte = recorder();
    const reader = new FrameReader(byByte.sink);
    for (let i = 0; i < conversation.length; i += 1) reader.push(conversation.subarray(i, i + 1));
    expect(byByte.events).toEqual(expected);
    const random = mulberry32(3);
    for (let round = 0; round < 200; round += 1) {
      const cut = recorder();
      const r = new FrameReader(cut.sink);
      for (let p = 0; p < conversation.length;) {
        const n = 1 + Math.floor(random() * 40);
        r.push(conversation.subarray(p, p + n));
        p += n;
      }
      expect(cut.events).toEqual(expected);
    }
  });

  it('hands a large DATA frame on as views of the reads, without waiting for the whole frame', () => {
    const pieces: number[] = [];
    const { sink } = recorder();
    const reader = new FrameReader({ ...sink, dataPiece: (_id, piece) => { pieces.push(piece.length); } });
    const body = Buffer.alloc(16_384, 7);
    const bytes = Buffer.concat([dataFrameHeader(1, body.length, true), body]);
    reader.push(bytes.subarray(0, 4_009));
    reader.push(bytes.subarray(4_009));
    expect(pieces).toEqual([4_000, 12_384]);
  });

  it.each([
    ['a frame over SETTINGS_MAX_FRAME_SIZE', frame(frameType.headers, frameFlag.endHeaders, 1, Buffer.alloc(16_385)), h2Error.frameSizeError],
    ['DATA on stream 0', dataFrameHeader(0, 0, false), h2Error.protocolError],
    ['HEADERS on stream 0', frame(frameType.headers, frameFlag.endHeaders, 0), h2Error.protocolError],
    ['DATA padding as long as the frame', Buffer.concat([frame(frameType.data, frameFlag.padded, 1, Buffer.from([4, 0, 0, 0]))]), h2Error.protocolError],
    ['HEADERS padding longer than the frame', frame(frameType.headers, frameFlag.endHeaders | frameFlag.padded, 1, Buffer.from([9, 0x82])), h2Error.protocolError],
    ['a frame inside a header block', Buffer.concat([frame(frameType.headers, 0, 1, Buffer.from('82', 'hex')), pingFrame(Buffer.alloc(8), false)]), h2Error.protocolError],
    ['a CONTINUATION of another stream', Buffer.concat([frame(frameType.headers, 0, 1, Buffer.from('82', 'hex')), frame(frameType.continuation, frameFlag.endHeaders, 3)]), h2Error.protocolError],
    ['a CONTINUATION with no header block open', frame(frameType.continuation, frameFlag.endHeaders, 1), h2Error.protocolError],
    ['PUSH_PROMISE', frame(frameType.pushPromise, frameFlag.endHeaders, 1, Buffer.alloc(4)), h2Error.protocolError],
    ['SETTINGS on a stream', frame(frameType.settings, 0, 1), h2Error.protocolError],
    ['a SETTINGS acknowledgement with a payload', frame(frameType.settings, frameFlag.ack, 0, Buffer.alloc(6)), h2Error.frameSizeError],
    ['SETTINGS of 7 octets', frame(frameType.settings, 0, 0, Buffer.alloc(7)), h2Error.frameSizeError],
    ['SETTINGS_ENABLE_PUSH of 2', settingsFrame([setting.enablePush, 2]), h2Error.protocolError],
    ['SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1', settingsFrame([setting.initialWindowSize, 2 ** 31]), h2Error.flowControlError],
    ['SETTINGS_MAX_FRAME_SIZE under 16384', settingsFrame([setting.maxFrameSize, 16_383]), h2Error.protocolError],
    ['PING on a stream', frame(frameType.ping, 0, 1, Buffer.alloc(8)), h2Error.protocolError],
    ['PING of 7 octets', frame(frameType.ping, 0, 0, Buffer.alloc(7)), h2Error.frameSizeError],
    ['GOAWAY on a stream', frame(frameType.goaway, 0, 1, Buffer.alloc(8)), h2Error.protocolError],
    ['GOAWAY under 8 octets', frame(frameType.goaway, 0, 0, Buffer.alloc(7)), h2Error.frameSizeError],
    ['RST_STREAM on stream 0', rstStreamFrame(0, 0), h2Error.protocolError],
    ['RST_STREAM of 3 octets', frame(frameType.rstStream, 0, 1, Buffer.alloc(3)), h2Error.frameSizeError],
    ['a WINDOW_UPDATE of 0 for the connection', frame(frameType.windowUpdate, 0, 0, Buffer.alloc(4)), h2Error.protocolError],
    ['WINDOW_UPDATE of 5 octets', frame(frameType.windowUpdate, 0, 1, Buffer.alloc(5)), h2Error.frameSizeError],
  ])('ends the connection on %s', (_what, bytes, code) => {
    const { sink } = recorder();
    let caught: unknown;
    try {
      new FrameReader(sink).push(bytes);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(H2ConnectionError);
    expect((caught as H2ConnectionError).code).toBe(code);
  });

  it.each([
    ['a PRIORITY frame that makes a stream depend on itself', frame(frameType.priority, 0, 3, Buffer.from([0, 0, 0, 3, 16])), 3, h2Error.protocolError],
    ['a PRIORITY frame of 4 octets', frame(frameType.priority, 0, 3, Buffer.alloc(4)), 3, h2Error.frameSizeError],
    ['a WINDOW_UPDATE of 0 for a stream', frame(frameType.windowUpdate, 0, 5, Buffer.alloc(4)), 5, h2Error.protocolError],
  ])('resets only the stream on %s, and reads on', (_what, bytes, id, code) => {
    const { events, sink } = recorder();
    new FrameReader(sink).push(Buffer.concat([bytes, pingFrame(Buffer.from('abcdefgh'), false)]));
    expect(events).toEqual([`stream-error ${id} ${code}`, 'ping 6162636465666768']);
  });

  it('skips a DATA frame whose stream the sink refuses, and reads the next frame', () => {
    const { events, sink } = recorder();
    const reader = new FrameReader({
      ...sink,
      dataStart: (id, length) => {
        events.push(`data-start ${id} ${length}`);
        if (id === 1) throw new H2StreamError(1, h2Error.streamClosed, 'closed');
      },
    });
    reader.push(Buffer.concat([dataFrameHeader(1, 3, false), Buffer.from('abc'), dataFrameHeader(3, 2, true), Buffer.from('ok')]));
    expect(events).toEqual(['data-start 1 3', 'stream-error 1 5', 'data-start 3 2', 'data 3 ok end']);
  });

  it('ends the connection when a header block grows past its limit through CONTINUATIONs', () => {
    const { sink } = recorder();
    const reader = new FrameReader(sink);
    reader.maxHeaderBlockBytes = 1_000;
    reader.push(frame(frameType.headers, 0, 1, Buffer.alloc(600)));
    expect(() => reader.push(frame(frameType.continuation, 0, 1, Buffer.alloc(600)))).toThrow(H2ConnectionError);
  });

  it('writes a header block larger than the frame size as HEADERS and CONTINUATIONs, END_STREAM on the first', () => {
    const block = Buffer.from('x'.repeat(50));
    const bytes = headerFrames(1, block, true, 20);
    expect(bytes.length).toBe(50 + 3 * 9);
    expect(bytes[3]).toBe(frameType.headers);
    expect(bytes[4]).toBe(frameFlag.endStream);
    expect(bytes[29 + 3]).toBe(frameType.continuation);
    expect(bytes[58 + 4]).toBe(frameFlag.endHeaders);
  });
});
