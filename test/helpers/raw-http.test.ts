import { expect, test } from 'vitest';
import { firstEvent } from './raw-http.js';

const encode = (text: string) => new TextEncoder().encode(text);

test('firstEvent fails at once when the stream ends before a whole event', async () => {
  const body = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(encode(': keep-alive\n')); c.close(); } });
  const started = Date.now();
  await expect(firstEvent(body, 5000)).rejects.toThrow(/ended .* before a whole event; it sent ": keep-alive\\n"/);
  expect(Date.now() - started).toBeLessThan(1000);
});

test('firstEvent fails after its timeout when the stream stays silent', async () => {
  await expect(firstEvent(new ReadableStream<Uint8Array>({ start() {} }), 300)).rejects.toThrow(/sent nothing for 300 ms/);
});

test('firstEvent returns the first event, across chunks', async () => {
  const body = new ReadableStream<Uint8Array>({ start(c) { c.enqueue(encode('id: 1\nevent: x\n')); c.enqueue(encode('data: {}\n\n')); } });
  expect(await firstEvent(body, 1000)).toBe('id: 1\nevent: x\ndata: {}\n\n');
});
