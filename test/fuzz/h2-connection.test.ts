import { connect as h2connect } from 'node:http2';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H2Connection } from '../../src/h2/connection.js';
import { connectionPreface, dataFrameHeader, frame, frameFlag, frameType, goawayFrame, h2Error, headerFrames, pingFrame, rstStreamFrame, setting, settingsFrame, windowUpdateFrame } from '../../src/h2/frames.js';
import { HpackEncoder } from '../../src/h2/hpack.js';
import { fuzzRun } from '../helpers/fuzz.js';

/**
 * Mutated HTTP/2 conversations against an H2Connection server on a real socket. Whatever comes,
 * the server must not throw out of its socket's read (that would end a sidecar), must answer
 * or close every connection it can make sense of, and must still serve a well-formed client
 * afterwards.
 */
const encoder = new HpackEncoder();
const request = (id: number, end: boolean, extra: string[] = []) =>
  headerFrames(id, encoder.encode([':method', 'POST', ':scheme', 'http', ':path', '/echo', ':authority', 'fuzz', ...extra]), end, 16_384);
const open = Buffer.concat([connectionPreface, settingsFrame([setting.initialWindowSize, 1 << 20])]);
const corpus: Buffer[] = [
  Buffer.concat([open, request(1, true)]),
  Buffer.concat([open, request(1, false, ['content-length', '3']), dataFrameHeader(1, 3, true), Buffer.from('abc')]),
  Buffer.concat([open, request(1, false), frame(frameType.data, frameFlag.padded | frameFlag.endStream, 1, Buffer.from([2, 0x61, 0, 0]))]),
  Buffer.concat([open, frame(frameType.headers, 0, 1, Buffer.from('8386', 'hex')), frame(frameType.continuation, frameFlag.endHeaders, 1, Buffer.from('84', 'hex'))]),
  Buffer.concat([open, request(1, false), rstStreamFrame(1, h2Error.cancel), request(3, true), windowUpdateFrame(0, 1000), pingFrame(Buffer.alloc(8), false)]),
  Buffer.concat([open, settingsFrame([], true), request(1, false), request(1, true, ['x-trailer', 'yes']), goawayFrame(1, h2Error.noError)]),
  Buffer.concat([open, frame(frameType.priority, 0, 3, Buffer.from([0, 0, 0, 1, 16])), frame(0xfe, 0, 0, Buffer.from('ext'))]),
];

let port = 0;
let served = 0;
const closeAll: (() => void)[] = [];
beforeAll(async () => {
  const connections: H2Connection[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    connections.push(new H2Connection(socket, {
      role: 'server',
      onStream: (stream, _head, endStream) => {
        served += 1;
        stream.attach({
          onHeaders: (s, _t, end) => { if (end) s.end(); },
          onData: (s, piece, end) => {
            s.consumed(piece.length);
            if (end) s.end();
          },
          onClose: () => undefined,
        });
        stream.sendHeaders([':status', '200'], false);
        if (endStream) stream.end();
      },
    }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  port = (server.address() as AddressInfo).port;
  closeAll.push(() => { for (const c of connections) c.destroy(); server.close(); });
});
afterAll(() => { for (const close of closeAll) close(); });

describe('H2Connection under mutated HTTP/2 conversations', () => {
  it('never throws out of a read, and still serves a well-formed client afterwards', async () => {
    const run = fuzzRun(2, corpus);
    const deadline = Date.now() + run.seconds * 1000;
    let cases = 0;
    for (let n = 0; Date.now() < deadline; n += 1) {
      const input = run.input(n);
      const socket = await new Promise<Socket>((resolve) => { const s = connect(port, '127.0.0.1', () => resolve(s)); });
      socket.on('error', () => undefined);
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      // Any answer, or the close, or a quiet 50 ms (a frame that waits for bytes that never come).
      await new Promise<void>((resolve) => {
        socket.once('data', () => resolve());
        void closed.then(resolve);
        setTimeout(resolve, 50);
        socket.write(input);
      });
      socket.destroy();
      cases += 1;
    }
    expect(cases, run.label(cases)).toBeGreaterThan(10);
    const session = h2connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    const status = await new Promise<number>((resolve, reject) => {
      const stream = session.request({ ':method': 'GET', ':path': '/after' });
      stream.on('response', (h) => resolve(Number(h[':status'])));
      stream.on('error', reject);
      stream.resume();
    });
    session.destroy();
    expect(status, run.label(cases)).toBe(200);
    expect(served).toBeGreaterThan(0);
  });
});
