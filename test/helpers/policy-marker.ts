import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isthmusOk } from './cli.js';
import { etcdEnv, type EtcdOf } from './etcd.js';
import { viaProxy } from './proxy.js';

/**
 * A write through etcd whose arrival at a client sidecar one request shows: the FaultInjection
 * `marker` aborts (299) requests to `service` carrying `x-policy-sync: <value>`. Always the same
 * document, replaced: of two FaultInjections for one service the older one wins
 * (docs/traffic-policy.md), so a second marker would never show.
 */
export class PolicyMarker {
  /** The last answer markerHonoured saw, for a failure message. */
  lastAnswer = '';

  constructor(private readonly opts: { etcd: EtcdOf; dir: string; proxy: () => string; service: string; namespace: string }) {}

  /** `isthmus policy apply` of the marker for `value`; rejects when the command fails. */
  async apply(value: string): Promise<void> {
    const { service, namespace } = this.opts;
    const file = join(this.opts.dir, `marker-${value}.yaml`);
    writeFileSync(file, `apiVersion: isthmus.dev/v1alpha1
kind: FaultInjection
metadata: { name: marker, namespace: ${namespace} }
spec: { service: ${service}, abort: { status: 299, percent: 100 }, headers: [{ name: x-policy-sync, value: "${value}" }] }
`);
    await isthmusOk(['policy', 'apply', '-f', file], etcdEnv(this.opts.etcd));
  }

  /** Whether the client sidecar behind `proxy` applies the marker for `value` now. */
  async honoured(value: string): Promise<boolean> {
    const res = await viaProxy(this.opts.proxy(), `http://${this.opts.service}.${this.opts.namespace}.mesh/`, 5000, { 'x-policy-sync': value });
    this.lastAnswer = `${res.status} ${res.text.slice(0, 200)}`;
    return res.status === 299;
  }
}
