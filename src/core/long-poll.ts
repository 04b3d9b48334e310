/**
 * The one long-poll client for the federation API's snapshots (catalog, local endpoints, traffic
 * policies, gateway routes), used by sidecars and gateways alike.
 *
 * A federation service numbers its snapshots afresh when it restarts, so a version is only
 * meaningful to the federation that gave it: after an error (the federation may have restarted)
 * or a refused answer, the client forgets the version it holds and asks without one, and it
 * passes on every answer whose content differs from the last one it passed on, whatever its
 * version says. Otherwise a restarted federation that has reached the very number the client
 * holds would keep it waiting on a stale table until the next change.
 *
 * Every answer is checked against its schema before the caller sees it; one that does not match
 * is logged and dropped, and the caller keeps its last good snapshot.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { Backoff } from './backoff.js';
import { describeError } from './errors.js';
import type { Logger } from './log.js';
import { Value, type Static, type TSchema } from './typebox.js';
import { request } from './undici.js';

export interface LongPollFeed<S extends TSchema> {
  /** For logs, e.g. "catalog". */
  name: string;
  /** e.g. /v1/catalog */
  path: string;
  schema: S;
  /**
   * The snapshot's version. Undefined for a federation that does not number this snapshot (one
   * from before it was long-polled): it answers at once whatever is asked, so the client asks
   * again only after `unversionedRetryMs`.
   */
  versionOf(value: Static<S>): number | undefined;
  /** A 404 means this federation does not serve the path (an older version), not a fault: ask again later. */
  optional?: boolean;
  /**
   * How long to wait, after passing on a snapshot of `bytes` bytes, before asking for the next.
   * Changes made meanwhile are not lost: the next answer is the federation's latest snapshot,
   * which holds them all. A large snapshot costs the receiver its whole size to parse, check
   * and index at every change, so a burst of changes is taken as one every so often.
   */
  paceMs?(bytes: number): number;
  /**
   * For a snapshot the federation can also send as changes to the one the reader holds (the
   * catalog): answers then carry their position (`epoch`, `generation`), the next request names
   * it (`since=<epoch>.<generation>`), and an answer with `since` is changes, checked against
   * `schema` and applied to the last snapshot passed on. The position fields are not part of the
   * snapshot passed on.
   */
  changes?: SnapshotChanges<S>;
}

export interface SnapshotChanges<S extends TSchema> {
  schema: TSchema;
  /** The snapshot the changes make of `last`, or why they do not apply to it. */
  apply(last: Static<S>, changes: never): { snapshot: Static<S> } | { problem: string };
}

export interface LongPollOptions<S extends TSchema> {
  /** The federation API, https://host:port */
  federationUrl: string;
  /** Asked before each request, so a caller can swap its agent (a renewed certificate). */
  dispatcher(): Dispatcher;
  signal: AbortSignal;
  logger: Logger;
  waitSeconds: number;
  notFoundRetryMs?: number;
  rejectedRetryMs?: number;
  /** How long to wait before asking again a federation that answered without a version (default 30 s). */
  unversionedRetryMs?: number;
  /** The longest wait between attempts while the federation does not answer (from 1 s, doubling). */
  maxRetryMs?: number;
  /** Called with each snapshot whose content differs from the previous one passed on. */
  /** `answer`: the size of the answer it came in, and whether that was changes to the last one. */
  onSnapshot(value: Static<S>, version: number | undefined, answer: { bytes: number; changes: boolean }): void;
}

/** Why an answer is not a snapshot of the schema (the first few problems with their paths), or undefined. */
export function snapshotProblem(schema: TSchema, value: unknown): string | undefined {
  // TypeBox reports a missing field twice (required, then its type): the first per path says it.
  const problems = new Map<string, string>();
  for (const error of Value.Errors(schema, value)) {
    const path = error.path === '' ? '/' : error.path;
    if (!problems.has(path)) problems.set(path, `${path}: ${error.message.toLowerCase()}`);
    if (problems.size === 3) break;
  }
  return problems.size === 0 ? undefined : [...problems.values()].join('; ');
}

/** One answer of the federation, read and checked; its text is not kept. */
type Answer<S extends TSchema> =
  | { kind: 'not-served' }
  | { kind: 'rejected'; problem: string }
  | { kind: 'snapshot'; snapshot: Static<S>; digest: string; bytes: number; position: string | undefined }
  | { kind: 'changes'; changes: unknown; from: string; bytes: number; position: string };

/** `<epoch>.<generation>` of an answer that carries both. */
function positionOf(body: Record<string, unknown>): string | undefined {
  return typeof body.epoch === 'string' && Number.isSafeInteger(body.generation) ? `${body.epoch}.${String(body.generation)}` : undefined;
}

/**
 * Reads one answer to its end and checks it. Its own frame, not the polling loop's: an async
 * function keeps what its awaits returned in its suspended frame, and the loop waits on the next
 * long poll for minutes at a time, which would hold the last answer's text (450 KB with 1000
 * services) beside the snapshot parsed from it.
 */
async function readAnswer<S extends TSchema>(feed: LongPollFeed<S>, res: Dispatcher.ResponseData): Promise<Answer<S>> {
  if (res.statusCode === 404 && feed.optional === true) {
    await res.body.dump();
    return { kind: 'not-served' };
  }
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`federation answered ${res.statusCode} to GET ${feed.path}: ${text.slice(0, 200)}`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    return { kind: 'rejected', problem: `not JSON (${describeError(err)})` };
  }
  const changes = feed.changes !== undefined && typeof body === 'object' && body !== null && 'since' in body;
  const problem = snapshotProblem(changes ? feed.changes!.schema : feed.schema, body);
  if (problem !== undefined) return { kind: 'rejected', problem: changes ? `changes: ${problem}` : problem };
  if (changes) {
    // What changed since the snapshot held, not a snapshot.
    const { epoch, since, generation } = body as { epoch: string; since: number; generation: number };
    return { kind: 'changes', changes: body, from: `${epoch}.${since}`, bytes: text.length, position: `${epoch}.${generation}` };
  }
  let position: string | undefined;
  if (feed.changes !== undefined) {
    position = positionOf(body as Record<string, unknown>);
    delete (body as Record<string, unknown>).epoch;
    delete (body as Record<string, unknown>).generation;
  }
  return { kind: 'snapshot', snapshot: body as Static<S>, digest: createHash('sha256').update(text).digest('base64'), bytes: text.length, position };
}

/** Polls until `signal` aborts; never throws. */
export async function longPoll<S extends TSchema>(feed: LongPollFeed<S>, opts: LongPollOptions<S>): Promise<void> {
  const { signal } = opts;
  const log = opts.logger;
  let held: number | undefined;
  let delivered: string | undefined;
  /** With `feed.changes`: the last snapshot passed on, and the position of the answer it came from. */
  let last: { snapshot: Static<S>; position: string } | undefined;
  let outage = false;
  const backoff = new Backoff({ initialMs: 1000, maxMs: opts.maxRetryMs ?? 5_000 });
  while (!signal.aborted) {
    try {
      const since = held !== undefined && last !== undefined ? `&since=${encodeURIComponent(last.position)}` : '';
      const query = held === undefined ? '' : `?version=${held}&wait=${opts.waitSeconds}${since}`;
      const answer = await readAnswer(feed, await request(`${opts.federationUrl}${feed.path}${query}`, { dispatcher: opts.dispatcher(), signal }));
      if (answer.kind === 'not-served') {
        if (!outage) log.info(`the federation service does not serve ${feed.path} yet; retrying later`);
        outage = true;
        held = undefined;
        last = undefined;
        await sleep(opts.notFoundRetryMs ?? 30_000, undefined, { signal });
        continue;
      }
      if (outage) log.info(`${feed.name} reachable again`);
      outage = false;
      backoff.reset();
      if (answer.kind === 'rejected') {
        log.warn({ reason: answer.problem }, `rejected a ${feed.name} snapshot from the federation service; keeping the last good one`);
        held = undefined;
        last = undefined;
        await sleep(opts.rejectedRetryMs ?? 5000, undefined, { signal });
        continue;
      }
      let changed: boolean;
      if (answer.kind === 'changes') {
        // Asked only while `last` is held, so it is here; changes from another point are refused.
        const applied = last !== undefined && last.position === answer.from
          ? feed.changes!.apply(last.snapshot, answer.changes as never)
          : { problem: `they start from ${answer.from}, not from ${last?.position ?? 'nothing'} (the ${feed.name} held)` };
        if ('problem' in applied) {
          log.warn({ reason: applied.problem }, `could not apply the ${feed.name} changes from the federation service; asking for it whole`);
          held = undefined;
          last = undefined;
          continue;
        }
        held = feed.versionOf(applied.snapshot);
        changed = answer.position !== answer.from;
        last = { snapshot: applied.snapshot, position: answer.position };
        if (changed) {
          delivered = undefined;
          opts.onSnapshot(applied.snapshot, held, { bytes: answer.bytes, changes: true });
        }
      } else {
        held = feed.versionOf(answer.snapshot);
        changed = answer.digest !== delivered;
        last = answer.position === undefined ? undefined : { snapshot: answer.snapshot, position: answer.position };
        if (changed) {
          delivered = answer.digest;
          opts.onSnapshot(answer.snapshot, held, { bytes: answer.bytes, changes: false });
        }
      }
      // A federation that does not number this snapshot answered at once: ask it again later.
      const pause = held === undefined ? opts.unversionedRetryMs ?? 30_000 : changed ? feed.paceMs?.(answer.bytes) ?? 0 : 0;
      if (pause > 0) await sleep(pause, undefined, { signal }).catch(() => undefined);
    } catch (err) {
      if (signal.aborted) return;
      if (!outage) log.warn({ err: describeError(err), url: opts.federationUrl }, `${feed.name} unavailable; keeping the last good one and retrying`);
      outage = true;
      held = undefined;
      last = undefined;
      await sleep(backoff.next(), undefined, { signal }).catch(() => undefined);
      // Short enough that a restarted federation is found again within seconds: it is this
      // cluster's own service, and its restart is when stale tables are most likely.
    }
  }
}
