import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { WebSocketServer } from 'ws';

export interface SampleInstance {
  service: string;
  cluster: string;
  zone: string;
  instance: string;
  address: string;
  /** Answers every later request this much later, on top of any `?delay=` (a slow version, to try a rollout's rollback). */
  setDelay?(ms: number): void;
  close(): Promise<void>;
}

/** Largest `/bytes?n=` download, so a typo cannot make the sample stream forever. */
const maxDownload = 4 * 1024 * 1024 * 1024;

/**
 * A sample workload for `isthmus dev up`, to try what the mesh carries:
 * - any path: JSON naming where it runs (cluster, zone, instance, and its version when it has one), the caller's identity as its
 *   sidecar gave it (x-forwarded-client-cert) and the traceparent;
 * - `POST /echo`: streams the request body back as it arrives, and says its SHA-256 in a trailer;
 * - `POST /upload`: reads the request body to its end and answers its length and SHA-256 (JSON),
 *   and the request's trailers (`trailers`) when it ended with some (a chunked upload may);
 * - `GET /bytes?n=<count>`: streams that many bytes of a known pattern (byte i is i mod 251), with a
 *   content-length, or chunked with `&chunked=1` (as an app that streams what it does not measure);
 * - `/ws`: a WebSocket that echoes every message; the 101 names the caller (x-sample-caller).
 * - `/status/<code>` answers with that status (to try a RetryPolicy or OutlierDetection), and
 *   `?delay=<ms>` on any plain path waits that long first (to try a CircuitBreaker or timeouts).
 */
export async function startSampleInstance(opts: { service: string; cluster: string; zone: string; instance: string; host: string; port: number; version?: string | undefined }): Promise<SampleInstance> {
  // `version` (its `version` label) only where the mesh runs versions: a split's answers say which one served them.
  let addedDelayMs = 0;
  const where = { service: opts.service, cluster: opts.cluster, zone: opts.zone, instance: opts.instance, ...(opts.version ? { version: opts.version } : {}) };
  const server: Server = createServer((req, res) => {
    if (req.method === 'POST' && req.url?.split('?')[0] === '/echo') return echo(req, res);
    if (req.method === 'POST' && req.url?.split('?')[0] === '/upload') return upload(req, res);
    if (req.url?.startsWith('/bytes?')) return bytes(req, res);
    const body = padded({
      ...where, method: req.method, path: req.url, caller: req.headers['x-forwarded-client-cert'] ?? null,
      traceparent: req.headers.traceparent ?? null,
    }, req.url);
    req.resume();
    const { status, delayMs: asked } = sampleAnswer(req.url ?? '/');
    const delayMs = asked + addedDelayMs;
    const answer = () => {
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
  server.keepAliveTimeout = 60_000;
  server.requestTimeout = 0;
  const sockets = new WebSocketServer({ noServer: true });
  sockets.on('headers', (headers, req) => {
    headers.push(`x-sample-caller: ${String(req.headers['x-forwarded-client-cert'] ?? '')}`, `x-sample-where: ${opts.cluster}/${opts.instance}`);
  });
  sockets.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  server.on('upgrade', (req, socket, head) => {
    if (req.url?.split('?')[0] !== '/ws') return void socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    sockets.handleUpgrade(req, socket, head, (ws) => sockets.emit('connection', ws, req));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  return {
    ...opts,
    address: `${opts.host}:${port}`,
    setDelay: (ms) => { addedDelayMs = Math.max(0, ms); },
    close: () => new Promise((resolve) => {
      for (const ws of sockets.clients) ws.terminate();
      sockets.close();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** `/status/503` → 503; `?delay=250` → wait 250 ms (at most a minute). Anything else: 200 at once. */
export function sampleAnswer(url: string): { status: number; delayMs: number } {
  const [path = '/', query = ''] = url.split('?');
  const code = /^\/status\/([1-5][0-9][0-9])$/.exec(path)?.[1];
  const delay = Number(new URLSearchParams(query).get('delay') ?? 0);
  return { status: code && Number(code) >= 200 ? Number(code) : 200, delayMs: Number.isFinite(delay) ? Math.min(60_000, Math.max(0, delay)) : 0 };
}

function echo(req: IncomingMessage, res: ServerResponse): void {
  const hash = createHash('sha256');
  res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream', trailer: 'x-sha256' });
  req.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    if (!res.write(chunk)) {
      req.pause();
      res.once('drain', () => req.resume());
    }
  });
  req.once('end', () => {
    res.addTrailers({ 'x-sha256': hash.digest('hex') });
    res.end();
  });
  req.once('error', () => res.destroy());
}

/** Byte i of a download is i mod 251: a pattern with no short period, cheap to make and to check. */
export function patternChunk(offset: number, length: number): Buffer {
  const chunk = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 1) chunk[i] = (offset + i) % 251;
  return chunk;
}

/**
 * The JSON answer, grown to exactly `?size=<n>` bytes with a `pad` field when asked (up to 64 KiB):
 * the bench asks for 1 KiB answers, whatever the caller's identity header adds through each chain.
 */
export function padded(answer: Record<string, unknown>, url: string | undefined): string {
  const plain = JSON.stringify(answer);
  const size = Number(new URLSearchParams(url?.split('?')[1] ?? '').get('size') ?? Number.NaN);
  const bare = JSON.stringify({ ...answer, pad: '' });
  if (!Number.isSafeInteger(size) || size > 65_536 || size < Buffer.byteLength(bare)) return plain;
  return JSON.stringify({ ...answer, pad: '.'.repeat(size - Buffer.byteLength(bare)) });
}

function upload(req: IncomingMessage, res: ServerResponse): void {
  const hash = createHash('sha256');
  let length = 0;
  req.on('data', (chunk: Buffer) => {
    length += chunk.length;
    hash.update(chunk);
  });
  req.once('end', () => {
    const trailers = Object.keys(req.trailers).length > 0 ? { trailers: req.trailers } : {};
    const body = JSON.stringify({ bytes: length, sha256: hash.digest('hex'), ...trailers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  req.once('error', () => res.destroy());
}

function bytes(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const query = new URLSearchParams(req.url?.split('?')[1] ?? '');
  const n = Number(query.get('n'));
  if (!Number.isSafeInteger(n) || n < 0 || n > maxDownload) {
    res.writeHead(400, { 'content-type': 'text/plain' });
    return void res.end(`n must be a whole number of bytes up to ${maxDownload}\n`);
  }
  // One 64 KiB block repeats exactly when its length is a multiple of 251.
  const block = patternChunk(0, 251 * 261);
  // Without a content-length node:http sends the body chunked, a chunk per write.
  res.writeHead(200, query.get('chunked') === '1' ? { 'content-type': 'application/octet-stream' } : { 'content-type': 'application/octet-stream', 'content-length': n });
  let sent = 0;
  const more = () => {
    while (sent < n) {
      const size = Math.min(block.length, n - sent);
      const chunk = size === block.length ? block : block.subarray(0, size);
      sent += size;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
    res.end();
  };
  res.once('close', () => { sent = n; });
  more();
}
