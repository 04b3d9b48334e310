import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { answerStatus, whenTunnelAnswered } from './tunnel-exchange.js';

describe('the status of a tunnel\'s answer, read from its first bytes', () => {
  test.each<[string, number | undefined]>([
    ['HTTP/1.1 101 Switching Protocols\r\n', 101],
    ['HTTP/1.1 200 Connection Established\r\n\r\n', 200],
    ['HTTP/1.0 403 Forbidden\r\n', 403],
    ['HTTP/1.1 204\r\n', 204],
    // Not a status line: the tunnel's own fallback applies.
    ['SSH-2.0-OpenSSH_9.2\r\n', undefined],
    ['HTTP/1.1 99 Too Low\r\n', undefined],
    ['HTTP/2 200\r\n', undefined],
    ['HTTP/1.1 2000 x\r\n', undefined],
    ['', undefined],
  ])('%j → %s', (first, status) => {
    expect(answerStatus(Buffer.from(first, 'latin1'))).toBe(status);
  });

  test('told once: with the first bytes\' status, the fallback when they are no status line, 502 when the side closes first', async () => {
    const told = (write: (side: PassThrough) => void) => new Promise<number[]>((resolve) => {
      const side = new PassThrough();
      const statuses: number[] = [];
      whenTunnelAnswered(side, 101, (status) => statuses.push(status));
      // A reader of its own, as the splice is.
      side.on('data', () => undefined);
      write(side);
      setTimeout(() => resolve(statuses), 20);
    });
    expect(await told((side) => { side.write('HTTP/1.1 403 Forbidden\r\n\r\n'); side.write('HTTP/1.1 500 x\r\n'); })).toEqual([403]);
    expect(await told((side) => side.write('\x81\x05hello'))).toEqual([101]);
    expect(await told((side) => side.destroy())).toEqual([502]);
  });
});
