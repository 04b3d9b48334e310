import type { SpliceEnd, SplicedBytes } from '../core/splice.js';
import { isoTime } from '../core/utc-text.js';

/** One routed connection as the gateway saw it (GET /debug/connections on the admin port). */
export interface RoutedConnection {
  /** When the connection was routed, ISO 8601. */
  at: string;
  /** ip:port of the client socket: a calling sidecar, or a prober. */
  remote: string;
  sni: string | undefined;
  /** `<ns>/<name>`, or `probe`. */
  service: string;
  /** host:port of the endpoint that accepted. */
  endpoint: string;
  /** TCP accept until the whole ClientHello was read. */
  clientHelloMs: number;
  /** From the first dial until an endpoint accepted (failed dials included). */
  dialMs: number;
  /** While it is open: the bytes each side has sent so far (the ClientHello included). */
  bytes?: { fromCaller: number; fromEndpoint: number };
  /** Once it has ended: how, after how long, and the bytes each side sent (the ClientHello included). */
  ended?: { end: SpliceEnd; afterMs: number; fromCaller: number; fromEndpoint: number };
}

/** A routed connection; `ended` is set on the same object when it ends (Gateway). */
export interface ConnectionEntry {
  at: number; remoteAddress: string | undefined; remotePort: number | undefined; sni: string | undefined; service: string; endpoint: string; clientHelloMs: number; dialMs: number;
  ended?: { end: SpliceEnd; at: number; fromCaller: number; fromEndpoint: number };
  /** While it is open (cleared when it ends): reads the bytes each side has sent so far (A the caller, B the endpoint). */
  sofar?: (() => SplicedBytes) | undefined;
}

/**
 * The last `capacity` routed connections, for `isthmus trace` to find its own connection by the
 * caller's address. A fixed ring: adding costs one slot write, and nothing is formatted until
 * someone reads. Memory stays bounded however many connections pass.
 */
export class ConnectionLog {
  private readonly entries: (ConnectionEntry | undefined)[];
  private next = 0;

  constructor(readonly capacity = 256) {
    this.entries = new Array<ConnectionEntry | undefined>(capacity);
  }

  add(entry: ConnectionEntry): void {
    this.entries[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
  }

  /** Newest first; only those whose remote is `remote` (ip:port) when given. */
  recent(filter: { remote?: string | undefined; limit?: number | undefined } = {}): RoutedConnection[] {
    const wanted = filter.remote === undefined ? undefined : normalise(filter.remote);
    const out: RoutedConnection[] = [];
    for (let i = 1; i <= this.capacity && out.length < (filter.limit ?? this.capacity); i += 1) {
      const entry = this.entries[(this.next - i + this.capacity) % this.capacity];
      if (!entry) break;
      const remote = normalise(`${entry.remoteAddress ?? '?'}:${entry.remotePort ?? '?'}`);
      if (wanted !== undefined && remote !== wanted) continue;
      out.push({
        at: isoTime(entry.at), remote, sni: entry.sni, service: entry.service, endpoint: entry.endpoint,
        clientHelloMs: round3(entry.clientHelloMs), dialMs: round3(entry.dialMs),
        ...(entry.sofar ? { bytes: sofarOf(entry.sofar) } : {}),
        ...(entry.ended ? { ended: { end: entry.ended.end, afterMs: entry.ended.at - entry.at, fromCaller: entry.ended.fromCaller, fromEndpoint: entry.ended.fromEndpoint } } : {}),
      });
    }
    return out;
  }
}

function sofarOf(read: () => SplicedBytes): { fromCaller: number; fromEndpoint: number } {
  const { fromA, fromB } = read();
  return { fromCaller: fromA, fromEndpoint: fromB };
}

/** An IPv4 peer of a dual-stack listener shows as ::ffff:a.b.c.d; the caller knows it as a.b.c.d. */
function normalise(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

const round3 = (ms: number) => Math.round(ms * 1000) / 1000;
