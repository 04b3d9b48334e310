/**
 * Configuration text for the peer chain the bench measures us against: nginx as outbound and
 * inbound sidecar, HAProxy as the east-west gateway. Pure: plain data in, file text out, so every
 * directive the comparison depends on is checked by a test without starting anything.
 *
 * What keeps the comparison fair (each proxy does what ours does, no more and no less):
 *   - one process per proxy (nginx `master_process off`, HAProxy `nbthread 1`), as ours runs;
 *   - keep-alive everywhere: generator → outbound, outbound → inbound/gateway (an mTLS pool) and
 *     inbound → origin, with no request limit per connection (ours has none);
 *   - TLS 1.3 only, the client certificate required and verified up to the root, the server's
 *     name verified by the outbound (as our sidecars verify identities);
 *   - the gateway reads only the ClientHello's SNI and splices bytes, as ours does;
 *   - no access log unless asked (ours logs no line per request).
 */

/** A path on disk; nginx and HAProxy read these, so they must be absolute. */
type File = string;

export interface PeerTlsFiles {
  /** Leaf followed by its intermediate (what the peer is sent). */
  certChain: File;
  key: File;
  /** The root that verifies the other end's chain. */
  rootCa: File;
}

export interface NginxOutboundSpec {
  /** Directory for the pid file, error log and nginx's temp directories. */
  prefix: File;
  /** host:port the load generator sends plain HTTP to (absolute-form, as to our outbound). */
  listen: string;
  /**
   * One per service name the app may ask for (the Host of its request). A `grpc` route is served
   * on `grpcListen` instead, as HTTP/2 (h2c with prior knowledge, as gRPC clients speak it), and
   * goes on with nginx's gRPC proxy over mutual TLS (ALPN h2), as our sidecars send gRPC.
   */
  routes: { host: string; upstream: string; sniName: string; grpc?: boolean }[];
  /** host:port for the gRPC routes (nginx serves h2c only on a listener of its own). */
  grpcListen?: string;
  /** A JSON line per request (`npm run bench -- --access-log`), as our sidecars' access log writes. */
  requestLog?: File;
  /** The outbound's client certificate and the root it verifies servers with. */
  tls: PeerTlsFiles;
  /** Idle keep-alive connections kept per upstream. */
  keepalive: number;
  /** Bodies of any size pass as they stream, with no temporary files (`npm run bench:bulk`). */
  streamBodies?: boolean;
}

export interface NginxInboundSpec {
  prefix: File;
  /** host:port of the TLS listener (what the gateway or the outbound connects to). */
  listen: string;
  serverName: string;
  tls: PeerTlsFiles;
  /** host:port of the app behind this sidecar. */
  origin: string;
  /** The app speaks gRPC (h2c): the listener takes HTTP/2 (ALPN h2) and passes calls on with grpc_pass. */
  grpc?: boolean;
  keepalive: number;
  /** One line per request with the client certificate's verification result, for tests. */
  accessLog?: File;
  /** A JSON line per request (`npm run bench -- --access-log`), as our sidecars' access log writes. */
  requestLog?: File;
  /** Bodies of any size pass as they stream, with no temporary files (`npm run bench:bulk`). */
  streamBodies?: boolean;
}

export interface HaproxyGatewaySpec {
  listen: string;
  /** SNI name → host:port of the inbound sidecar it is spliced to. */
  routes: { sniName: string; backend: string }[];
}

const noRequestLimit = 1_000_000;

/** Directives every nginx of the chain shares: one process in the foreground, files in `prefix`. */
function nginxMain(prefix: File, http: string[]): string {
  return [
    'daemon off;',
    'master_process off;',
    'worker_processes 1;',
    `pid ${prefix}/nginx.pid;`,
    `error_log ${prefix}/error.log warn;`,
    'events {',
    '  worker_connections 4096;',
    '}',
    'http {',
    ...[
      'access_log off;',
      `client_body_temp_path ${prefix}/client-body;`,
      `proxy_temp_path ${prefix}/proxy;`,
      `fastcgi_temp_path ${prefix}/fastcgi;`,
      `uwsgi_temp_path ${prefix}/uwsgi;`,
      `scgi_temp_path ${prefix}/scgi;`,
      'tcp_nodelay on;',
      'keepalive_timeout 60s;',
      `keepalive_requests ${noRequestLimit};`,
      ...http,
    ].map((line) => (line === '' ? '' : `  ${line}`)),
    '}',
    '',
  ].join('\n');
}

function upstream(name: string, server: string, keepalive: number): string[] {
  return [
    `upstream ${name} {`,
    `  server ${server};`,
    `  keepalive ${keepalive};`,
    '  keepalive_timeout 60s;',
    `  keepalive_requests ${noRequestLimit};`,
    '}',
  ];
}

/**
 * The peer's counterpart of our sidecars' JSON access log (docs/sidecar.md, "Access log"): a JSON
 * object per request with the fields both have (time, method, path, status, bytes each way, the
 * duration, the upstream and its time, the caller's certificate subject on an inbound, the user
 * agent and x-request-id), written when the request ends, as ours is.
 */
const requestLogFormat = `log_format peer_requests escape=json '${JSON.stringify({
  time: '$time_iso8601', method: '$request_method', path: '$request_uri', status: '$status', requestBytes: '$request_length',
  responseBytes: '$bytes_sent', durationS: '$request_time', upstream: '$upstream_addr', upstreamS: '$upstream_response_time',
  caller: '$ssl_client_s_dn', userAgent: '$http_user_agent', requestId: '$http_x_request_id',
})}';`;

/**
 * Bodies streamed both ways as ours are: nginx otherwise refuses a request body over 1 MB (413),
 * reads a whole request body before it sends it on, and keeps what does not fit its buffers of
 * an answer in a temporary file.
 */
const streamingBodies = ['client_max_body_size 0;', 'proxy_request_buffering off;', 'proxy_buffering off;'];

/** HTTP/1.1 with keep-alive to the upstream (nginx speaks 1.0 and closes unless told). */
const keepAliveProxying = ['proxy_http_version 1.1;', 'proxy_set_header Connection "";'];

/** Quoted for nginx's parser: a value in double quotes with `"` and `\` escaped. */
export function nginxQuote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

export function renderNginxOutbound(spec: NginxOutboundSpec): string {
  const http: string[] = [...(spec.requestLog ? [requestLogFormat] : []), ...(spec.streamBodies ? streamingBodies : [])];
  spec.routes.forEach((route, i) => http.push(...upstream(`route_${i}`, route.upstream, spec.keepalive), ''));
  spec.routes.forEach((route, i) => http.push(...outboundServer(spec, route, i)));
  // A Host no route names gets an answer, not whichever route happens to be first.
  http.push('server {', `  listen ${spec.listen} default_server;`, '  return 404;', '}');
  return nginxMain(spec.prefix, http);
}

/**
 * One route's server block. HTTP goes on with nginx's HTTP proxy, gRPC (on the h2c listener)
 * with its gRPC proxy; both with the same TLS to the next hop, whose directives differ only by
 * their prefix (`proxy_ssl_*`, `grpc_ssl_*`).
 */
function outboundServer(spec: NginxOutboundSpec, route: NginxOutboundSpec['routes'][number], i: number): string[] {
  if (route.grpc && !spec.grpcListen) throw new Error(`route ${route.host} is gRPC, and the outbound has no grpcListen`);
  const module = route.grpc ? 'grpc' : 'proxy';
  return [
    'server {',
    route.grpc ? `  listen ${spec.grpcListen} http2;` : `  listen ${spec.listen};`,
    `  server_name ${route.host};`,
    // At server level: the http level's `access_log off` would cancel it there.
    ...(spec.requestLog ? [`  access_log ${spec.requestLog} peer_requests;`] : []),
    '  location / {',
    ...[
      ...(route.grpc ? [`grpc_pass grpcs://route_${i};`] : [`proxy_pass https://route_${i};`, ...keepAliveProxying, 'proxy_set_header Host $host;']),
      `${module}_ssl_protocols TLSv1.3;`,
      `${module}_ssl_server_name on;`,
      `${module}_ssl_name ${route.sniName};`,
      `${module}_ssl_certificate ${spec.tls.certChain};`,
      `${module}_ssl_certificate_key ${spec.tls.key};`,
      `${module}_ssl_trusted_certificate ${spec.tls.rootCa};`,
      `${module}_ssl_verify on;`,
      `${module}_ssl_verify_depth 2;`,
      `${module}_ssl_session_reuse on;`,
    ].map((line) => `    ${line}`),
    '  }',
    '}',
    '',
  ];
}

export function renderNginxInbound(spec: NginxInboundSpec): string {
  // The caller's identity goes to the app as ours sends it (x-forwarded-client-cert), so both
  // chains hand the app a header of about the same size and the answers are alike.
  const xfcc = 'Hash=$ssl_client_fingerprint;Subject="$ssl_client_s_dn"';
  return nginxMain(spec.prefix, [
    ...(spec.accessLog ? ['log_format peer_mtls \'$ssl_client_verify "$ssl_client_s_dn" $ssl_protocol $status\';'] : []),
    ...(spec.requestLog ? [requestLogFormat] : []),
    ...(spec.streamBodies ? streamingBodies : []),
    ...upstream('origin', spec.origin, spec.keepalive),
    '',
    'server {',
    `  listen ${spec.listen} ssl${spec.grpc ? ' http2' : ''};`,
    `  server_name ${spec.serverName};`,
    ...[
      `ssl_certificate ${spec.tls.certChain};`,
      `ssl_certificate_key ${spec.tls.key};`,
      'ssl_protocols TLSv1.3;',
      `ssl_client_certificate ${spec.tls.rootCa};`,
      'ssl_verify_client on;',
      'ssl_verify_depth 2;',
      // At server level: the http level's `access_log off` would cancel it there.
      ...(spec.accessLog ? [`access_log ${spec.accessLog} peer_mtls;`] : []),
      ...(spec.requestLog ? [`access_log ${spec.requestLog} peer_requests;`] : []),
      'location / {',
      ...(spec.grpc
        ? ['  grpc_pass grpc://origin;', `  grpc_set_header x-forwarded-client-cert ${nginxQuote(xfcc)};`]
        : ['  proxy_pass http://origin;', ...keepAliveProxying.map((line) => `  ${line}`), `  proxy_set_header x-forwarded-client-cert ${nginxQuote(xfcc)};`]),
      '}',
    ].map((line) => `  ${line}`),
    '}',
  ]);
}

/**
 * mode tcp: the gateway waits for the ClientHello (`inspect-delay`), picks the inbound by its SNI
 * (`req.ssl_sni`) and splices; it never holds a key. An SNI it does not know gets no backend, so
 * the connection is closed.
 */
export function renderHaproxyGateway(spec: HaproxyGatewaySpec): string {
  const lines = [
    'global',
    '  nbthread 1',
    '  maxconn 8192',
    '',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '',
    'frontend east_west',
    `  bind ${spec.listen}`,
    '  tcp-request inspect-delay 5s',
    '  tcp-request content accept if { req.ssl_hello_type 1 }',
    ...spec.routes.map((route, i) => `  use_backend inbound_${i} if { req.ssl_sni -i ${route.sniName} }`),
    '',
  ];
  spec.routes.forEach((route, i) => lines.push(`backend inbound_${i}`, `  server inbound_${i} ${route.backend}`, ''));
  return lines.join('\n');
}
