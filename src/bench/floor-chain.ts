/**
 * `node dist/bench/floor-chain.js --role relay-out|relay-in|http-out|http-in ...`: one hop of the
 * least a Node process can do in a sidecar's place on the same-cluster chain, for `npm run
 * bench:floor` (floor.ts), which measures two such chains beside ours and the peer's.
 *
 * - `relay-out` takes plain connections and relays each one's bytes, as they come, over a
 *   mutual-TLS connection of its own to `--to`; `relay-in` takes mutual TLS (a client
 *   certificate of the CA required) and relays to the app at `--to`. No HTTP at all: a byte
 *   relay in each place a sidecar stands, the least any Node proxy of the chain pays.
 * - `http-out` and `http-in` do the same with one more step, the one every HTTP proxy takes:
 *   each request and response is parsed with Node's HTTP/1.1 parser (the one the sidecars use,
 *   through the same module) and its head written anew (origin-form target on the way out,
 *   `connection` and `keep-alive` dropped), the body passed on as it was read (a chunked one
 *   framed in chunks again). A response to a HEAD, a 204 or a 304 is not told apart: the bench
 *   sends GETs. No routing, pool,
 *   retry, policy, metric, log or identity: what stands between this and a sidecar is Isthmus's
 *   own work.
 *
 * One upstream connection per accepted one, kept as long as it is. Prints one JSON line
 * `{ "listen": "host:port" }` once listening.
 */
import { readFileSync } from 'node:fs';
import { connect as tcpConnect, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { parseArgs } from 'node:util';
import { HTTPParser, parserMethods, type NativeParser } from '../sidecar/native-http-parser.js';

export const floorRoles = ['relay-out', 'relay-in', 'http-out', 'http-in'] as const;
export type FloorRole = (typeof floorRoles)[number];

const usage = `usage: node dist/bench/floor-chain.js --role relay-out|relay-in|http-out|http-in --host <ip> --to <host:port> --ca <pem> --cert <pem> --key <pem>
One hop of a bare Node chain (npm run bench:floor): *-out listens for plain HTTP and sends over mutual TLS
to --to; *-in listens for mutual TLS and sends to the app at --to. relay-*: bytes only; http-*: each head
parsed and written anew.`;

/** Pure. A request head as an HTTP proxy writes it on: origin-form target, no connection-specific fields. */
export function requestHead(method: string, target: string, fields: readonly string[]): string {
  return `${method} ${originForm(target)} HTTP/1.1\r\n${headerLines(fields)}\r\n`;
}

/** Pure. `http://host/p?q` → `/p?q`; an origin-form target as it is. */
export function originForm(target: string): string {
  if (!target.startsWith('http://') && !target.startsWith('https://')) return target;
  const slash = target.indexOf('/', target.indexOf('//') + 2);
  return slash < 0 ? '/' : target.slice(slash);
}

/** Pure. A response head as an HTTP proxy writes it on. */
export function responseHead(status: number, reason: string, fields: readonly string[]): string {
  return `HTTP/1.1 ${status} ${reason}\r\n${headerLines(fields)}\r\n`;
}

function headerLines(fields: readonly string[]): string {
  let lines = '';
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as string;
    const lower = name.length === 10 || name.length === 16 ? name.toLowerCase() : '';
    if (lower === 'connection' || lower === 'proxy-connection') continue;
    if (name.length === 10 && name.toLowerCase() === 'keep-alive') continue;
    lines += `${name}: ${fields[i + 1] as string}\r\n`;
  }
  return lines;
}

/** Bytes both ways between two sockets; either closing closes both. */
function relayBytes(down: Socket, up: Socket): void {
  down.pipe(up);
  up.pipe(down);
  closeTogether(down, up);
}

function closeTogether(a: Socket, b: Socket): void {
  a.on('error', () => a.destroy());
  b.on('error', () => b.destroy());
  a.once('close', () => b.destroy());
  b.once('close', () => a.destroy());
}

function parser(type: number, onHead: (fields: string[], method: number, url: string, status: number, reason: string) => void, onBody: (chunk: Buffer) => void, onEnd: () => void): NativeParser {
  const p = new HTTPParser();
  p.initialize(type, {}, 0, 0);
  let pending: string[] = [];
  p[HTTPParser.kOnHeaders] = (fields: string[]) => { pending = pending.concat(fields); };
  p[HTTPParser.kOnHeadersComplete] = (_major: number, _minor: number, fields: string[] | undefined, method: number, url: string | undefined, status: number, reason: string) => {
    const all = fields ?? pending;
    pending = [];
    onHead(all, method, url ?? '', status, reason);
  };
  p[HTTPParser.kOnBody] = onBody;
  p[HTTPParser.kOnMessageComplete] = onEnd;
  return p;
}

/** Pure. Whether a head's fields frame its body as chunked. */
export function isChunked(fields: readonly string[]): boolean {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if ((fields[i] as string).length === 17 && (fields[i] as string).toLowerCase() === 'transfer-encoding' && /chunked\s*$/i.test(fields[i + 1] as string)) return true;
  }
  return false;
}

/**
 * Writes a message's body as the parser hands it over: as it is for a body with a length, in
 * chunks again for a chunked one (the parser gives the chunks' data without their framing).
 */
class BodyWriter {
  chunked = false;
  constructor(private readonly to: Socket) {}
  data(chunk: Buffer): void {
    const copy = Buffer.from(chunk);
    if (!this.chunked) this.to.write(copy);
    else this.to.write(Buffer.concat([Buffer.from(`${copy.length.toString(16)}\r\n`, 'latin1'), copy, crlf]));
  }
  end(): void {
    if (this.chunked) this.to.write(lastChunk);
    this.chunked = false;
  }
}

const crlf = Buffer.from('\r\n', 'latin1');
const lastChunk = Buffer.from('0\r\n\r\n', 'latin1');

/**
 * Requests from `down` to `up` and answers back, each head parsed and written anew. A response's
 * head and body go out in one corked write (as the sidecars write them).
 */
function relayHttp(down: Socket, up: Socket): void {
  const upBody = new BodyWriter(up);
  const requests = parser(HTTPParser.REQUEST, (fields, method, url) => {
    up.write(requestHead(parserMethods[method] ?? 'GET', url, fields), 'latin1');
    upBody.chunked = isChunked(fields);
  }, (chunk) => upBody.data(chunk), () => upBody.end());
  let corked = false;
  const uncork = () => {
    corked = false;
    down.uncork();
  };
  const cork = () => {
    if (corked) return;
    corked = true;
    down.cork();
    process.nextTick(uncork);
  };
  const downBody = new BodyWriter(down);
  const answers = parser(HTTPParser.RESPONSE, (fields, _method, _url, status, reason) => {
    cork();
    down.write(responseHead(status, reason, fields), 'latin1');
    downBody.chunked = isChunked(fields);
  }, (chunk) => {
    cork();
    downBody.data(chunk);
  }, () => downBody.end());
  const feed = (p: NativeParser, from: Socket) => (chunk: Buffer) => {
    const result = p.execute(chunk);
    if (typeof result !== 'number') from.destroy(result);
  };
  down.on('data', feed(requests, down));
  up.on('data', feed(answers, up));
  closeTogether(down, up);
}

function listen(server: Server, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve(`${host}:${(server.address() as { port: number }).port}`));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      role: { type: 'string' }, host: { type: 'string', default: '127.0.0.1' }, to: { type: 'string' },
      ca: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  const role = values.role as FloorRole;
  if (!floorRoles.includes(role) || !values.to || !values.ca || !values.cert || !values.key) {
    process.stderr.write(`floor-chain: missing or wrong options\n${usage}\n`);
    process.exitCode = 2;
    return;
  }
  const tlsFiles = { ca: readFileSync(values.ca), cert: readFileSync(values.cert), key: readFileSync(values.key) };
  const split = values.to.lastIndexOf(':');
  const to = { host: values.to.slice(0, split), port: Number(values.to.slice(split + 1)) };
  const relay = role.startsWith('http') ? relayHttp : relayBytes;
  let server: Server;
  if (role.endsWith('-out')) {
    server = createServer((down) => {
      down.setNoDelay(true);
      // The chain is verified against the CA; the name is not (a sidecar checks a SPIFFE ID instead).
      const up = tlsConnect({ ...to, ...tlsFiles, servername: 'floor', checkServerIdentity: () => undefined });
      up.setNoDelay(true);
      relay(down, up);
    });
  } else {
    server = createTlsServer({ ...tlsFiles, requestCert: true, rejectUnauthorized: true }, (down) => {
      down.setNoDelay(true);
      relay(down, tcpConnect({ ...to, noDelay: true }));
    });
  }
  process.stdout.write(`${JSON.stringify({ listen: await listen(server, values.host as string) })}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
