import type { LongPollFeed } from '../core/long-poll.js';
import { Type, Value, type Static, type TSchema } from '../core/typebox.js';

/**
 * The JSON values stored under /isthmus/v1 (docs/federation.md, "Key layout" and "Value shapes"). Records
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
  /** host:port of the federation's plain-HTTP port (dashboard, /metrics, /api/sidecars), when it listens. */
  dashboard: Type.Optional(Type.String()),
});
export type AliveRecord = Static<typeof AliveRecordSchema>;

export const GatewayRecordSchema = Type.Object({
  version,
  address: Type.String(),
  port: Type.Integer(),
  zone: Type.String(),
  /** host:port of the gateway's admin port (/healthz, /stats, /debug/connections), as it told its federation. */
  admin: Type.Optional(Type.String()),
});
export type GatewayRecord = Static<typeof GatewayRecordSchema>;

export const PortSchema = Type.Object({
  port: Type.Integer(),
  protocol: Type.String(),
  name: Type.Optional(Type.String()),
});

const LabelSetSchema = Type.Object({ labels: Type.Record(Type.String(), Type.String()), healthy: Type.Integer({ minimum: 0 }), total: Type.Integer({ minimum: 0 }) });

export const ExportRecordSchema = Type.Object({
  version,
  ports: Type.Array(PortSchema),
  /** SPIFFE IDs allowed to serve this service in the exporting cluster. */
  identities: Type.Array(Type.String()),
  /** Endpoint counts per zone, never addresses: the catalog grows with zones, not pods. */
  zones: Type.Record(Type.String(), Type.Object({ healthy: Type.Integer(), total: Type.Integer() })),
  /**
   * The distinct label sets of its instances (`isthmus register --label`), with counts: what a
   * caller elsewhere needs to know which clusters serve a ServiceSubset. Absent when no instance
   * has labels.
   */
  labelSets: Type.Optional(Type.Array(LabelSetSchema)),
  /** `Headless` when the exporting cluster's Service has no cluster IP (Kubernetes); absent means ClusterSetIP. */
  serviceType: Type.Optional(Type.Literal('Headless')),
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
 * `/probes/<from>/<to>`, leased by <from>: its federation's round trips (`GET /healthz`) through
 * <to>'s gateways to <to>'s federation, over a TLS connection kept between probes (last 60 per
 * pair). `failures`, `lastError` and `handshakeP50Ms` cover the same window.
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
  /**
   * p50 of the connection opens (TCP connect, TLS handshake, identity check) in the window; null
   * when every probe reused a kept connection. Optional: records written before it still validate.
   */
  handshakeP50Ms: Type.Optional(maybeMs),
  updatedAt: Type.String(),
  gateways: Type.Array(Type.Object({ id: Type.String(), p50Ms: maybeMs, ok: Type.Boolean() })),
});
export type ProbeRecord = Static<typeof ProbeRecordSchema>;

const count = Type.Integer({ minimum: 0 });

/**
 * `/traffic/<from>`, leased by <from>: what <from>'s sidecars saw of their own requests, as
 * counters that only grow while `epoch` (one federation run) stays the same, like Prometheus
 * counters: a reader takes differences over the window it wants. One row per destination
 * service and destination cluster, so the size follows services × clusters, never requests.
 * `buckets` use src/model/latency-histogram.ts's layout.
 */
export const TrafficRecordSchema = Type.Object({
  version,
  from: Type.String(),
  epoch: Type.String(),
  updatedAt: Type.String(),
  routes: Type.Array(Type.Object({
    namespace: Type.String(),
    service: Type.String(),
    /** The destination cluster; "" when no endpoint answered at all. */
    to: Type.String(),
    requests: count,
    /** 5xx answers, requests no endpoint answered, and gRPC calls that ended with a server-error grpc-status (grpc-status.ts). */
    errors: count,
    buckets: Type.Array(count, { maxItems: 85 }),
  })),
  /** Requests each traffic split sent to each backend, as the policy step chose (the dashboard's live split). */
  splits: Type.Optional(Type.Array(Type.Object({ namespace: Type.String(), service: Type.String(), backend: Type.String(), requests: count }))),
  /**
   * Connections through the sidecars' fixed TCP listeners (TCP services), per service and
   * destination cluster: opened, failed (never spliced), closed, and bytes each way from the
   * app's side, counted while connections are open. Open now = connections − failed − closed.
   */
  tcp: Type.Optional(Type.Array(Type.Object({
    namespace: Type.String(), service: Type.String(), to: Type.String(),
    connections: count, failed: count, closed: count, sentBytes: count, receivedBytes: count,
  }))),
});
export type TrafficRecord = Static<typeof TrafficRecordSchema>;

export const MeshEventSchema = Type.Object({
  /** Unique within its cluster's record; the page uses `<cluster>/<id>` to tell events apart. */
  id: Type.String(),
  at: Type.String(),
  kind: Type.Union([
    Type.Literal('failover'), Type.Literal('failback'), Type.Literal('ejection'),
    Type.Literal('cluster-down'), Type.Literal('cluster-up'),
    Type.Literal('slo-violated'), Type.Literal('slo-resolved'),
    Type.Literal('unreachable'), Type.Literal('reachable'),
    Type.Literal('authz-denied'),
    Type.Literal('rollout-step'), Type.Literal('rollout-succeeded'), Type.Literal('rollout-rolled-back'),
  ]),
  /** `<ns>/<name>` when the event is about a service. */
  service: Type.Optional(Type.String()),
  /** One sentence for people: what moved, from where to where, and why. */
  summary: Type.String(),
  /** How many sidecars reported the same thing in the same few seconds (one line, not fifty). */
  count: Type.Optional(count),
});
export type MeshEvent = Static<typeof MeshEventSchema>;

/** `/events/<cluster>`, leased by <cluster>: its most recent events (at most 50, oldest first). */
export const EventsRecordSchema = Type.Object({
  version,
  cluster: Type.String(),
  events: Type.Array(MeshEventSchema, { maxItems: 50 }),
});
export type EventsRecord = Static<typeof EventsRecordSchema>;

/**
 * `/policies/slo/<ns>/<name>`, persistent: a service level objective over the requests every
 * cluster's sidecars send to `service`. Written by `isthmus policy apply`.
 */
export const SloPolicySchema = Type.Object({
  version,
  namespace: Type.String(),
  name: Type.String(),
  service: Type.String(),
  /** "99% of requests faster than 250 ms": percentile 99, belowMs 250. */
  latency: Type.Optional(Type.Object({ percentile: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 100 }), belowMs: Type.Number({ exclusiveMinimum: 0 }) })),
  /** Percent of requests that must succeed (not 5xx, not unanswered, no gRPC server error), e.g. 99.9. */
  successPercent: Type.Optional(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 100 })),
  windowSeconds: Type.Integer({ minimum: 60 }),
  /** Fewer requests than this in the window say nothing: no verdict, no page. */
  minRequests: Type.Integer({ minimum: 1 }),
  /**
   * Where the federation finds the webhook URL when it pages: an environment variable or a file
   * on its own host. Never the URL itself: webhook URLs carry tokens, and etcd stores this in clear.
   */
  webhook: Type.Optional(Type.Union([
    Type.Object({ env: Type.String() }, { additionalProperties: false }),
    Type.Object({ file: Type.String() }, { additionalProperties: false }),
  ])),
});
export type SloPolicy = Static<typeof SloPolicySchema>;

/**
 * `/slostatus/<ns>/<name>`, persistent: the last verdict a federation acted on. Written only in a
 * transaction that compares the previous state, so of all the federations evaluating the same
 * objective exactly one sends each webhook.
 */
export const SloStatusRecordSchema = Type.Object({
  version,
  state: Type.Union([Type.Literal('ok'), Type.Literal('violated')]),
  since: Type.String(),
  /** The federation that made the change and sent the webhook. */
  by: Type.String(),
});
export type SloStatusRecord = Static<typeof SloStatusRecordSchema>;

export function isRecord<S extends TSchema>(schema: S, value: unknown): value is Static<S> {
  return Value.Check(schema, value);
}

/*
 * Snapshots the federation API serves to sidecars and gateways (long-polled, docs/federation.md).
 * Every reader checks an answer against these before using it and keeps its last good one when
 * one does not match: a half-written or foreign answer must not empty a routing table.
 */
const CatalogGatewaySchema = Type.Object({ id: Type.String(), address: Type.String(), port: Type.Integer(), zone: Type.String() });

const CatalogClustersSchema = Type.Array(Type.Object({
  name: Type.String(), region: Type.String(), zones: Type.Array(Type.String()), trustDomain: Type.String(),
  federation: Type.String(), joinedAt: Type.String(), alive: Type.Boolean(), gateways: Type.Array(CatalogGatewaySchema),
}));
const CatalogServiceSchema = Type.Object({
  namespace: Type.String(),
  name: Type.String(),
  clusters: Type.Array(Type.Object({
    cluster: Type.String(),
    region: Type.String(),
    zones: Type.Array(Type.Object({ zone: Type.String(), healthy: Type.Integer({ minimum: 0 }), total: Type.Integer({ minimum: 0 }) })),
    gateways: Type.Array(CatalogGatewaySchema),
    identities: Type.Array(Type.String()),
    ports: Type.Array(Type.Object({ port: Type.Integer(), protocol: Type.String(), name: Type.Optional(Type.String()) })),
    labelSets: Type.Optional(Type.Array(LabelSetSchema)),
  })),
});

/** src/model/catalog.ts's `Catalog`; its version is the etcd `revision`. */
export const CatalogSnapshotSchema = Type.Object({
  revision: Type.Integer(),
  clusters: CatalogClustersSchema,
  services: Type.Array(CatalogServiceSchema),
  invalidKeys: Type.Array(Type.String()),
});

/** One instance of a service as the federation API serves it: where, in which zone, whether it answers health checks. */
const EndpointSchema = Type.Object({
  address: Type.String(), zone: Type.String(), healthy: Type.Boolean(), labels: Type.Optional(Type.Record(Type.String(), Type.String())),
});

/** GET /v1/endpoints: this cluster's own services and instances. */
export const LocalEndpointsSchema = Type.Object({
  version: Type.Integer(),
  cluster: Type.String(),
  services: Type.Array(Type.Object({
    namespace: Type.String(),
    name: Type.String(),
    endpoints: Type.Array(EndpointSchema),
  })),
});
export type LocalEndpoints = Static<typeof LocalEndpointsSchema>;

/** GET /v1/gateway/routes: the exported services a gateway of this cluster may splice to. */
export const GatewayRoutesSchema = Type.Object({
  version: Type.Integer(),
  cluster: Type.String(),
  services: Type.Array(Type.Object({
    namespace: Type.String(),
    name: Type.String(),
    identities: Type.Array(Type.String()),
    endpoints: Type.Array(EndpointSchema),
    /** The service's ServiceSubsets by name, with the labels an instance must all carry: what a `<subset>.` SNI selects. */
    subsets: Type.Optional(Type.Record(Type.String(), Type.Record(Type.String(), Type.String()))),
  })),
});
export type GatewayRoutes = Static<typeof GatewayRoutesSchema>;

/**
 * GET /v1/trust: every root of the mesh (all its trust domains) and the SHA-256 fingerprint of
 * the intermediate the federation signs with now. Numbered like the other snapshots, so it is
 * long-polled. A federation from before that answers at once and without `version`: its readers
 * then ask again after a while instead of waiting on the answer.
 */
export const TrustAnswerSchema = Type.Object({
  version: Type.Optional(Type.Integer()),
  roots: Type.Array(Type.String(), { minItems: 1 }),
  issuer: Type.Optional(Type.String()),
});
export type TrustAnswer = Static<typeof TrustAnswerSchema>;

/** How sidecars and gateways long-poll GET /v1/trust (core/long-poll.ts). */
export const trustFeed: LongPollFeed<typeof TrustAnswerSchema> = { name: 'trust bundle', path: '/v1/trust', schema: TrustAnswerSchema, versionOf: (t) => t.version };
