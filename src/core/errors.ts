/**
 * Every error a user can see carries a stable code (`ISTHMUS_ERR_<AREA>_<WHAT>`), a message that
 * says what to do, and where it applies an HTTP status. Code decides on `err.code`, never on the
 * message. docs/errors.md lists every code; src/core/errors.test.ts keeps the two in step.
 */
export const errorCodes = {
  // config
  ISTHMUS_ERR_CONFIG_INVALID: { status: 400, summary: 'A config file or flag does not match its schema.' },
  ISTHMUS_ERR_CONFIG_UNREADABLE: { status: 400, summary: 'A config file could not be read or parsed as YAML.' },
  ISTHMUS_ERR_CONFIG_PATH_UNUSABLE: { status: 400, summary: 'A directory or file a flag or config names cannot be created or written (a file where a directory is needed, no permission, a file system such as /proc).' },
  // isthmus inject / uninject
  ISTHMUS_ERR_INJECT_YAML_INVALID: { status: 400, summary: 'The manifests given to inject or uninject are not valid YAML.' },
  ISTHMUS_ERR_INJECT_UNSUPPORTED: { status: 400, summary: 'A workload is written in a form inject cannot edit without rewriting the user\'s YAML, or clashes with what inject adds.' },
  // etcd / federation store
  ISTHMUS_ERR_ETCD_UNREACHABLE: { status: 503, summary: 'The federation store (etcd) did not answer.' },
  ISTHMUS_ERR_ETCD_CONFLICT: { status: 409, summary: 'A transaction lost a race with another writer.' },
  ISTHMUS_ERR_ETCD_RECORD_INVALID: { status: 500, summary: 'A record read from etcd is not valid JSON of the expected shape.' },
  ISTHMUS_ERR_ETCD_NOT_CONFIGURED: { status: 400, summary: 'No etcd address was given (--etcd or ISTHMUS_ETCD).' },
  ISTHMUS_ERR_ETCD_TLS_FILE_INVALID: { status: 400, summary: 'A TLS file for etcd (--etcd-ca, --etcd-cert, --etcd-key or the config file\'s etcd.ca/cert/key) is missing, unreadable, not PEM, expired, or a key that does not match its certificate.' },
  ISTHMUS_ERR_ETCD_PERMISSION_DENIED: { status: 403, summary: 'etcd\'s authentication is on and the user of this client\'s certificate may not read or write that key.' },
  ISTHMUS_ERR_LISTENER_TLS_FILE_INVALID: { status: 400, summary: 'A TLS certificate or key for an HTTPS listener (the dashboard, an admin port) is missing, unreadable, not PEM, expired, or a key that does not match its certificate.' },
  ISTHMUS_ERR_ETCD_TLS_FAILED: { status: 503, summary: 'The TLS handshake with etcd failed: its server certificate is not trusted, it refused the client certificate, or one side speaks plain text.' },
  // trust
  ISTHMUS_ERR_TRUST_CA_EXISTS: { status: 409, summary: 'A CA already exists where a new one would be written.' },
  ISTHMUS_ERR_TRUST_CA_MISSING: { status: 400, summary: 'A CA directory lacks a file it needs or holds an unusable one.' },
  ISTHMUS_ERR_TRUST_CERT_INVALID: { status: 400, summary: 'A certificate could not be parsed or is not what was expected.' },
  ISTHMUS_ERR_TRUST_CERT_EXPIRED: { status: 400, summary: 'A certificate is outside its validity period.' },
  ISTHMUS_ERR_TRUST_CHAIN_INVALID: { status: 400, summary: 'A certificate does not chain to a trusted root.' },
  ISTHMUS_ERR_TRUST_CSR_INVALID: { status: 400, summary: 'A certificate signing request is malformed, badly signed or has an unacceptable key.' },
  ISTHMUS_ERR_TRUST_IDENTITY_DENIED: { status: 403, summary: 'The caller may not obtain a certificate for that identity.' },
  ISTHMUS_ERR_TRUST_TOKEN_INVALID: { status: 401, summary: 'A bootstrap token is unknown, expired or malformed.' },
  ISTHMUS_ERR_TRUST_SPIFFE_INVALID: { status: 400, summary: 'A SPIFFE ID or trust domain is malformed.' },
  ISTHMUS_ERR_TRUST_BUNDLE_MISSING: { status: 404, summary: 'etcd holds no trust bundle for the trust domain of the given root.' },
  ISTHMUS_ERR_TRUST_ROOT_IN_USE: { status: 409, summary: 'A root cannot leave its bundle yet: a cluster still signs with an intermediate of it, or certificates under it are still held.' },
  // the control plane's own callers (docs/security.md, "Endpoints")
  ISTHMUS_ERR_AUTH_CREDENTIAL_MISSING: { status: 401, summary: 'An admin, API or dashboard endpoint was called without the credential it needs (an operator token, or a mesh certificate as the TLS client certificate).' },
  ISTHMUS_ERR_AUTH_CREDENTIAL_INVALID: { status: 401, summary: 'A presented operator token or certificate does not verify: malformed, expired, altered, or not chained to a root of the mesh.' },
  ISTHMUS_ERR_AUTH_FORBIDDEN: { status: 403, summary: 'A verified caller is not one this endpoint serves: not an operator, an operator of another trust domain, or not on loopback.' },
  // cluster membership
  ISTHMUS_ERR_CLUSTER_UNKNOWN: { status: 404, summary: 'No cluster of that name is in the mesh.' },
  ISTHMUS_ERR_CLUSTER_NAME_INVALID: { status: 400, summary: 'A cluster, namespace or service name is not a DNS label.' },
  ISTHMUS_ERR_PREFLIGHT_FAILED: { status: 400, summary: 'One or more preflight checks failed; nothing was written.' },
  // services
  ISTHMUS_ERR_SERVICE_UNKNOWN: { status: 404, summary: 'No service of that name is known to the cluster.' },
  // traffic policies
  ISTHMUS_ERR_POLICY_INVALID: { status: 400, summary: 'A policy document does not match its schema or asks for something Isthmus does not do; nothing was applied.' },
  ISTHMUS_ERR_POLICY_NOT_FOUND: { status: 404, summary: 'No policy of that kind and name is stored.' },
  // rollouts (docs/rollouts.md)
  ISTHMUS_ERR_ROLLOUT_INVALID: { status: 400, summary: 'A rollout was asked for with steps, an interval, versions or an objective that cannot work; nothing was written.' },
  ISTHMUS_ERR_ROLLOUT_NOT_FOUND: { status: 404, summary: 'No rollout of that service is stored.' },
  ISTHMUS_ERR_ROLLOUT_ACTIVE: { status: 409, summary: 'The service already has a rollout in progress or paused.' },
  ISTHMUS_ERR_ROLLOUT_FINISHED: { status: 409, summary: 'The rollout has ended (succeeded, rolled back or aborted): it cannot be paused, resumed or aborted.' },
  ISTHMUS_ERR_ROLLOUT_SPLIT_TAKEN: { status: 409, summary: 'Another HTTPRoute or TrafficSplit already decides where the service\'s requests go, so the rollout\'s split would not be followed.' },
  // API
  ISTHMUS_ERR_KUBERNETES_UNREACHABLE: { status: 503, summary: 'The Kubernetes API server did not answer, refused the federation\'s credentials, or its kubeconfig could not be loaded.' },
  ISTHMUS_ERR_KUBERNETES_FORBIDDEN: { status: 403, summary: 'The Kubernetes API server refused a request for lack of an RBAC permission; the message names the verb, resource and namespace.' },
  ISTHMUS_ERR_KUBERNETES_CONFLICT: { status: 409, summary: 'An object `isthmus join` writes into the cluster appeared or changed while it was writing.' },

  ISTHMUS_ERR_API_BAD_REQUEST: { status: 400, summary: 'A request to the federation API is malformed.' },
  ISTHMUS_ERR_API_NOT_FOUND: { status: 404, summary: 'A request named a route or method the federation API does not have.' },
  ISTHMUS_ERR_API_UNREACHABLE: { status: 503, summary: 'The federation API of a cluster did not answer.' },
  ISTHMUS_ERR_API_NOT_JSON: { status: 415, summary: 'A dashboard write was not sent as content-type: application/json (required, so that a form on another site cannot make it).' },
  ISTHMUS_ERR_API_TOO_MANY_STREAMS: { status: 429, summary: 'A client asked for another live stream (dashboard or catalog events) while it, or all clients together, already hold as many as the server allows.' },
  // data plane (what a sidecar answers an app with, as status, body and x-isthmus-error)
  ISTHMUS_ERR_DATAPLANE_NO_ROUTE: { status: 503, summary: 'The request names no mesh service: not a <service>.<namespace>.mesh name, or no cluster runs or exports that service.' },
  ISTHMUS_ERR_DATAPLANE_NO_HEALTHY_ENDPOINT: { status: 503, summary: 'The service is known but no endpoint in any cluster is healthy now.' },
  ISTHMUS_ERR_DATAPLANE_UPSTREAM_UNREACHABLE: { status: 503, summary: 'No endpoint of the service could be connected to (refused, unreachable, TLS handshake or identity check failed), after every allowed attempt.' },
  ISTHMUS_ERR_DATAPLANE_UPSTREAM_REFUSED: { status: 503, summary: 'An HTTP/2 destination refused the request without processing it (REFUSED_STREAM, or GOAWAY below its stream), after every allowed attempt.' },
  ISTHMUS_ERR_DATAPLANE_UPSTREAM_RESET: { status: 502, summary: 'The connection to the destination broke after the request was sent and before an answer came.' },
  ISTHMUS_ERR_DATAPLANE_UPSTREAM_TIMEOUT: { status: 504, summary: 'The destination did not start its answer within the response-headers timeout (or, on HTTP/2, its stream stayed silent for the stream-idle timeout before it).' },
  ISTHMUS_ERR_DATAPLANE_REQUEST_MALFORMED: { status: 400, summary: 'The bytes a caller sent are not an HTTP/1.1 request head (431 when the head is larger than the sidecar accepts); the connection was closed.' },
  ISTHMUS_ERR_DATAPLANE_REQUEST_HEADERS_TIMEOUT: { status: 408, summary: 'A caller did not send a complete request head within timeouts.requestHeaders; its connection was closed.' },
  ISTHMUS_ERR_DATAPLANE_APP_UNREACHABLE: { status: 502, summary: 'The destination sidecar could not reach or lost its own app.' },
  ISTHMUS_ERR_DATAPLANE_NO_MATCHING_RULE: { status: 404, summary: 'An HTTPRoute is attached to the service and none of its rules matches the request.' },
  ISTHMUS_ERR_DATAPLANE_NO_BACKEND: { status: 500, summary: 'The traffic policy rule that matched gives every backend weight 0, or names no backend the mesh knows.' },
  ISTHMUS_ERR_DATAPLANE_CIRCUIT_OPEN: { status: 503, summary: 'A CircuitBreaker limit of the upstream (maxRequests or maxPendingRequests) is reached; the request was refused at once, without being sent (the message names the limit).' },
  ISTHMUS_ERR_DATAPLANE_RATE_LIMITED: { status: 429, summary: 'The service\'s LocalRateLimit has no token left at the destination instance (for this caller, with per: caller); retry after the Retry-After header\'s seconds.' },
  ISTHMUS_ERR_DATAPLANE_FAULT_INJECTED: { status: 503, summary: 'A FaultInjection policy aborted the request on purpose, with the status it declares (503 is only the default of the code).' },
  ISTHMUS_ERR_DATAPLANE_PROTOCOL_UNSUPPORTED: { status: 501, summary: 'The request uses a protocol feature the sidecar does not carry (the message names it); 417 for an Expect other than 100-continue.' },
  // authorization (docs/authorization.md): what a destination's inbound sidecar answers a caller with
  ISTHMUS_ERR_AUTHZ_DENIED: { status: 403, summary: 'The destination\'s authorization policies do not let this caller make this request: a deny rule matched, or no rule allows it.' },
  ISTHMUS_ERR_AUTHZ_PATH_REFUSED: { status: 400, summary: 'The request path cannot be matched safely (an escaped slash or backslash, a malformed escape, a control character, a segment ending in a dot), and the service has authorization policies.' },
  // isthmus trace
  ISTHMUS_ERR_TRACE_NO_SIDECAR: { status: 503, summary: 'No sidecar of the cluster to trace from could be found or answered.' },
  ISTHMUS_ERR_TRACE_CONNECT_FAILED: { status: 502, summary: 'The traced request could not connect to its first hop (a local sidecar or a gateway).' },
  ISTHMUS_ERR_TRACE_HANDSHAKE_FAILED: { status: 502, summary: 'The traced request\'s TLS handshake failed: a gateway refused the SNI, a certificate did not verify, or the destination\'s identity is not one the catalog allows.' },
  ISTHMUS_ERR_TRACE_NO_ANSWER: { status: 504, summary: 'The traced request was sent but no complete answer came back in time.' },
  // plain TCP services (docs/sidecar.md, "TCP services"): the app's connection is closed, the code is logged
  ISTHMUS_ERR_TCP_NO_ENDPOINT: { status: 503, summary: 'A TCP listener\'s service is not in the mesh or has no healthy endpoint in any cluster.' },
  ISTHMUS_ERR_TCP_UPSTREAM_UNREACHABLE: { status: 502, summary: 'No endpoint of a TCP service accepted the connection (connect, TLS, identity or protocol check failed on every attempt).' },
  ISTHMUS_ERR_TCP_CALLER_REFUSED: { status: 403, summary: 'A TCP inbound listener refused a caller: no mesh certificate, an unacceptable identity, or no `isthmus-tcp` ALPN.' },
  ISTHMUS_ERR_TCP_APP_UNREACHABLE: { status: 502, summary: 'A TCP inbound listener could not connect to its app\'s port.' },
  // anything else
  ISTHMUS_ERR_INTERNAL_UNEXPECTED: { status: 500, summary: 'A bug: an error without a code of its own. Please report it with the log line.' },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof errorCodes;

export class IsthmusError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra structured detail (field paths, failed checks) for JSON output and logs. */
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'IsthmusError';
    this.code = code;
    this.status = errorCodes[code].status;
    this.details = options.details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: unknown } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isIsthmusError(err: unknown, code?: ErrorCode): err is IsthmusError {
  return err instanceof IsthmusError && (code === undefined || err.code === code);
}

/** One line for a terminal: the message, and the cause's message where it adds something. */
export function describeError(err: unknown): string {
  if (err instanceof IsthmusError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
