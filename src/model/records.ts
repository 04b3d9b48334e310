import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * The JSON values stored under /isthmus/v1 (DESIGN.md, federation store contract). Records
 * from etcd come from other clusters, so they are checked against these schemas before use;
 * unknown extra fields are tolerated so that a newer writer does not break an older reader.
 */
const version = Type.Literal(1);

export const ClusterRecordSchema = Type.Object({
  version,
  name: Type.String(),
  region: Type.String(),
  zones: Type.Array(Type.String()),
  trustDomain: Type.String(),
  /** host:port of the federation API (sidecars and gateways of that cluster use it). */
  federation: Type.String(),
  joinedAt: Type.String(),
});
export type ClusterRecord = Static<typeof ClusterRecordSchema>;

export const AliveRecordSchema = Type.Object({
  version,
  /** The writer's clock when it last wrote this record; refreshed every few seconds. */
  heartbeatAt: Type.String(),
  federationVersion: Type.String(),
  instance: Type.String(),
});
export type AliveRecord = Static<typeof AliveRecordSchema>;

export const GatewayRecordSchema = Type.Object({
  version,
  address: Type.String(),
  port: Type.Integer(),
  zone: Type.String(),
});
export type GatewayRecord = Static<typeof GatewayRecordSchema>;

export const PortSchema = Type.Object({
  port: Type.Integer(),
  protocol: Type.String(),
  name: Type.Optional(Type.String()),
});

export const ExportRecordSchema = Type.Object({
  version,
  ports: Type.Array(PortSchema),
  /** SPIFFE IDs allowed to serve this service in the exporting cluster. */
  identities: Type.Array(Type.String()),
  /** Endpoint counts per zone, never addresses: the catalog grows with zones, not pods. */
  zones: Type.Record(Type.String(), Type.Object({ healthy: Type.Integer(), total: Type.Integer() })),
});
export type ExportRecord = Static<typeof ExportRecordSchema>;

/** Persistent intent, written by `isthmus export`, read by the exporting cluster's federation. */
export const ServiceExportRecordSchema = Type.Object({
  version,
  exportedAt: Type.String(),
});
export type ServiceExportRecord = Static<typeof ServiceExportRecordSchema>;

/** Milliseconds, or null when the window holds no successful probe. */
const maybeMs = Type.Union([Type.Number(), Type.Null()]);

/**
 * `/probes/<from>/<to>`, leased by <from>: its federation's TLS round trips through <to>'s
 * gateways (last 60 per pair). `failures` and `lastError` cover the same window.
 */
export const ProbeRecordSchema = Type.Object({
  version,
  from: Type.String(),
  to: Type.String(),
  p50Ms: maybeMs,
  p99Ms: maybeMs,
  minMs: maybeMs,
  maxMs: maybeMs,
  samples: Type.Integer(),
  failures: Type.Integer(),
  lastError: Type.Optional(Type.String()),
  updatedAt: Type.String(),
  gateways: Type.Array(Type.Object({ id: Type.String(), p50Ms: maybeMs, ok: Type.Boolean() })),
});
export type ProbeRecord = Static<typeof ProbeRecordSchema>;

export function isRecord<S extends TSchema>(schema: S, value: unknown): value is Static<S> {
  return Value.Check(schema, value);
}
