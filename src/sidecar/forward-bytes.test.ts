import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { forwardBytes } from './forward-bytes.js';

/** A writable that holds its writes until `release()`; its highWaterMark is 4 bytes. */
function slowSink() {
  const got: string[] = [];
  const waiting: Array<() => void> = [];
  const sink = new Writable({
    highWaterMark: 4,
    write(chunk: Buffer, _enc, callback) {
      got.push(chunk.toString());
      waiting.push(callback);
    },
  });
  return { sink, got, release: () => { for (const cb of waiting.splice(0)) cb(); } };
}

describe('forwardBytes', () => {
  it('passes every chunk in order and ends the destination when the source ends', async () => {
    const to = new PassThrough();
    const chunks: string[] = [];
    to.on('data', (c: Buffer) => chunks.push(c.toString()));
    const ended = new Promise((resolve) => to.once('end', resolve));
    forwardBytes(Readable.from([Buffer.from('a'), Buffer.from('bc'), Buffer.from('def')]), to);
    await ended;
    expect(chunks.join('')).toBe('abcdef');
  });

  it('pauses the source while the destination is full and resumes it on drain', async () => {
    const from = new PassThrough();
    const { sink, got, release } = slowSink();
    forwardBytes(from, sink);
    from.write('12345678');
    await new Promise((r) => setImmediate(r));
    expect(from.isPaused()).toBe(true);
    from.write('more');
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual(['12345678']);
    // The drain resumes the source, and the chunk it held goes out.
    release();
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual(['12345678', 'more']);
  });

  it('stops at a destination that was destroyed: the source is paused, nothing is written or thrown', async () => {
    const from = new PassThrough();
    const to = new PassThrough();
    let written = 0;
    to.on('data', () => { written += 1; });
    forwardBytes(from, to);
    to.destroy();
    from.write('late');
    from.end();
    await new Promise((r) => setImmediate(r));
    expect(written).toBe(0);
    expect(from.isPaused()).toBe(true);
  });
});
