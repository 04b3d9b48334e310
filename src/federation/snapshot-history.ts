import { randomBytes } from 'node:crypto';
import { serviceKey, type ServiceChanges, type ServiceList } from '../model/service-changes.js';

/**
 * Where a reader of a snapshot stands: the federation process that answered (`epoch`, random at
 * each start) and how many snapshots of that kind the process had made by then (`generation`).
 */
export interface SnapshotPosition {
  epoch: string;
  generation: number;
}

/**
 * A federation's recent snapshots of one kind (the catalog, this cluster's endpoints, the
 * gateways' routing table), each a list of services keyed by `<namespace>/<name>` beside a few
 * other fields, kept as which services each one changed: a reader that names the snapshot it
 * holds (`?since=<epoch>.<generation>`) gets only what changed since, instead of the whole
 * snapshot again (docs/federation.md, "Changes since a snapshot").
 *
 * With 1,000 services a whole catalog is about 450 KB of JSON that every sidecar parsed, checked
 * and indexed at each change (32 ms of CPU per change in the memory bench's churn), and that the
 * federation serialised once per waiting sidecar; a long poll that timed out without a change
 * sent it whole too. One export or health change is one service of those thousand.
 */
export class SnapshotHistory<T extends ServiceList> {
  readonly epoch = randomBytes(6).toString('base64url');
  private generation = 0;
  /** Each current service's JSON, to tell which services a new snapshot changed. */
  private serviceJson = new Map<string, string>();
  /** The current snapshot's services by key. */
  private services = new Map<string, T['services'][number]>();
  /** What each recent generation changed, oldest first; generation `g` is at `g - first`. */
  private changed: Set<string>[] = [];
  private first = 1;
  private current: T | undefined;
  /** Answers already made for the current generation, by the generation they start from: most readers start from the one before. */
  private answers = new Map<number, ServiceChanges<T>>();

  /** @param depth how many generations back a reader may be and still get changes (then whole). */
  constructor(private readonly depth = 64) {}

  /** Takes the newest snapshot (the same object again is no new generation); returns its position. */
  record(snapshot: T): SnapshotPosition {
    if (snapshot === this.current) return this.position();
    const json = new Map<string, string>();
    const services = new Map<string, T['services'][number]>();
    const changed = new Set<string>();
    let unique = true;
    for (const service of snapshot.services) {
      const key = serviceKey(service);
      if (services.has(key)) unique = false;
      services.set(key, service);
      const text = JSON.stringify(service);
      const before = this.serviceJson.get(key);
      // The string already held is kept when equal, so the map holds one copy of each.
      json.set(key, before === text ? before : text);
      if (before !== text) changed.add(key);
    }
    for (const key of this.serviceJson.keys()) if (!json.has(key)) changed.add(key);
    this.serviceJson = json;
    this.services = services;
    this.answers = new Map();
    this.current = snapshot;
    this.generation += 1;
    this.changed.push(changed);
    if (!unique) {
      // Two services under one key cannot be told as changes: every reader gets this one whole.
      this.changed = [];
      this.first = this.generation + 1;
    } else if (this.changed.length > this.depth) {
      this.changed.shift();
      this.first += 1;
    }
    return this.position();
  }

  position(): SnapshotPosition {
    return { epoch: this.epoch, generation: this.generation };
  }

  /**
   * The changes from the generation `since` names to the current snapshot, or undefined when
   * they cannot be told (another process's epoch, a generation too old or not yet made): the
   * reader then gets the snapshot whole.
   */
  changesSince(since: SnapshotPosition): ServiceChanges<T> | undefined {
    const snapshot = this.current;
    if (snapshot === undefined || since.epoch !== this.epoch) return undefined;
    // Generation g's changes are those that made it from g - 1; a reader at `first - 1` is covered.
    if (since.generation < this.first - 1 || since.generation > this.generation) return undefined;
    const made = this.answers.get(since.generation);
    if (made) return made;
    const keys = new Set<string>();
    for (let g = since.generation + 1; g <= this.generation; g += 1) for (const key of this.changed[g - this.first]!) keys.add(key);
    const upserts: T['services'][number][] = [];
    const removed: string[] = [];
    for (const key of keys) {
      const service = this.services.get(key);
      if (service) upserts.push(service);
      else removed.push(key);
    }
    const { services, ...rest } = snapshot;
    const answer = { ...rest, ...this.position(), since: since.generation, upserts, removed, services: services.length } as ServiceChanges<T>;
    this.answers.set(since.generation, answer);
    return answer;
  }

  /**
   * What a long-polled route answers: with `since` (the reader's position), the changes when this
   * history can tell them; otherwise the snapshot whole with its position.
   */
  answer(snapshot: T, since: string | undefined): unknown {
    const position = this.record(snapshot);
    if (since === undefined) return { ...snapshot, ...position };
    const from = parsePosition(since);
    if (from === undefined) return undefined;
    return this.changesSince(from) ?? { ...snapshot, ...position };
  }
}

/** `<epoch>.<generation>` as a reader sends it back, or undefined when it is not one. */
export function parsePosition(text: string | undefined): SnapshotPosition | undefined {
  const match = /^([A-Za-z0-9_-]{1,32})\.(\d{1,15})$/.exec(text ?? '');
  return match ? { epoch: match[1]!, generation: Number(match[2]) } : undefined;
}

export function formatPosition(position: SnapshotPosition): string {
  return `${position.epoch}.${position.generation}`;
}
