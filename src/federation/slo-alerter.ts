import { keys, recordVersion } from '../core/keys.js';
import type { Logger } from '../core/log.js';
import { backoffDelay } from '../core/backoff.js';
import type { SloView } from '../dashboard/overview.js';
import { isRecord, SloStatusRecordSchema, type SloStatusRecord } from '../model/records.js';
import { describeObjective } from '../model/slo-spec.js';
import type { FederationStore } from './store.js';
import type { TrafficLedger } from './traffic-ledger.js';

/** What a webhook receives: one JSON object per change of verdict. */
export interface SloWebhookPayload {
  kind: 'isthmus.slo';
  state: 'violated' | 'resolved';
  slo: string;
  service: string;
  summary: string;
  objective: SloView['objective'];
  observed: SloView['observed'];
  burnRate: SloView['burnRate'];
  /** The federation that noticed and sent this. */
  cluster: string;
  dashboard?: string;
  /** Set when a rollout gated by this objective was rolled back for it: what the rollout did. */
  rollout?: string;
  at: string;
}

export interface SloAlerterOptions {
  cluster: string;
  store: Pick<FederationStore, 'get' | 'transact'>;
  /** The dashboard's current verdicts (src/dashboard/overview.ts), from the same counters every federation reads. */
  views: () => SloView[];
  webhookOf: (namespace: string, name: string) => string | undefined;
  ledger: Pick<TrafficLedger, 'addEvent'>;
  logger: Logger;
  dashboard?: () => string | undefined;
  intervalMs?: number;
  /** Delivery attempts per webhook (about 1 s, then 2 s, ... between them, with jitter). */
  attempts?: number;
}

/**
 * Sends an objective's webhook when its verdict changes (missed, then holding again). Every
 * federation evaluates every objective over the same etcd counters; the one whose transaction
 * moves `/slostatus/<ns>/<name>` from the old state to the new one sends the webhook, so a
 * violation pages once however many clusters watch it. A verdict of "no data" changes nothing.
 */
export class SloAlerter {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly deliveries = new Set<Promise<void>>();

  constructor(private readonly opts: SloAlerterOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.opts.intervalMs ?? 5000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await Promise.allSettled([...this.deliveries]);
  }

  /** One round: every objective whose verdict differs from the recorded one. One round at a time. */
  check(): Promise<void> {
    this.running ??= this.round().finally(() => { this.running = undefined; });
    return this.running;
  }

  private async round(): Promise<void> {
    for (const view of this.opts.views()) {
      if (view.state === 'no-data') continue;
      const recorded = view.alerted?.state ?? 'ok';
      if (recorded === view.state) continue;
      try {
        await this.transition(view);
      } catch (err) {
        this.opts.logger.warn({ slo: `${view.namespace}/${view.name}`, err: (err as Error).message }, 'could not record an SLO verdict; trying again next round');
      }
    }
  }

  /**
   * Records a verdict now, as a round would, and pages for it unless some federation already
   * has: a rollout rolled back by this objective pages through here, so the webhook hears of
   * the violation once, with what the rollout did.
   */
  async record(view: SloView, rollout?: string): Promise<void> {
    await this.transition(view, rollout);
  }

  private async transition(view: SloView, rollout?: string): Promise<void> {
    const key = keys.sloStatus(view.namespace, view.name);
    const current = await this.opts.store.get<SloStatusRecord>(key);
    const currentState = current && isRecord(SloStatusRecordSchema, current.value) ? current.value.state : 'ok';
    if (currentState === view.state) return; // another federation got there first
    const at = new Date().toISOString();
    const value: SloStatusRecord = { version: recordVersion, state: view.state as 'ok' | 'violated', since: at, by: this.opts.cluster };
    const won = await this.opts.store.transact({
      ...(current ? { ifModRevision: { [key]: current.modRevision } } : { ifAbsent: [key] }),
      puts: [{ key, value }],
    });
    if (!won) return;
    const name = `${view.namespace}/${view.name}`;
    const violated = view.state === 'violated';
    const summary = `${name}: ${violated ? 'objective missed' : 'objective holds again'} (${describeObjective({ ...view.objective, successPercent: view.objective.successPercent, latency: view.objective.latency })}); ${observedText(view)}`;
    this.opts.ledger.addEvent({ at, kind: violated ? 'slo-violated' : 'slo-resolved', service: `${view.namespace}/${view.service}`, summary });
    this.opts.logger[violated ? 'warn' : 'info']({ slo: name, burnRate: view.burnRate.window }, summary);
    const url = this.opts.webhookOf(view.namespace, view.name);
    if (!url) return;
    const dashboard = this.opts.dashboard?.();
    const payload: SloWebhookPayload = {
      kind: 'isthmus.slo', state: violated ? 'violated' : 'resolved', slo: name, service: `${view.namespace}/${view.service}`,
      summary, objective: view.objective, observed: view.observed, burnRate: view.burnRate, cluster: this.opts.cluster,
      ...(dashboard ? { dashboard } : {}), ...(rollout ? { rollout } : {}), at,
    };
    const delivery = this.deliver(url, payload).finally(() => this.deliveries.delete(delivery));
    this.deliveries.add(delivery);
  }

  private async deliver(url: string, payload: SloWebhookPayload): Promise<void> {
    const attempts = this.opts.attempts ?? 3;
    for (let attempt = 1; attempt <= attempts; attempt += 1) {
      try {
        const res = await fetch(url, {
          method: 'POST', headers: { 'content-type': 'application/json', 'user-agent': 'isthmus-slo-webhook' },
          body: JSON.stringify(payload), signal: AbortSignal.timeout(5000),
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          this.opts.logger.info({ slo: payload.slo, state: payload.state, url: redact(url) }, 'SLO webhook delivered');
          return;
        }
        throw new Error(`answered ${res.status}`);
      } catch (err) {
        const last = attempt === attempts;
        this.opts.logger[last ? 'error' : 'warn']({ slo: payload.slo, url: redact(url), attempt, err: (err as Error).message },
          last ? 'SLO webhook failed; giving up (the verdict is recorded, the dashboard shows it)' : 'SLO webhook failed; trying again');
        if (!last) await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt, { initialMs: 1000, maxMs: 8000 })));
      }
    }
  }
}

function observedText(view: SloView): string {
  const o = view.observed;
  const parts = [
    ...(view.objective.latency && o.latencyMs !== null ? [`p${view.objective.latency.percentile} ${o.latencyMs} ms`] : []),
    ...(o.successPercent !== null ? [`${o.successPercent}% success`] : []),
    `${o.requests} requests`,
    ...(view.burnRate.window !== null ? [`burn rate ${view.burnRate.window}`] : []),
  ];
  return parts.join(', ');
}

/** Webhook URLs often carry a token in their path or query: logs name the host only. */
function redact(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}
