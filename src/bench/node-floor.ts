/**
 * `node dist/bench/node-floor.js --role proxy|upstream ...`: the least a Node process can hold
 * while doing a sidecar's job, measured by `bench/memory.ts` in the same run as the sidecar.
 *
 * Both roles listen for mutual TLS (client certificate required and verified against the root)
 * and answer 1 KiB over HTTP/1.1 behind it, as an inbound does. The proxy role also listens for
 * plain HTTP, as an outbound does, and relays each request with node:https over mutual TLS to
 * `--upstream`, one keep-alive connection per Host (each Host is its own SNI name, as each
 * remote service is behind a gateway). Nothing else: no config, routing table, telemetry,
 * logging or catalog, so whatever a sidecar holds above this process is Isthmus's own.
 *
 * Prints one JSON line `{ "inbound": "host:port", "outbound": "host:port" }` once listening.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

const usage = `usage: node dist/bench/node-floor.js --role proxy|upstream --host <ip> --ca <pem> --cert <pem> --key <pem> [--upstream host:port]
A minimal Node mutual-TLS proxy (role proxy) or server (role upstream), the memory bench's floor.`;

const { values } = parseArgs({
  options: {
    role: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' }, ca: { type: 'string' }, cert: { type: 'string' },
    key: { type: 'string' }, upstream: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
if ((values.role !== 'proxy' && values.role !== 'upstream') || !values.ca || !values.cert || !values.key || (values.role === 'proxy' && !values.upstream)) {
  process.stderr.write(`node-floor: missing or wrong options\n${usage}\n`);
  process.exit(2);
}
const ca = readFileSync(values.ca);
const cert = readFileSync(values.cert);
const key = readFileSync(values.key);
const host = values.host as string;
const answer = Buffer.alloc(1024, 'x');

const app = http.createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': answer.length });
  res.end(answer);
});
const inbound = tls.createServer({ ca, cert, key, requestCert: true, rejectUnauthorized: true }, (socket) => app.emit('connection', socket));

function listen(server: http.Server | tls.Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve(`${host}:${(server.address() as { port: number }).port}`));
  });
}

const inboundAddress = await listen(inbound);
let outboundAddress: string | undefined;
if (values.role === 'proxy') {
  const [upstreamHost, upstreamPort] = (values.upstream as string).split(':') as [string, string];
  // The chain is verified against the root; the name is not (a sidecar checks a SPIFFE ID instead).
  const agent = new https.Agent({ keepAlive: true, ca, cert, key, checkServerIdentity: () => undefined });
  const outbound = http.createServer((req, res) => {
    const name = (req.headers.host ?? 'upstream').split(':')[0] as string;
    const upstream = https.request({ host: upstreamHost, port: Number(upstreamPort), servername: name, agent, method: req.method, path: req.url, headers: req.headers }, (answered) => {
      res.writeHead(answered.statusCode ?? 502, answered.headers);
      answered.pipe(res);
    });
    upstream.once('error', (err) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`${err.message}\n`);
    });
    req.pipe(upstream);
  });
  outboundAddress = await listen(outbound);
}
process.stdout.write(`${JSON.stringify({ inbound: inboundAddress, outbound: outboundAddress })}\n`);
