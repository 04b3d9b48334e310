// Types for the files of packages that src/core/undici.ts, src/core/typebox.ts,
// src/telemetry/prom.ts and src/trust/der.ts import one by one instead of through each
// package's index (see each of those files for why). Each is a CommonJS module whose
// module.exports is what the package's index exports under the name given here.

declare module 'undici/lib/dispatcher/dispatcher.js' { const value: typeof import('undici').Dispatcher; export default value; }
declare module 'undici/lib/dispatcher/client.js' { const value: typeof import('undici').Client; export default value; }
declare module 'undici/lib/dispatcher/pool.js' { const value: typeof import('undici').Pool; export default value; }
declare module 'undici/lib/dispatcher/agent.js' { const value: typeof import('undici').Agent; export default value; }
declare module 'undici/lib/core/connect.js' { const value: typeof import('undici').buildConnector; export default value; }
declare module 'undici/lib/api/index.js' { const value: object; export default value; }
declare module 'undici/lib/handler/wrap-handler.js' {
  const value: { wrap(handler: import('undici').Dispatcher.DispatchHandler): import('undici').Dispatcher.DispatchHandler };
  export default value;
}

declare module 'prom-client/lib/registry.js' { const value: typeof import('prom-client').Registry; export default value; }
declare module 'prom-client/lib/counter.js' { const value: typeof import('prom-client').Counter; export default value; }
declare module 'prom-client/lib/gauge.js' { const value: typeof import('prom-client').Gauge; export default value; }
declare module 'prom-client/lib/histogram.js' { const value: typeof import('prom-client').Histogram; export default value; }
declare module 'prom-client/lib/metrics/*' {
  const value: (registry: import('prom-client').Registry, config: { prefix: string }) => void;
  export default value;
}

declare module 'node-forge/lib/asn1.js' { const value: unknown; export default value; }
declare module 'node-forge/lib/forge.js' { const value: typeof import('node-forge'); export default value; }
