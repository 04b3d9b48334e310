import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { hostPort } from '../../src/sidecar/listen.js';

/** What the dev mesh's sample app answered to `POST /upload`: the body it read, and the request's trailers. */
export interface UploadSeen { status: number; bytes: number; sha256: string; trailers: Record<string, string> }

/**
 * A chunked POST (no content-length) of `pieces`, one write each, ending with `trailers` as a
 * node:http client adds them (`req.addTrailers`), sent to a sidecar's listener at `address`:
 * absolute-form to `url` when `proxy` (the outbound's proxy port), origin-form to a fixed
 * listener otherwise. Resolves with the sample app's `/upload` answer.
 */
export function chunkedUpload(address: string, url: string, pieces: Buffer[], trailers: Record<string, string>, proxy = true): Promise<UploadSeen> {
  const [host, port] = hostPort(address);
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({
      host, port, method: 'POST', path: proxy ? url : `${target.pathname}${target.search}`,
      headers: { host: proxy ? target.host : address, 'content-type': 'application/octet-stream' }, agent: false,
    }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => {
        try {
          const seen = JSON.parse(text) as Omit<UploadSeen, 'status'>;
          resolve({ status: res.statusCode ?? 0, bytes: seen.bytes, sha256: seen.sha256, trailers: seen.trailers ?? {} });
        } catch {
          reject(new Error(`answer ${res.statusCode}: ${text.slice(0, 300)}`));
        }
      });
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer to POST ${url} within 30 s`)));
    req.on('error', reject);
    const write = (i: number): void => {
      if (i === pieces.length) {
        req.addTrailers(trailers);
        req.end();
        return;
      }
      if (req.write(pieces[i]!)) write(i + 1);
      else req.once('drain', () => write(i + 1));
    };
    write(0);
  });
}

export const sha256 = (pieces: Buffer[]): string => {
  const hash = createHash('sha256');
  for (const piece of pieces) hash.update(piece);
  return hash.digest('hex');
};
