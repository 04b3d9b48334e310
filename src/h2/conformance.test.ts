import { createServer, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { rawH2Client, waitFor, type SeenFrame } from '../../test/helpers/h2-raw.js';
import { H2Connection } from './connection.js';
import {
  connectionPreface, dataFrameHeader, frame, frameFlag, frameType, h2Error, headerFrames, pingFrame, rstStreamFrame, setting, settingsFrame, windowUpdateFrame,
} from './frames.js';
import { HpackEncoder } from './hpack.js';

/**
 * What an H2Connection server answers to each of the peer errors RFC 9113 names, one case at a
 * time on a real socket, in the manner of h2spec (which this machine cannot fetch): the case's
 * bytes go after the preface and SETTINGS, and the server must answer with the connection error
 * (GOAWAY and its code) or the stream error (RST_STREAM, the stream and its code) the RFC asks
 * for, or with the acknowledgement it owes. Streams that open are answered 200 and kept open
 * until the peer ends them.
 */
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const clean of cleanups.splice(0).reverse()) await clean();
});

async function server(settings: { maxConcurrentStreams?: number } = {}) {
  const connections: H2Connection[] = [];
  const listener = createServer((socket) => {
    connections.push(new H2Connection(socket, {
      role: 'server',
      settings: { ...settings, initialWindowSize: 65_535, connectionWindowSize: 65_535 },
      onStream: (stream, _head, endStream) => {
        stream.attach({
          onHeaders: (s, _t, end) => { if (end) s.end(); },
          // Nothing is consumed: the windows close as the peer sends.
          onData: (s, _piece, end) => { if (end) s.end(); },
          onClose: () => undefined,
        });
        stream.sendHeaders([':status', '200'], false);
        if (endStream) stream.end();
      },
    }));
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', () => resolve()));
  cleanups.push(() => new Promise<void>((resolve) => { for (const c of connections) c.destroy(); listener.close(() => resolve()); }));
  return (listener.address() as AddressInfo).port;
}

const encoder = () => new HpackEncoder();
const get = (e: HpackEncoder, id: number, end: boolean, extra: string[] = []) =>
  headerFrames(id, e.encode([':method', 'POST', ':scheme', 'http', ':path', '/', ':authority', 'x', ...extra]), end, 16_384);

type Expect = { goaway: number } | { rst: [number, number] } | { frame: SeenFrame };

function answered(frames: SeenFrame[], want: Expect): boolean {
  if ('goaway' in want) return frames.some((f) => f.type === frameType.goaway);
  if ('rst' in want) return frames.some((f) => f.type === frameType.rstStream || f.type === frameType.goaway);
  return frames.some((f) => f.type === want.frame.type && f.ack === want.frame.ack && f.streamId === want.frame.streamId);
}

const cases: [string, (e: HpackEncoder) => Buffer, Expect][] = [
  // §3.4, §6.5: the first frame must be SETTINGS (sent without the client's SETTINGS below).
  ['§5.1 DATA on a stream never opened', () => Buffer.concat([dataFrameHeader(1, 1, true), Buffer.from('a')]), { goaway: h2Error.protocolError }],
  ['§5.1 WINDOW_UPDATE on a stream never opened', () => windowUpdateFrame(1, 1), { goaway: h2Error.protocolError }],
  ['§5.1 RST_STREAM on a stream never opened', () => rstStreamFrame(1, h2Error.cancel), { goaway: h2Error.protocolError }],
  ['§5.1 DATA after the peer ended the stream', (e) => Buffer.concat([get(e, 1, true), dataFrameHeader(1, 1, false), Buffer.from('a')]), { rst: [1, h2Error.streamClosed] }],
  ['§5.1 HEADERS on a stream that has closed (connection error, as the RFC allows)', (e) => Buffer.concat([get(e, 1, true), get(e, 1, false)]), { goaway: h2Error.streamClosed }],
  ['§5.1.1 a client opening an even stream', (e) => get(e, 2, true), { goaway: h2Error.protocolError }],
  ['§5.1.1 a new stream below the last one opened', (e) => Buffer.concat([get(e, 5, false), get(e, 3, false)]), { goaway: h2Error.protocolError }],
  ['§5.1.2 more streams than SETTINGS_MAX_CONCURRENT_STREAMS', (e) => Buffer.concat([get(e, 1, false), get(e, 3, false), get(e, 5, false)]), { rst: [5, h2Error.refusedStream] }],
  ['§4.2 a frame over SETTINGS_MAX_FRAME_SIZE', () => frame(frameType.ping, 0, 0, Buffer.alloc(16_385)), { goaway: h2Error.frameSizeError }],
  ['§4.3 an invalid header block (index 0)', () => frame(frameType.headers, frameFlag.endHeaders | frameFlag.endStream, 1, Buffer.from([0x80])), { goaway: h2Error.compressionError }],
  ['§6.2 a header block interrupted by another frame', (e) => Buffer.concat([frame(frameType.headers, 0, 1, e.encode([':method', 'GET'])), pingFrame(Buffer.alloc(8), false)]), { goaway: h2Error.protocolError }],
  ['§6.5 SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1', () => settingsFrame([setting.initialWindowSize, 2 ** 31]), { goaway: h2Error.flowControlError }],
  ['§6.5 SETTINGS_ENABLE_PUSH of 2', () => settingsFrame([setting.enablePush, 2]), { goaway: h2Error.protocolError }],
  ['§6.7 PING is answered with its payload', () => pingFrame(Buffer.from('h2speccc'), false), { frame: { type: frameType.ping, streamId: 0, ack: true } }],
  ['§6.9 a WINDOW_UPDATE that takes the connection\'s window over 2^31-1', () => windowUpdateFrame(0, 2 ** 31 - 1), { goaway: h2Error.flowControlError }],
  ['§6.9 a WINDOW_UPDATE that takes a stream\'s window over 2^31-1', (e) => Buffer.concat([get(e, 1, false), windowUpdateFrame(1, 2 ** 31 - 1)]), { rst: [1, h2Error.flowControlError] }],
  ['§6.9.1 DATA beyond the stream\'s window', (e) => Buffer.concat([get(e, 1, false), ...Array.from({ length: 5 }, () => Buffer.concat([dataFrameHeader(1, 16_384, false), Buffer.alloc(16_384)]))]), { goaway: h2Error.flowControlError }],
  ['§8.1.1 DATA that falls short of content-length', (e) => Buffer.concat([get(e, 1, false, ['content-length', '2']), dataFrameHeader(1, 1, true), Buffer.from('a')]), { rst: [1, h2Error.protocolError] }],
  ['§8.1.1 trailers without END_STREAM', (e) => Buffer.concat([get(e, 1, false), headerFrames(1, e.encode(['x-t', '1']), false, 16_384)]), { rst: [1, h2Error.protocolError] }],
  ['§8.2.1 an upper-case field name', (e) => get(e, 1, true, ['X-A', '1']), { rst: [1, h2Error.protocolError] }],
  ['§8.2.2 a connection-specific field', (e) => get(e, 1, true, ['keep-alive', '1']), { rst: [1, h2Error.protocolError] }],
  ['§8.3 a pseudo-header in trailers', (e) => Buffer.concat([get(e, 1, false), headerFrames(1, e.encode([':path', '/x']), true, 16_384)]), { rst: [1, h2Error.protocolError] }],
  ['§8.3.1 a request without :path', (e) => headerFrames(1, e.encode([':method', 'GET', ':scheme', 'http', ':authority', 'x']), true, 16_384), { rst: [1, h2Error.protocolError] }],
  ['§5.3.1 a stream that depends on itself', () => frame(frameType.priority, 0, 1, Buffer.from([0, 0, 0, 1, 16])), { rst: [1, h2Error.protocolError] }],
];

describe('H2Connection answers the peer errors RFC 9113 names', () => {
  it.each(cases)('%s', async (_name, bytes, want) => {
    const port = await server({ maxConcurrentStreams: 2 });
    const raw = await rawH2Client(port, cleanups);
    raw.socket.write(bytes(encoder()));
    await waitFor(() => answered(raw.frames, want));
    if ('goaway' in want) expect(raw.frames.find((f) => f.type === frameType.goaway)?.code).toBe(want.goaway);
    else if ('rst' in want) {
      expect(raw.frames.find((f) => f.type === frameType.goaway)).toBeUndefined();
      expect(raw.frames.find((f) => f.type === frameType.rstStream)).toEqual({ type: frameType.rstStream, streamId: want.rst[0], code: want.rst[1] });
    }
  });

  it('§3.4 ends a connection whose first frame is not SETTINGS with PROTOCOL_ERROR', async () => {
    const port = await server();
    const raw = await rawH2Client(port, cleanups, Buffer.concat([connectionPreface, pingFrame(Buffer.alloc(8), false)]));
    await waitFor(() => raw.closed);
    expect(raw.frames.find((f) => f.type === frameType.goaway)?.code).toBe(h2Error.protocolError);
  });

  it('§6.5.3 acknowledges SETTINGS, and ignores unknown settings and unknown frame types (§5.5)', async () => {
    const port = await server();
    const raw = await rawH2Client(port, cleanups);
    raw.socket.write(Buffer.concat([settingsFrame([0x99, 1]), frame(0xee, 0xff, 7, Buffer.from('x')), pingFrame(Buffer.from('stillok!'), false)]));
    await waitFor(() => raw.frames.some((f) => f.type === frameType.ping && f.ack));
    expect(raw.frames.filter((f) => f.type === frameType.settings && f.ack).length).toBe(2);
    expect(raw.frames.find((f) => f.type === frameType.goaway)).toBeUndefined();
  });

  it('ends a connection that floods empty DATA frames with ENHANCE_YOUR_CALM (CVE-2019-9518)', async () => {
    const port = await server();
    const raw = await rawH2Client(port, cleanups);
    const e = encoder();
    raw.socket.write(Buffer.concat([get(e, 1, false), ...Array.from({ length: 1200 }, () => dataFrameHeader(1, 0, false))]));
    await waitFor(() => raw.closed);
    expect(raw.frames.find((f) => f.type === frameType.goaway)?.code).toBe(h2Error.enhanceYourCalm);
  });

  it('takes 100 PRIORITY frames per stream opened, then ends the connection with ENHANCE_YOUR_CALM (CVE-2019-9513)', async () => {
    const port = await server();
    const priority = (id: number) => frame(frameType.priority, 0, id, Buffer.from([0, 0, 0, 0, 15]));
    const e = encoder();
    // One stream opened: 200 PRIORITY frames are within its allowance, and the stream is served.
    const served = await rawH2Client(port, cleanups);
    served.socket.write(Buffer.concat([...Array.from({ length: 100 }, (_, i) => priority(2 * i + 1)), get(e, 1, true), ...Array.from({ length: 100 }, () => priority(1)), pingFrame(Buffer.from('stillok!'), false)]));
    await waitFor(() => served.frames.some((f) => f.type === frameType.ping && f.ack));
    expect(served.frames.find((f) => f.type === frameType.goaway)).toBeUndefined();
    // Without a stream, the 101st is one too many; RFC 9218's PRIORITY_UPDATE (0x10) counts alike.
    const flood = await rawH2Client(port, cleanups);
    flood.socket.write(Buffer.concat([...Array.from({ length: 60 }, (_, i) => priority(2 * i + 1)), ...Array.from({ length: 41 }, () => frame(0x10, 0, 0, Buffer.from([0, 0, 0, 1, 0x75, 0x3d, 0x31])))]));
    await waitFor(() => flood.closed);
    expect(flood.frames.find((f) => f.type === frameType.goaway)?.code).toBe(h2Error.enhanceYourCalm);
  });

  it('ends a connection that floods frames of unknown types with ENHANCE_YOUR_CALM, after a burst a well-behaved peer never reaches', async () => {
    const port = await server();
    const raw = await rawH2Client(port, cleanups);
    raw.socket.write(Buffer.concat(Array.from({ length: 1200 }, () => frame(0xee, 0, 0, Buffer.from('x')))));
    await waitFor(() => raw.closed);
    expect(raw.frames.find((f) => f.type === frameType.goaway)?.code).toBe(h2Error.enhanceYourCalm);
  });

  it('§6.5.3 ends a connection whose peer never acknowledges its SETTINGS with SETTINGS_TIMEOUT', async () => {
    const connections: H2Connection[] = [];
    const listener = createServer((socket) => connections.push(new H2Connection(socket, { role: 'server', settings: { settingsTimeoutMs: 200 }, onStream: () => undefined })));
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', () => resolve()));
    cleanups.push(() => new Promise<void>((resolve) => { for (const c of connections) c.destroy(); listener.close(() => resolve()); }));
    const raw = await rawH2Client((listener.address() as AddressInfo).port, cleanups, undefined, false);
    await waitFor(() => raw.closed);
    expect(raw.frames.find((f) => f.type === frameType.goaway)?.code).toBe(h2Error.settingsTimeout);
  });

  it('§5.1 ignores frames that crossed its own RST_STREAM, and goes on serving', async () => {
    const port = await server({ maxConcurrentStreams: 1 });
    const raw = await rawH2Client(port, cleanups);
    const e = encoder();
    // Stream 3 is refused (over the limit of 1); its body and trailers come after, as they would
    // from a client that had not yet seen the reset.
    raw.socket.write(Buffer.concat([get(e, 1, false), get(e, 3, false), dataFrameHeader(3, 1, false), Buffer.from('a'), headerFrames(3, e.encode(['x-t', '1']), true, 16_384)]));
    raw.socket.write(Buffer.concat([dataFrameHeader(1, 0, true), pingFrame(Buffer.from('afterall'), false)]));
    await waitFor(() => raw.frames.some((f) => f.type === frameType.ping && f.ack));
    expect(raw.frames.filter((f) => f.type === frameType.rstStream)).toEqual([{ type: frameType.rstStream, streamId: 3, code: h2Error.refusedStream }]);
    expect(raw.frames.find((f) => f.type === frameType.goaway)).toBeUndefined();
  });
});
