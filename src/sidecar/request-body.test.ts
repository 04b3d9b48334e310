import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { bodyTrailers, setBodyTrailers } from './body-trailers.js';
import { lendView } from './lent-views.js';
import { RequestBody } from './request-body.js';

/** A sink that collects what it is given and says when it ended. */
function sink() {
  const chunks: Buffer[] = [];
  let ended = false;
  const stream = new Writable({
    write(chunk: Buffer, _enc, callback) { chunks.push(chunk); callback(); },
    final(callback) { ended = true; callback(); },
  });
  return { stream, text: () => Buffer.concat(chunks).toString(), ended: () => ended };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('RequestBody.feed: the body written into an attempt\'s upstream stream', () => {
  it('writes the whole body and ends the sink', async () => {
    const app = new PassThrough();
    const body = new RequestBody(app);
    const a = sink();
    body.feed(a.stream, () => { throw new Error('not cancelled'); });
    app.write('hello ');
    app.end('world');
    await tick();
    expect(a.text()).toBe('hello world');
    expect(a.ended()).toBe(true);
  });

  it('a second attempt gets the kept bytes first, then the rest; the first gets nothing more', async () => {
    const app = new PassThrough();
    const body = new RequestBody(app);
    const first = sink();
    body.feed(first.stream, () => undefined);
    app.write('part one, ');
    await tick();
    first.stream.destroy(); // the attempt failed
    const second = sink();
    body.feed(second.stream, () => undefined);
    app.end('part two');
    await tick();
    expect(first.text()).toBe('part one, ');
    expect(second.text()).toBe('part one, part two');
    expect(second.ended()).toBe(true);
    expect(body.replayable).toBe(true);
  });

  it('past the retry buffer the body is not kept: not replayable, and memory stays flat', async () => {
    const app = new PassThrough();
    const body = new RequestBody(app, 8);
    const a = sink();
    body.feed(a.stream, () => undefined);
    app.end('more than eight bytes');
    await tick();
    expect(a.text()).toBe('more than eight bytes');
    expect(body.replayable).toBe(false);
  });

  it('the app going away mid-body cancels the attempt', async () => {
    const app = new PassThrough();
    const body = new RequestBody(app);
    let cancelled = 0;
    body.feed(sink().stream, () => { cancelled += 1; });
    app.write('half');
    app.destroy(new Error('gone'));
    await tick();
    expect(cancelled).toBe(1);
    expect(body.replayable).toBe(false);
  });
});

describe('RequestBody and the trailers the app\'s body ends with (body-trailers.ts)', () => {
  const read = (stream: Readable) => new Promise<string>((resolve) => {
    let text = '';
    stream.on('data', (chunk: Buffer) => { text += chunk.toString(); });
    stream.on('end', () => resolve(text));
  });

  it('an attempt\'s stream has them when it ends; a retried attempt replays the kept bytes and ends with them too', async () => {
    const app = new PassThrough();
    const body = new RequestBody(app);
    const first = body.open();
    first.resume();
    app.write('part one, ');
    await tick();
    first.destroy(); // the attempt failed
    const second = body.open();
    const secondEnd = read(second);
    app.write('part two');
    setBodyTrailers(app, { 'x-checksum': 'abc' });
    app.end();
    expect(await secondEnd).toBe('part one, part two');
    expect(bodyTrailers(second)).toEqual({ 'x-checksum': 'abc' });
    // An attempt opened after the body ended: the kept bytes and the trailers.
    const third = body.open();
    expect(bodyTrailers(third)).toEqual({ 'x-checksum': 'abc' });
    expect(await read(third)).toBe('part one, part two');
  });

  it('a body without trailers gives its attempts none; a sink fed the body gets them before its end', async () => {
    const plain = new PassThrough();
    const attempt = new RequestBody(plain).open();
    const done = read(attempt);
    plain.end('no trailers');
    await done;
    expect(bodyTrailers(attempt)).toBeUndefined();

    const app = new PassThrough();
    const body = new RequestBody(app);
    const a = sink();
    let atEnd: unknown;
    a.stream.on('finish', () => { atEnd = bodyTrailers(a.stream as unknown as Readable); });
    body.feed(a.stream, () => undefined);
    setBodyTrailers(app, { 'x-sum': '1' });
    app.end('fed');
    await tick();
    expect(a.ended()).toBe(true);
    expect(atEnd).toEqual({ 'x-sum': '1' });
  });
});

describe('RequestBody and views lent by the app\'s connection (lent-views.ts)', () => {
  it('keeps a lent view for another attempt as a copy, so the connection\'s next read cannot change it', async () => {
    const app = new Readable({ read() {} });
    const body = new RequestBody(app);
    const first = sink();
    body.feed(first.stream, () => undefined);
    await tick();
    const readBuffer = Buffer.from('first read');
    expect(lendView(readBuffer.subarray(0), (view) => app.push(view))).toBe(false);
    readBuffer.write('OVERWRITE!'); // the connection's next read lands in the same buffer
    first.stream.destroy(); // the attempt failed
    const second = sink();
    body.feed(second.stream, () => undefined);
    app.push(null);
    await tick();
    expect(second.text()).toBe('first read');
  });

  it('says a lent view is held when the attempt\'s reader has paused and its stream must buffer it', async () => {
    const app = new Readable({ read() {} });
    const body = new RequestBody(app, 0);
    const stream = body.open();
    const got: string[] = [];
    stream.on('data', (chunk: Buffer) => { got.push(chunk.toString()); });
    await tick();
    expect(lendView(Buffer.from('one'), (view) => app.push(view))).toBe(false);
    stream.pause(); // the attempt's socket is full
    expect(lendView(Buffer.from('two'), (view) => app.push(view))).toBe(true);
    expect(got).toEqual(['one']);
    // and the app's side waits with it
    expect(app.isPaused()).toBe(true);
  });
});
