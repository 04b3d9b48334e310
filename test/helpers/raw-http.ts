import { connect } from 'node:net';

export interface RawResponse { status: number; head: string; body: string }

/**
 * Sends `GET <target>` exactly as written, over a plain socket. `fetch` (and undici) normalise
 * the path first (`/a/../b` becomes `/b`), so a test of what a server does with `..` must go
 * below them, as an attacker would.
 */
export async function rawGet(url: string, target: string, timeoutMs = 5000): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return await new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const chunks: Buffer[] = [];
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no complete answer to GET ${target} within ${timeoutMs} ms`)));
    socket.on('connect', () => socket.write(`GET ${target} HTTP/1.1\r\nhost: ${hostname}\r\nconnection: close\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const head = split === -1 ? text : text.slice(0, split);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? Number.NaN);
      resolve({ status, head, body: split === -1 ? '' : text.slice(split + 4) });
    });
  });
}

/**
 * Reads a server-sent event stream up to its first complete event. A stream that ends first, or
 * sends nothing for `timeoutMs`, fails with what it sent, rather than reading empty chunks until
 * the test's own timeout.
 */
export async function firstEvent(body: ReadableStream<Uint8Array>, timeoutMs: number): Promise<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const deadline = setTimeout(() => void reader.cancel(new Error('timeout')), timeoutMs);
  let text = '';
  try {
    while (!text.includes('\n\n')) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`the event stream ended (or sent nothing for ${timeoutMs} ms) before a whole event; it sent ${JSON.stringify(text)}`);
      text += decoder.decode(value, { stream: true });
    }
    return text;
  } finally {
    clearTimeout(deadline);
    reader.releaseLock();
  }
}
