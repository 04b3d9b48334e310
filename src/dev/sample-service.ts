import { createServer, type Server } from 'node:http';

export interface SampleInstance {
  service: string;
  cluster: string;
  zone: string;
  instance: string;
  address: string;
  close(): Promise<void>;
}

/**
 * A sample workload for `isthmus dev up`: answers every request with JSON naming where it runs,
 * so a person (or a test) can see which cluster, zone and instance served a request.
 */
export async function startSampleInstance(opts: { service: string; cluster: string; zone: string; instance: string; host: string; port: number }): Promise<SampleInstance> {
  const server: Server = createServer((req, res) => {
    const body = JSON.stringify({
      service: opts.service, cluster: opts.cluster, zone: opts.zone, instance: opts.instance,
      method: req.method, path: req.url, caller: req.headers['x-forwarded-client-cert'] ?? null,
      traceparent: req.headers.traceparent ?? null,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  return {
    ...opts,
    address: `${opts.host}:${port}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
