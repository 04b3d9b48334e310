import { describe, expect, test } from 'vitest';
import { padded } from './sample-service.js';

describe('the sample app\'s padded JSON answer (the bench asks for 1 KiB)', () => {
  const answer = { service: 'ledger', cluster: 'west', caller: 'By=spiffe://x;Hash=abc;URI=spiffe://y' };
  test.each([
    ['/?size=1024', 1024], ['/?size=4096', 4096], ['/x?a=1&size=300', 300],
  ])('%s is exactly %i bytes and still says who answered', (url, size) => {
    const body = padded(answer, url);
    expect(Buffer.byteLength(body)).toBe(size);
    expect(JSON.parse(body)).toMatchObject(answer);
  });
  test.each([['/'], ['/?size=10'], ['/?size=abc'], ['/?size=70000']])('%s: the plain answer, unpadded', (url) => {
    expect(padded(answer, url)).toBe(JSON.stringify(answer));
  });
});
