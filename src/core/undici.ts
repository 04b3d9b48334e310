import { createRequire } from 'node:module';
import type * as Undici from 'undici';

/**
 * The parts of undici the proxies use, without undici's index. The index also loads fetch,
 * WebSocket, EventSource, the cache stores and the web streams behind them, eagerly: in a fresh
 * Node 20 process that is about 9 MB of RSS more than the client, pool, agent and request API
 * below (measured for docs/benchmarks.md, "Memory of one sidecar process"), and a sidecar pays
 * it in every pod. undici has no `exports` map, so these paths are importable; the version is
 * pinned exactly in package.json, and src/core/undici.test.ts checks each export is what its
 * name says, so an upgrade that moves a file fails a test rather than a sidecar.
 */
const require = createRequire(import.meta.url);

export const Dispatcher = require('undici/lib/dispatcher/dispatcher.js') as typeof Undici.Dispatcher;
// What undici's index does: request/stream/pipeline/upgrade/connect become methods of every dispatcher.
Object.assign(Dispatcher.prototype, require('undici/lib/api/index.js') as object);

export const Client = require('undici/lib/dispatcher/client.js') as typeof Undici.Client;
export type Client = Undici.Client;
export const Pool = require('undici/lib/dispatcher/pool.js') as typeof Undici.Pool;
export type Pool = Undici.Pool;
export const Agent = require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
export type Agent = Undici.Agent;
export const buildConnector = require('undici/lib/core/connect.js') as typeof Undici.buildConnector;
export type ConnectorOptions = Undici.buildConnector.BuildOptions;
export type Connector = Undici.buildConnector.connector;

type RequestOptions = Omit<Undici.Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & {
  method?: Undici.Dispatcher.HttpMethod;
  dispatcher: Undici.Dispatcher;
};

/** undici's `request(url, options)`, always with an explicit dispatcher (the proxies never use a global one). */
export function request(url: string, options: RequestOptions): Promise<Undici.Dispatcher.ResponseData> {
  const { dispatcher, ...rest } = options;
  const parsed = new URL(url);
  return dispatcher.request({
    ...rest,
    origin: parsed.origin,
    path: `${parsed.pathname}${parsed.search}`,
    method: rest.method ?? (rest.body ? 'PUT' : 'GET'),
  });
}
