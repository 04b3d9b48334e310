import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  Etcd3, EtcdLeaseInvalidError, EtcdPermissionDeniedError, GRPCUnavailableError, Range, isRecoverableError,
  type ICompare, type IKeyValue, type IOptions, type IRequestOp,
} from 'etcd3';
import { pino, type Logger } from 'pino';
import { IsthmusError } from '../core/errors.js';
import { diagnoseEtcdTls, grpcCredentials, loadEtcdTls, type EtcdTls, type EtcdTlsFiles } from './etcd-tls.js';
import { prefix as rootPrefix, recordVersion } from '../core/keys.js';
import { LeaseKeeper, type LeasePort, type LeaseSession, type LeaseSessionOptions } from './lease-session.js';
import { PrefixWatcher, type PrefixWatch, type PrefixWatchHandlers, type WatchPort } from './prefix-watch.js';

export type { LeaseSession, LeaseSessionOptions } from './lease-session.js';
export type { PrefixWatch, PrefixWatchHandlers } from './prefix-watch.js';

export interface StoredRecord<T = unknown> {
  key: string;
  value: T;
  modRevision: number;
  createRevision: number;
  /** Lease id, '0' if none. */
  lease: string;
}

export type StoreEvent = { type: 'put'; record: StoredRecord } | { type: 'delete'; key: string; modRevision: number };

export interface ConnectOptions {
  /** `http://host:port`, a list of them, or a comma-separated list (as ISTHMUS_ETCD holds it). */
  endpoints: string | string[];
  /**
   * etcd's CA and this client's certificate and key (paths). Needed by an etcd with
   * --client-cert-auth; an https:// endpoint without a CA is checked against Node's public CAs and NODE_EXTRA_CA_CERTS.
   */
  tls?: EtcdTlsFiles | undefined;
  logger?: Logger;
  dialTimeoutMs?: number;
  /**
   * A refused connection ends the dial at once instead of being retried until dialTimeoutMs.
   * For a command a person runs: nothing listening there is the answer, and waiting for an etcd
   * that may be starting is what a long-running service does, not a shell verb.
   */
  refusedIsFinal?: boolean;
  callTimeoutMs?: number;
}

export interface TransactOptions {
  ifAbsent?: string[];
  ifModRevision?: Record<string, number>;
  puts?: { key: string; value: object; lease?: LeaseSession }[];
  deletes?: string[];
  deletePrefixes?: string[];
}

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * etcd3's default fault handling opens a per-host circuit breaker for 5 s after three failures,
 * which holds back every call and stream for seconds after etcd is back, and retries any failed
 * call three times, which can replay a transaction whose first attempt did apply. We retry only a
 * call that gRPC never sent ("No connection established"), so that a dead endpoint in a list
 * fails over to a live one (etcd3 picks a random endpoint per attempt, and drops the failed
 * channel so the next attempt on it connects afresh). Everything else is the caller's decision;
 * the watch and lease loops retry with backoff themselves.
 */
function retryUnsentPolicy(maxAttempts: number): Policy {
  const policy = {
    async execute<T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> {
      const signal = new AbortController().signal;
      for (let attempt = 1; ; attempt++) {
        try {
          return await fn({ signal });
        } catch (err) {
          const unsent = err instanceof GRPCUnavailableError && err.message.includes('No connection established');
          if (!unsent || attempt >= maxAttempts) throw err;
        }
      }
    },
    onSuccess: () => ({ dispose: () => undefined }),
    onFailure: () => ({ dispose: () => undefined }),
  };
  return policy as unknown as Policy; // cockatiel's IPolicy also declares a type-only _altReturn
}

export function parseEndpoints(endpoints: string | string[]): string[] {
  const list = (Array.isArray(endpoints) ? endpoints : endpoints.split(','))
    .map((e) => e.trim().replace(/\/+$/, ''))
    .filter((e) => e.length > 0);
  if (list.length === 0) {
    throw new IsthmusError('ISTHMUS_ERR_ETCD_NOT_CONFIGURED', 'No etcd address was given. Pass --etcd http://host:2379 or set ISTHMUS_ETCD.');
  }
  return list;
}

async function tlsFailure(endpoints: string[], tls: EtcdTls | undefined, cause: unknown): Promise<IsthmusError | undefined> {
  const reason = await diagnoseEtcdTls(endpoints[0]!, tls).catch(() => undefined);
  return reason === undefined ? undefined : new IsthmusError('ISTHMUS_ERR_ETCD_TLS_FAILED', `${reason}.`, { cause, details: { endpoints } });
}

/** A short reason for a terminal: the socket error when there is one, not gRPC's whole story. */
function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const socketError = /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)\b/.exec(message);
  if (socketError) return socketError[1] === 'ECONNREFUSED' ? 'connection refused' : socketError[1]!;
  if (/DEADLINE_EXCEEDED|deadline/i.test(message)) return 'no answer before the deadline';
  return message.split('\n')[0]!;
}

/** Our records are JSON objects with a numeric `version`; anything else is refused by key. */
function decodeRecord<T>(kv: IKeyValue): StoredRecord<T> {
  const key = kv.key.toString();
  let value: unknown;
  try {
    value = JSON.parse(kv.value.toString('utf8'));
  } catch (err) {
    throw new IsthmusError('ISTHMUS_ERR_ETCD_RECORD_INVALID', `The etcd record ${key} is not JSON. Delete it or write it again with a current isthmus.`, { cause: err, details: { key } });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof (value as { version?: unknown }).version !== 'number') {
    throw new IsthmusError('ISTHMUS_ERR_ETCD_RECORD_INVALID', `The etcd record ${key} has no numeric "version" field. Delete it or write it again with a current isthmus.`, { details: { key } });
  }
  return { key, value: value as T, modRevision: Number(kv.mod_revision), createRevision: Number(kv.create_revision), lease: kv.lease || '0' };
}

function encodeValue(key: string, value: object): Buffer {
  if (typeof (value as { version?: unknown }).version !== 'number') {
    throw new IsthmusError('ISTHMUS_ERR_ETCD_RECORD_INVALID', `Refusing to write ${key}: every record needs a numeric "version" field (current: ${recordVersion}).`, { details: { key } });
  }
  return Buffer.from(JSON.stringify(value));
}

/** A prefix without a trailing slash also matches its siblings (`east` would take `eastern`). */
function assertDeletablePrefix(prefix: string): void {
  if (!prefix.startsWith('/') || !prefix.endsWith('/')) {
    throw new RangeError(`refusing to delete by prefix ${JSON.stringify(prefix)}: a prefix must start and end with "/"`);
  }
}

export class FederationStore {
  readonly #client: Etcd3;
  readonly #endpoints: string[];
  readonly #log: Logger;
  readonly #sessions = new Set<LeaseKeeper>(); // live ones, for close() and deletes
  readonly #issued = new WeakSet<LeaseKeeper>();
  readonly #watches = new Set<PrefixWatcher>();
  #closed = false;

  /** The TLS files this store connected with, loaded; undefined for a plain-text etcd. */
  readonly tls: EtcdTls | undefined;

  private constructor(client: Etcd3, endpoints: string[], tls: EtcdTls | undefined, log: Logger) {
    this.#client = client;
    this.#endpoints = endpoints;
    this.tls = tls;
    this.#log = log;
  }

  /**
   * Connects and proves etcd answers (a status call), retrying until dialTimeoutMs: etcd3 itself
   * ignores its dialTimeout option, and gRPC connects lazily, so without this a wrong address
   * would only show up at the first real call.
   */
  static async connect(opts: ConnectOptions): Promise<FederationStore> {
    const endpoints = parseEndpoints(opts.endpoints);
    const tls = loadEtcdTls(endpoints, opts.tls);
    const dialTimeoutMs = opts.dialTimeoutMs ?? 3_000;
    const callTimeoutMs = opts.callTimeoutMs ?? 5_000;
    const log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'federation-store' });
    const global = retryUnsentPolicy(endpoints.length + 1);
    const passThrough = retryUnsentPolicy(1);
    const client = new Etcd3({
      hosts: endpoints,
      defaultCallOptions: (call) => (call.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
      faultHandling: { host: () => passThrough, global },
      ...(tls ? { credentials: grpcCredentials(tls) } : {}),
      grpcOptions: {
        // Reconnect promptly after an etcd restart instead of gRPC's default (up to 120 s) backoff.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        // Find a connection that died silently (etcd accepts pings every 5 s or slower).
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
      },
    });
    const deadline = Date.now() + dialTimeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      try {
        await client.maintenance.status({ deadline });
        log.debug({ endpoints, tls: tls?.files }, 'connected to etcd');
        return new FederationStore(client, endpoints, tls, log);
      } catch (err) {
        // gRPC says UNAVAILABLE for a refused certificate as for a stopped etcd; a TLS failure will
        // not heal by waiting, so it is told at once and by name.
        const failedTls = lastError === undefined ? await tlsFailure(endpoints, tls, err) : undefined;
        lastError = err;
        if (failedTls) {
          client.close();
          throw failedTls;
        }
        if (!(err instanceof Error && isRecoverableError(err))) break;
        if (opts.refusedIsFinal && reasonOf(err) === 'connection refused') break;
        await new Promise((resolve) => setTimeout(resolve, Math.min(200, Math.max(0, deadline - Date.now()))));
      }
    }
    client.close();
    const failedTls = lastError === undefined ? undefined : await tlsFailure(endpoints, tls, lastError);
    if (failedTls) throw failedTls;
    const reason = reasonOf(lastError);
    throw new IsthmusError(
      'ISTHMUS_ERR_ETCD_UNREACHABLE',
      (opts.refusedIsFinal && reason === 'connection refused' ? `etcd at ${endpoints.join(', ')} refused the connection: nothing listens there. ` : `etcd at ${endpoints.join(', ')} did not answer within ${dialTimeoutMs} ms (${reason}). `) +
        'Check that etcd is running and reachable there, or pass its address with --etcd or ISTHMUS_ETCD.',
      { cause: lastError, details: { endpoints } },
    );
  }

  async get<T>(key: string): Promise<StoredRecord<T> | undefined> {
    const res = await this.#call(`reading ${key}`, () => this.#client.kv.range({ key: Buffer.from(key) }));
    const kv = res.kvs[0];
    return kv === undefined ? undefined : decodeRecord<T>(kv);
  }

  async list<T>(prefix: string): Promise<{ records: StoredRecord<T>[]; revision: number }> {
    const { kvs, revision } = await this.#range(prefix);
    return { records: kvs.map((kv) => decodeRecord<T>(kv)), revision };
  }

  async put(key: string, value: object, opts: { lease?: LeaseSession } = {}): Promise<number> {
    if (opts.lease !== undefined) return await this.#keeper(opts.lease).write(key, value);
    return await this.#put(key, value, '0');
  }

  async transact(opts: TransactOptions): Promise<boolean> {
    const compare: ICompare[] = [
      // A key that does not exist has create_revision 0.
      ...(opts.ifAbsent ?? []).map((key): ICompare => ({ key: Buffer.from(key), target: 'Create', result: 'Equal', create_revision: 0 })),
      ...Object.entries(opts.ifModRevision ?? {}).map(([key, rev]): ICompare => ({ key: Buffer.from(key), target: 'Mod', result: 'Equal', mod_revision: rev })),
    ];
    const puts = (opts.puts ?? []).map((p) => ({ key: p.key, value: p.value, data: encodeValue(p.key, p.value), keeper: p.lease && this.#keeper(p.lease) }));
    const deletes = opts.deletes ?? [];
    const prefixes = opts.deletePrefixes ?? [];
    for (const prefix of prefixes) assertDeletablePrefix(prefix);
    const removals: IRequestOp[] = [
      ...deletes.map((key): IRequestOp => ({ request_delete_range: { key: Buffer.from(key) } })),
      ...prefixes.map((prefix): IRequestOp => {
        const range = Range.prefix(prefix);
        return { request_delete_range: { key: range.start, range_end: range.end } };
      }),
    ];
    const doomed = (key: string) => deletes.includes(key) || prefixes.some((prefix) => key.startsWith(prefix));
    return await this.#forgetWhile(doomed, () => this.#txn(compare, puts, removals), (succeeded) => succeeded);
  }

  /** A transaction refused because a lease was gone wrote nothing: it is retried under the lease's successor. */
  async #txn(compare: ICompare[], puts: { key: string; value: object; data: Buffer; keeper: LeaseKeeper | undefined }[], removals: IRequestOp[]): Promise<boolean> {
    const keepers = new Set(puts.flatMap((p) => (p.keeper ? [p.keeper] : [])));
    for (;;) {
      // A lease being replaced cannot take writes; wait for its successor, as LeaseSession.put does.
      await Promise.all([...keepers].map((k) => k.whenUsable()));
      const success: IRequestOp[] = [
        ...puts.map((p): IRequestOp => ({ request_put: { key: Buffer.from(p.key), value: p.data, lease: p.keeper?.id ?? '0' } })),
        ...removals,
      ];
      try {
        const res = await this.#call('writing a transaction', () => this.#client.kv.txn({ compare, success }));
        if (res.succeeded) for (const p of puts) p.keeper?.remember(p.key, p.value);
        return res.succeeded;
      } catch (err) {
        if (!(err instanceof EtcdLeaseInvalidError) || keepers.size === 0) throw err;
        for (const k of keepers) k.noticeLost(err);
      }
    }
  }

  async delete(key: string): Promise<void> {
    await this.#forgetWhile((k) => k === key, async () => {
      await this.#call(`deleting ${key}`, () => this.#client.kv.deleteRange({ key: Buffer.from(key) }));
    });
  }

  async deletePrefix(prefix: string): Promise<number> {
    assertDeletablePrefix(prefix);
    const range = Range.prefix(prefix);
    return await this.#forgetWhile((key) => key.startsWith(prefix), async () => {
      const res = await this.#call(`deleting ${prefix}`, () => this.#client.kv.deleteRange({ key: range.start, range_end: range.end }));
      return Number(res.deleted);
    });
  }

  async ping(): Promise<number> {
    const key = `${rootPrefix}/preflight/${randomUUID()}`;
    const started = performance.now();
    await this.#put(key, { version: recordVersion, pingedAt: new Date().toISOString() }, '0');
    await this.#call(`deleting ${key}`, () => this.#client.kv.deleteRange({ key: Buffer.from(key) }));
    return performance.now() - started;
  }

  /** The answering member's version, the store revision, and the leader's member id; plus our own clock (etcd has none to offer) for clock checks. */
  async status(): Promise<{ version: string; revision: number; leader: string; localTime: number }> {
    const res = await this.#call('asking for status', () => this.#client.maintenance.status());
    return { version: res.version, revision: Number(res.header.revision), leader: res.leader, localTime: Date.now() };
  }

  async leaseSession(opts: LeaseSessionOptions): Promise<LeaseSession> {
    this.#assertOpen();
    const keeper: LeaseKeeper = await LeaseKeeper.grant({ ...this.#leasePort(), onEnded: () => this.#sessions.delete(keeper) }, opts);
    this.#sessions.add(keeper);
    this.#issued.add(keeper);
    return keeper;
  }

  watchPrefix(prefix: string, handlers: PrefixWatchHandlers): PrefixWatch {
    this.#assertOpen();
    const port: WatchPort = {
      range: (p) => this.#range(p),
      decode: (kv) => decodeRecord(kv),
      openStream: () => this.#client.watchClient.watch(),
      logger: this.#log,
    };
    const watcher: PrefixWatcher = new PrefixWatcher(prefix, handlers, { ...port, onClosed: () => this.#watches.delete(watcher) });
    this.#watches.add(watcher);
    return watcher;
  }

  /**
   * Stops every watch and lease keepalive and closes the connections. Leases are not revoked
   * (their records vanish after the TTL); revoke a session first for an orderly leave.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#watches].map((w) => w.close()));
    await Promise.all([...this.#sessions].map((s) => s.release()));
    this.#watches.clear();
    this.#sessions.clear();
    this.#client.close();
  }

  async #range(prefix: string): Promise<{ kvs: IKeyValue[]; revision: number }> {
    const range = Range.prefix(prefix);
    const res = await this.#call(`listing ${prefix}`, () => this.#client.kv.range({ key: range.start, range_end: range.end }));
    return { kvs: res.kvs, revision: Number(res.header.revision) };
  }

  async #put(key: string, value: object, lease: string): Promise<number> {
    const data = encodeValue(key, value);
    const res = await this.#call(`writing ${key}`, () => this.#client.kv.put({ key: Buffer.from(key), value: data, lease }));
    return Number(res.header.revision);
  }

  /**
   * Sessions forget the records a delete is about to remove *before* it runs, so that a re-grant
   * cannot write them back afterwards; if the delete then fails (or a transaction's compare
   * does), they remember them again.
   */
  async #forgetWhile<T>(matches: (key: string) => boolean, remove: () => Promise<T>, removed: (result: T) => boolean = () => true): Promise<T> {
    const forgotten = await Promise.all([...this.#sessions].map(async (s) => [s, await s.forget(matches)] as const));
    const restore = () => {
      for (const [session, records] of forgotten) for (const [key, value] of records) session.remember(key, value);
    };
    try {
      const result = await remove();
      if (!removed(result)) restore();
      return result;
    } catch (err) {
      restore();
      throw err;
    }
  }

  #leasePort(): LeasePort {
    return {
      grant: async (ttl) => (await this.#call('granting a lease', () => this.#client.leaseClient.leaseGrant({ TTL: ttl }))).ID,
      revoke: async (id) => {
        try {
          await this.#call(`revoking lease ${id}`, () => this.#client.leaseClient.leaseRevoke({ ID: id }));
        } catch (err) {
          if (!(err instanceof EtcdLeaseInvalidError)) throw err;
        }
      },
      openKeepAlive: () => this.#client.leaseClient.leaseKeepAlive(),
      validate: (key, value) => void encodeValue(key, value),
      put: (key, value, leaseId) => this.#put(key, value, leaseId),
      delete: async (key) => {
        await this.#call(`deleting ${key}`, () => this.#client.kv.deleteRange({ key: Buffer.from(key) }));
      },
      logger: this.#log,
    };
  }

  #keeper(session: LeaseSession): LeaseKeeper {
    if (!(session instanceof LeaseKeeper) || !this.#issued.has(session)) {
      throw new TypeError('a lease must be a LeaseSession from this FederationStore');
    }
    return session;
  }

  /** Connection trouble becomes ISTHMUS_ERR_ETCD_UNREACHABLE; etcd's own answers pass through. */
  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    this.#assertOpen();
    try {
      return await fn();
    } catch (err) {
      if (err instanceof EtcdPermissionDeniedError || (err instanceof Error && /PERMISSION_DENIED|permission denied/.test(err.message))) {
        const user = this.tls?.files.cert ? `the etcd user named by the common name of ${this.tls.files.cert}` : 'this client\'s etcd user';
        throw new IsthmusError(
          'ISTHMUS_ERR_ETCD_PERMISSION_DENIED',
          `etcd refused ${what}: ${user} may not do that. Grant its role that key (docs/security.md, "etcd", lists what each writer needs), or use the client certificate of a user that may.`,
          { cause: err, details: { endpoints: this.#endpoints } },
        );
      }
      if (err instanceof Error && !(err instanceof IsthmusError) && isRecoverableError(err)) {
        throw new IsthmusError(
          'ISTHMUS_ERR_ETCD_UNREACHABLE',
          `etcd at ${this.#endpoints.join(', ')} did not answer while ${what} (${reasonOf(err)}). Check that etcd is running and reachable.`,
          { cause: err, details: { endpoints: this.#endpoints } },
        );
      }
      throw err;
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('this FederationStore is closed');
  }
}
