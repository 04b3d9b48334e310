import { connect, type Socket } from 'node:net';
import { connectionPreface, FrameReader, frameType, settingsFrame } from '../../src/h2/frames.js';

/** A frame an HTTP/2 peer sent, as a raw client saw it: the code of RST_STREAM and GOAWAY, the payload of PING. */
export interface SeenFrame { type: number; streamId: number; code?: number; ack?: boolean; payload?: string }

export interface RawH2Client {
  socket: Socket;
  frames: SeenFrame[];
  closed: boolean;
}

/**
 * A raw TCP client for HTTP/2 tests: it sends the preface and an empty SETTINGS (or `opening`
 * instead), acknowledges the server's SETTINGS, and writes down every frame that comes back, so
 * that a test can send any bytes at all and check what a server answered. `cleanups` gets the
 * socket's destroy.
 */
export async function rawH2Client(port: number, cleanups: (() => unknown)[], opening?: Buffer, acknowledgeSettings = true): Promise<RawH2Client> {
  const socket = await new Promise<Socket>((resolve) => { const s = connect(port, '127.0.0.1', () => resolve(s)); });
  cleanups.push(() => socket.destroy());
  const frames: SeenFrame[] = [];
  const state: RawH2Client = { socket, frames, closed: false };
  const reader = new FrameReader({
    dataStart: (id) => frames.push({ type: frameType.data, streamId: id }),
    dataPiece: () => undefined,
    dataEnd: () => undefined,
    headers: (id) => frames.push({ type: frameType.headers, streamId: id }),
    rstStream: (id, code) => frames.push({ type: frameType.rstStream, streamId: id, code }),
    settings: (ack) => {
      frames.push({ type: frameType.settings, streamId: 0, ack });
      if (!ack && acknowledgeSettings) socket.write(settingsFrame([], true));
    },
    ping: (ack, payload) => frames.push({ type: frameType.ping, streamId: 0, ack, payload: payload.toString('hex') }),
    goaway: (_last, code) => frames.push({ type: frameType.goaway, streamId: 0, code }),
    windowUpdate: (id) => frames.push({ type: frameType.windowUpdate, streamId: id }),
    priority: (id) => frames.push({ type: frameType.priority, streamId: id }),
    unknownFrame: () => undefined,
    streamError: () => undefined,
  });
  socket.on('data', (chunk: Buffer) => {
    try {
      reader.push(chunk);
    } catch {
      // What the server sent broke framing: the test sees it as missing frames.
    }
  });
  socket.on('close', () => { state.closed = true; });
  socket.on('error', () => undefined);
  socket.write(opening ?? Buffer.concat([connectionPreface, settingsFrame([])]));
  return state;
}

export async function waitFor(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}
