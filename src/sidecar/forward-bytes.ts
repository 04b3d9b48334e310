import type { Readable, Writable } from 'node:stream';

/**
 * Moves `from`'s chunks into `to` with back-pressure and ends `to` when `from` ends: the work
 * `from.pipe(to)` does in a relay, without pipe's bookkeeping. pipe() adds eight listeners to
 * the two streams and takes them off again at the end; on an HTTP/2 stream, where a sidecar
 * already pays for two Node stream objects per request, that showed in profiles. Here it is two
 * listeners on `from`, and one on `to` only while it is full.
 *
 * Once `to` takes no more (reset, closed or ended), `from` is paused, as pipe() leaves it: the
 * relay's close handlers end the other side.
 */
export function forwardBytes(from: Readable, to: Writable): void {
  const resume = () => from.resume();
  from.on('data', (chunk: Buffer) => {
    if (!to.writable) return void from.pause();
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', resume);
    }
  });
  from.once('end', () => {
    if (to.writable) to.end();
  });
}
