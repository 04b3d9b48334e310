import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import type { Outcome } from './open-loop.js';
import type { Target } from './targets.js';

export interface TargetClient {
  target: Target;
  send(): Promise<Outcome>;
  close(): Promise<void>;
}

const requestTimeoutMs = 5_000;

/**
 * Keep-alive HTTP/1.1 to a target's first hop: one undici Pool with more connections than the
 * highest rate ever keeps in flight, so a request never queues in the generator behind another.
 */
export function targetClient(target: Target, connections: number): TargetClient {
  const pool = new Pool(`http://${target.firstHop}`, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: requestTimeoutMs,
    bodyTimeout: requestTimeoutMs,
  });
  const options = { method: 'GET' as const, path: target.path, headers: { host: target.host } };
  return {
    target,
    async send() {
      const { statusCode, body } = await pool.request(options);
      const data = await body.arrayBuffer();
      return { status: statusCode, bytes: data.byteLength };
    },
    close: () => pool.close(),
  };
}

export interface ProbeResult {
  bytes: number;
  body: string;
}

/**
 * Waits until the target answers 200 from the service and cluster it should (a sidecar learns
 * its routes from the federation service a moment after it listens). Throws with the last answer.
 */
export async function waitUntilServing(target: Target, timeoutMs: number): Promise<ProbeResult> {
  const pool = new Pool(`http://${target.firstHop}`, { connections: 1, headersTimeout: 2_000, bodyTimeout: 2_000 });
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  try {
    while (Date.now() < deadline) {
      try {
        const res = await pool.request({ method: 'GET', path: target.path, headers: { host: target.host } });
        const text = await res.body.text();
        last = `status ${res.statusCode}: ${text.slice(0, 200)}`;
        if (res.statusCode === 200) {
          const body = JSON.parse(text) as { service?: string; cluster?: string };
          if (body.service === target.expect.service && body.cluster === target.expect.cluster) return { bytes: Buffer.byteLength(text), body: text };
          last = `answered by ${body.service}@${body.cluster}, expected ${target.expect.service}@${target.expect.cluster}`;
        }
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(250);
    }
  } finally {
    await pool.close();
  }
  throw new Error(`${target.scenario} (${target.path} via ${target.firstHop}) did not serve within ${timeoutMs / 1000} s: ${last}`);
}
