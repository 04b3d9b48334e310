import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fuzzRun } from '../helpers/fuzz.js';
import { sidecarChain, testPki, type SidecarChain } from '../helpers/sidecar-fixtures.js';

/**
 * A sidecar's HTTP listeners given mutations of real requests (HTTP/1.1 heads and bodies,
 * pipelines, upgrades, CONNECT, an HTTP/2 preface), as raw bytes on a real outbound → inbound
 * (mTLS) → app chain: every connection is answered or closed (no hang: the short limits below
 * close whatever waits), the process survives (an uncaught error fails the run), every refusal
 * the caller is told of is counted in isthmus_requests_refused_total (at most one per
 * connection: a refusal closes it), and the chain still serves a good request at the end. ISTHMUS_FUZZ_SECONDS / ISTHMUS_FUZZ_SEED (test/helpers/fuzz.ts).
 */

const corpus = (t: string) => [
  `GET ${t}/ HTTP/1.1\r\nhost: echo.demo.mesh\r\n\r\n`,
  `POST ${t}/upload HTTP/1.1\r\nhost: echo.demo.mesh\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nhello`,
  `POST ${t}/chunks HTTP/1.1\r\nhost: echo.demo.mesh\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n`,
  `GET ${t}/a HTTP/1.1\r\nhost: echo.demo.mesh\r\n\r\nGET ${t}/b HTTP/1.1\r\nhost: echo.demo.mesh\r\nconnection: close\r\n\r\n`,
  `GET ${t}/ws HTTP/1.1\r\nhost: echo.demo.mesh\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  'CONNECT echo.demo.mesh:80 HTTP/1.1\r\nhost: echo.demo.mesh:80\r\n\r\n',
  `GET ${t}/?q=%2e%2e%2f&x=1#frag HTTP/1.0\r\nhost: echo.demo.mesh\r\nexpect: 100-continue\r\nx-forwarded-client-cert: By=x\r\n\r\n`,
  'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00',
];

const refusalCodes = /x-isthmus-error: ISTHMUS_ERR_DATAPLANE_REQUEST_(MALFORMED|HEADERS_TIMEOUT)\r\n/g;

describe.each([['outbound', 'http://echo.demo.mesh'], ['inbound', '']] as const)('the %s listener under fuzzing', (listener, target) => {
  // A chain of its own: requests the outbound's fuzzing left half-sent reach the inbound later,
  // and the inbound rightly refuses them; they must not be counted against the inbound's run.
  let chain: SidecarChain;
  beforeAll(async () => {
    chain = await sidecarChain(testPki(), { requestHeadersMs: 400, streamIdleMs: 800, connectionIdleMs: 800, responseHeadersMs: 2000, tunnelIdleMs: 800 });
  });
  afterAll(async () => {
    await chain?.close();
  });

  test('every input is answered or closed, every refusal is counted, and the listener still serves', async () => {
    const run = fuzzRun(3, corpus(target));
    const before = await chain.refused(listener);
    const problems: string[] = [];
    let told = 0;
    let n = 0;
    const end = Date.now() + run.seconds * 1000;
    // Eight connections at a time: inputs that wait for the head timeout overlap.
    const worker = async () => {
      while (Date.now() < end || n < 40) {
        const i = n++;
        try {
          const answered = await chain.send(listener, run.input(i), 10_000);
          told += answered.match(refusalCodes)?.length ?? 0;
        } catch (err) {
          problems.push(`${run.label(i)}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    expect(problems, `${n} inputs`).toEqual([]);
    // Every refusal a caller was told of is counted. A refusal can be counted and not seen (its 400
    // is lost when the caller is still sending as the sidecar closes: the kernel resets the
    // connection), but a refusal closes its connection, so there is at most one per input.
    const counted = (await chain.refused(listener)) - before;
    expect(counted, `refusals counted vs told in ${n} inputs (${run.label(0)})`).toBeGreaterThanOrEqual(told);
    expect(counted, `refusals counted vs inputs (${run.label(0)})`).toBeLessThanOrEqual(n);
    chain.seen.length = 0;
    const good = await chain.send(listener, `GET ${target}/after HTTP/1.1\r\nhost: echo.demo.mesh\r\nconnection: close\r\n\r\n`);
    expect(good.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(chain.seen).toContain('GET /after ');
  });
});
