import type * as Undici from 'undici';
import api from 'undici/lib/api/index.js';
import connect from 'undici/lib/core/connect.js';
import dispatcher from 'undici/lib/dispatcher/dispatcher.js';
import wrap from 'undici/lib/handler/wrap-handler.js';

/**
 * The parts of undici the proxies use, without undici's index: the dispatcher base class with
 * the request API, the connector (TLS, session cache, connect timeout) and the handler adapter.
 * The index also loads fetch, WebSocket, EventSource, the cache stores and the web streams behind
 * them, eagerly: in a fresh Node 20 process that is about 9 MB of RSS more (measured for
 * docs/benchmark-history.md, "Memory results"), and a sidecar pays it in every pod.
 * undici's client, pool and agent are in ./undici-client.ts, for the control plane: the proxies
 * connect through src/sidecar/h1-connection.ts, and never compile undici's WebAssembly parser.
 * undici has no `exports` map, so these paths are importable (their types are in
 * ./deep-imports.d.ts); the version is pinned exactly in package.json, and
 * src/core/undici.test.ts checks each export is what its name says, so an upgrade that moves a
 * file fails a test rather than a sidecar.
 */
export const Dispatcher = dispatcher;
// What undici's index does: request/stream/pipeline/upgrade/connect become methods of every dispatcher.
Object.assign(Dispatcher.prototype, api);

export const buildConnector = connect;
/** A handler of undici's older interface (onConnect, onHeaders, ...) behind the newer one (onRequestStart, onResponseStart, ...); a newer one as it is. */
export const wrapHandler = wrap;
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
