import type { ClientHttp2Session } from 'node:http2';

/** One GET on an HTTP/2 session: the status (0 when no head came) and the whole body. */
export function h2Get(s: ClientHttp2Session, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = s.request({ ':path': path });
    let status = 0;
    let body = '';
    stream.on('response', (h) => { status = Number(h[':status']); });
    stream.on('data', (c: Buffer) => { body += c.toString(); });
    stream.on('end', () => resolve({ status, body }));
    stream.on('error', reject);
  });
}
