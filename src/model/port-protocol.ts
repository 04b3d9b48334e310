/** What a port speaks, as the mesh's records and sidecars name it. */
export type MeshProtocol = 'http' | 'h2c' | 'tcp';

/**
 * What a port speaks: `appProtocol` first (as Kubernetes documents it: an IANA service name, or
 * `kubernetes.io/h2c`), then Istio's port-name convention (`http-…`, `http2-…`, `grpc-…`,
 * `tcp-…`); HTTP when neither says. gRPC is HTTP/2 without TLS to the app (h2c).
 */
export function meshProtocol(appProtocol: string | undefined, name: string | undefined): MeshProtocol {
  const said = (appProtocol ?? name?.split('-')[0] ?? '').toLowerCase();
  if (said === 'tcp' || said === 'mysql' || said === 'redis' || said === 'mongo' || said === 'tls') return 'tcp';
  if (said === 'kubernetes.io/h2c' || said === 'h2c' || said === 'grpc' || said === 'http2') return 'h2c';
  return 'http';
}
