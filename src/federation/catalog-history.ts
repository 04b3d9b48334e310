import { randomBytes } from 'node:crypto';
import type { Catalog, CatalogService } from '../model/catalog.js';

/**
 * Where a reader of `GET /v1/catalog` stands: the federation process that answered (`epoch`,
 * random at each start) and how many catalogs that process had made by then (`generation`).
 */
export interface CatalogPosition {
  epoch: string;
  generation: number;
}

/** The changes from one catalog to a later one, as `GET /v1/catalog?since=` answers them. */
export interface CatalogChangesAnswer extends CatalogPosition {
  revision: number;
  /** The generation the changes start from: the reader's. */
  since: number;
  /** Clusters and invalid keys are few: always whole. */
  clusters: Catalog['clusters'];
  invalidKeys: string[];
  /** Services added or changed since `since`, whole. */
  upserts: CatalogService[];
  /** `<namespace>/<name>` of services gone since `since`. */
  removed: string[];
  /** How many services the catalog holds after the changes: a reader that counts otherwise asks for it whole. */
  services: number;
}

/**
 * The federation's recent catalogs, kept as which services each one changed, so that a sidecar
 * holding one of them gets only what changed since (`GET /v1/catalog?since=<epoch>.<generation>`)
 * instead of the whole catalog again.
 *
 * With 1,000 services a whole catalog is about 450 KB of JSON that every sidecar parses, checks
 * and indexes at each change (about 10 ms of CPU each, and a heap trim after it), and that the
 * federation serialises once per waiting sidecar; a long poll that timed out without a change
 * sent it whole too. One export or health change is one service of those thousand.
 */
export class CatalogHistory {
  readonly epoch = randomBytes(6).toString('base64url');
  private generation = 0;
  /** Each current service's JSON, to tell which services a new catalog changed. */
  private serviceJson = new Map<string, string>();
  /** The current catalog's services by key. */
  private services = new Map<string, CatalogService>();
  /** Answers already made for the current generation, by the generation they start from: most readers start from the one before. */
  private answers = new Map<number, CatalogChangesAnswer>();
  /** What each recent generation changed, oldest first; generation `g` is at `g - first`. */
  private changed: Set<string>[] = [];
  private first = 1;
  private current: Catalog | undefined;

  /** @param depth how many generations back a reader may be and still get changes (then whole). */
  constructor(private readonly depth = 64) {}

  /** Takes the federation's newest catalog; returns its position. */
  record(catalog: Catalog): CatalogPosition {
    if (catalog === this.current) return this.position();
    const json = new Map<string, string>();
    const services = new Map<string, CatalogService>();
    const changed = new Set<string>();
    for (const service of catalog.services) {
      const key = serviceKey(service);
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
    this.current = catalog;
    this.generation += 1;
    this.changed.push(changed);
    if (this.changed.length > this.depth) {
      this.changed.shift();
      this.first += 1;
    }
    return this.position();
  }

  position(): CatalogPosition {
    return { epoch: this.epoch, generation: this.generation };
  }

  /**
   * The changes from the generation `since` names to the current catalog, or undefined when they
   * cannot be told (another process's epoch, a generation too old or not yet made): the reader
   * then gets the catalog whole.
   */
  changesSince(since: CatalogPosition): CatalogChangesAnswer | undefined {
    const catalog = this.current;
    if (catalog === undefined || since.epoch !== this.epoch) return undefined;
    // Generation g's changes are those that made it from g - 1; a reader at `first - 1` is covered.
    if (since.generation < this.first - 1 || since.generation > this.generation) return undefined;
    const made = this.answers.get(since.generation);
    if (made) return made;
    const keys = new Set<string>();
    for (let g = since.generation + 1; g <= this.generation; g += 1) for (const key of this.changed[g - this.first]!) keys.add(key);
    const upserts: CatalogService[] = [];
    const removed: string[] = [];
    for (const key of keys) {
      const service = this.services.get(key);
      if (service) upserts.push(service);
      else removed.push(key);
    }
    const answer = {
      ...this.position(), since: since.generation, revision: catalog.revision, clusters: catalog.clusters,
      invalidKeys: catalog.invalidKeys, upserts, removed, services: catalog.services.length,
    };
    this.answers.set(since.generation, answer);
    return answer;
  }
}

export function serviceKey(service: Pick<CatalogService, 'namespace' | 'name'>): string {
  return `${service.namespace}/${service.name}`;
}

/** `<epoch>.<generation>` as a reader sends it back, or undefined when it is not one. */
export function parsePosition(text: string | undefined): CatalogPosition | undefined {
  const match = /^([A-Za-z0-9_-]{1,32})\.(\d{1,15})$/.exec(text ?? '');
  return match ? { epoch: match[1]!, generation: Number(match[2]) } : undefined;
}

export function formatPosition(position: CatalogPosition): string {
  return `${position.epoch}.${position.generation}`;
}
