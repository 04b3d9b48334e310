import { connect, sensitiveHeaders, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../test/helpers/random.js';
import { connectionPreface, FrameReader, type FrameSink, headerFrames, setting, settingsFrame } from './frames.js';
import { HpackDecoder, HpackEncoder, type HeaderBlock } from './hpack.js';

/**
 * HPACK and the frame reader against nghttp2 (node:http2): a real node:http2 client sends
 * requests with random header fields to a server made of this folder's pieces on a raw
 * socket, which decodes each block and answers with random fields of its own. Both dynamic
 * tables evolve over hundreds of blocks on one connection; any disagreement shows as a wrong
 * field on one side or a COMPRESSION_ERROR on the other.
 */

interface Received { fields: string[]; neverIndexed: number[] }

function rawServer(answer: (request: HeaderBlock) => { fields: string[]; neverIndexed?: number[] }): Promise<{ server: Server; port: number; received: Received[] }> {
  const received: Received[] = [];
  const server = createServer((socket: Socket) => {
    const decoder = new HpackDecoder();
    const encoder = new HpackEncoder();
    let prefaceLeft = connectionPreface.length;
    const sink: FrameSink = {
      dataStart: () => undefined,
      dataPiece: () => undefined,
      dataEnd: () => undefined,
      headers: (streamId, block) => {
        const request = decoder.decode(block);
        received.push({ fields: request.fields, neverIndexed: request.neverIndexed ?? [] });
        const reply = answer(request);
        socket.write(headerFrames(streamId, encoder.encode(reply.fields, reply.neverIndexed), true, 16_384));
      },
      rstStream: () => undefined,
      settings: (ack, entries) => {
        if (ack) return;
        for (let i = 0; i < entries.length; i += 2) if (entries[i] === setting.headerTableSize) encoder.setPeerLimit(entries[i + 1]!);
        socket.write(settingsFrame([], true));
      },
      ping: () => undefined,
      goaway: () => undefined,
      windowUpdate: () => undefined,
      priority: () => undefined,
      unknownFrame: () => undefined,
      streamError: (err) => { throw err; },
    };
    const reader = new FrameReader(sink);
    socket.write(settingsFrame([setting.maxConcurrentStreams, 100]));
    socket.on('data', (chunk: Buffer) => {
      let bytes = chunk;
      if (prefaceLeft > 0) {
        const n = Math.min(prefaceLeft, bytes.length);
        expect(bytes.subarray(0, n).equals(connectionPreface.subarray(connectionPreface.length - prefaceLeft, connectionPreface.length - prefaceLeft + n))).toBe(true);
        prefaceLeft -= n;
        bytes = bytes.subarray(n);
      }
      if (bytes.length > 0) reader.push(bytes);
    });
    socket.on('error', () => undefined);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port, received })));
}

const names = ['x-a', 'x-b', 'user-agent', 'accept', 'content-type', 'x-request-id', 'cache-control', 'x-forwarded-client-cert', 'grpc-timeout', 'x-long'];

function randomFields(random: () => number): [string, string][] {
  const fields: [string, string][] = [];
  const used = new Set<string>();
  const count = Math.floor(random() * 7);
  for (let i = 0; i < count; i += 1) {
    const name = names[Math.floor(random() * names.length)]!;
    if (used.has(name)) continue;
    used.add(name);
    const length = name === 'x-long' ? 100 + Math.floor(random() * 2000) : 1 + Math.floor(random() * 30);
    // Visible ASCII with inner spaces: nghttp2 refuses leading or trailing whitespace (RFC 9113 §8.2.1).
    let value = '';
    for (let k = 0; k < length; k += 1) value += String.fromCharCode(k === 0 || k === length - 1 ? 33 + Math.floor(random() * 94) : 32 + Math.floor(random() * 95));
    fields.push([name, value]);
  }
  return fields;
}

let close: (() => void) | undefined;
afterEach(() => close?.());

describe('HPACK and framing against nghttp2 (node:http2)', () => {
  it.each([
    ['the default 4096-octet tables', 4096],
    ['a 256-octet table on the client\'s side, which makes the server\'s encoder evict', 256],
    ['no dynamic table on the client\'s side', 0],
  ])('agree on 400 requests and answers with random fields on one connection, %s', async (_what, clientTable) => {
    const random = mulberry32(clientTable + 1);
    let nextAnswer: [string, string][] = [];
    let nextSecret = -1;
    const { server, port, received } = await rawServer(() => {
      const fields = [':status', '200'];
      for (const [name, value] of nextAnswer) fields.push(name, value);
      return { fields, neverIndexed: nextSecret >= 0 ? [nextSecret + 1] : undefined };
    });
    const session = connect(`http://127.0.0.1:${port}`, { settings: { headerTableSize: clientTable } });
    close = () => {
      session.destroy();
      server.close();
    };
    for (let n = 0; n < 400; n += 1) {
      const request = randomFields(random);
      nextAnswer = randomFields(random);
      nextSecret = nextAnswer.length > 0 && random() < 0.2 ? Math.floor(random() * nextAnswer.length) : -1;
      const secretRequest = request.length > 0 && random() < 0.2 ? request[Math.floor(random() * request.length)]![0] : undefined;
      const headers: OutgoingHttpHeaders = { ':method': 'POST', ':path': `/svc/Method${n % 5}` };
      for (const [name, value] of request) headers[name] = value;
      if (secretRequest) (headers as Record<symbol, string[]>)[sensitiveHeaders] = [secretRequest];
      const answer = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
        const stream = session.request(headers, { endStream: true });
        stream.on('response', resolve);
        stream.on('error', reject);
        stream.resume();
      });
      // What the raw server decoded is what the client sent, in order, after the pseudo-fields.
      const got = received[n]!;
      const pseudo = new Map<string, string>();
      const regular: [string, string][] = [];
      for (let i = 0; i < got.fields.length; i += 2) {
        const [name, value] = [got.fields[i]!, got.fields[i + 1]!];
        if (name.startsWith(':')) pseudo.set(name, value);
        else regular.push([name, value]);
      }
      expect(pseudo.get(':method')).toBe('POST');
      expect(pseudo.get(':path')).toBe(`/svc/Method${n % 5}`);
      expect(pseudo.get(':authority')).toBe(`127.0.0.1:${port}`);
      expect(regular).toEqual(request);
      if (secretRequest) {
        const at = got.fields.findIndex((field, i) => i % 2 === 0 && field === secretRequest) / 2;
        expect(got.neverIndexed).toContain(at);
      }
      // What the client decoded is what the raw server encoded.
      expect(answer[':status']).toBe(200);
      for (const [name, value] of nextAnswer) expect(answer[name]).toBe(value);
      const sensitive = (answer as Record<symbol, string[] | undefined>)[sensitiveHeaders] ?? [];
      if (nextSecret >= 0) expect(sensitive).toContain(nextAnswer[nextSecret]![0]);
    }
  });
});
