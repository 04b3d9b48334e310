import { Agent, request } from '../core/undici.js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { issueCertificate } from '../trust/ca.js';
import { readClusterCa } from '../trust/ca-files.js';
import { clusterRoleId } from '../trust/spiffe.js';
import type { GatewayConfig } from './config.js';
import { longPoll, type LongPollFeed } from '../core/long-poll.js';
import { GatewayRoutesSchema, type GatewayRoutes } from '../model/records.js';

const longPollSeconds = 30;
const certificateTtlSeconds = 24 * 3600;
const routesFeed: LongPollFeed<typeof GatewayRoutesSchema> = { name: 'routing table', path: '/v1/gateway/routes', schema: GatewayRoutesSchema, versionOf: (r) => r.version };

/**
 * The gateway's line to its cluster's federation service: it reports itself (so the federation
 * publishes it under the cluster lease) and long-polls its routing table. It authenticates with
 * a gateway certificate it makes from the cluster's CA directory. When the federation is down
 * the gateway keeps routing with the last table it had.
 */
export class FederationClient {
  private agent: Agent;
  private stopped = false;
  private registerTimer: NodeJS.Timeout | undefined;
  private readonly renewTimer: NodeJS.Timeout;
  private readonly abort = new AbortController();

  constructor(private readonly config: GatewayConfig, private readonly log: Logger) {
    this.agent = this.newAgent();
    // The gateway's own certificate is re-made at half its life; the old agent finishes its requests.
    this.renewTimer = setInterval(() => {
      const old = this.agent;
      this.agent = this.newAgent();
      void old.close().catch(() => undefined);
      this.log.info({}, 'gateway certificate renewed');
    }, (certificateTtlSeconds * 1000) / 2);
    this.renewTimer.unref();
  }

  private newAgent(): Agent {
    const ca = readClusterCa(this.config.caDir);
    const identity = issueCertificate({ identity: clusterRoleId(this.config.trustDomain, this.config.cluster, 'gateway'), issuer: ca.ca, ttlSeconds: certificateTtlSeconds });
    return new Agent({
      connect: { ca: ca.rootCert, cert: `${identity.certPem.trim()}\n${ca.ca.certPem.trim()}\n`, key: identity.keyPem },
      headersTimeout: (longPollSeconds + 10) * 1000,
      bodyTimeout: (longPollSeconds + 10) * 1000,
    });
  }

  /**
   * Reports the gateway now and then every third of the TTL the federation answers with. The
   * admin address (for `isthmus trace`) defaults to the configured one; a port 0 there is not
   * dialable by anyone else, so it is left out unless the bound address is passed.
   */
  async startRegistering(advertise: { address: string; zone: string; admin?: string }): Promise<void> {
    const { admin: configured } = this.config;
    const admin = advertise.admin ?? (configured.port === 0 ? undefined : `${configured.host}:${configured.port}`);
    const once = async (): Promise<number> => {
      const res = await request(`${this.config.federationUrl}/v1/gateways`, {
        method: 'POST', dispatcher: this.agent, signal: this.abort.signal,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: this.config.id, address: advertise.address, zone: advertise.zone, ...(admin ? { admin } : {}) }),
      });
      const body = (await res.body.json()) as { ttlMs?: number; error?: { message: string } };
      if (res.statusCode !== 200) throw new Error(body.error?.message ?? `federation answered ${res.statusCode}`);
      return body.ttlMs ?? 15_000;
    };
    const loop = async (): Promise<void> => {
      let next = 1000;
      try {
        next = Math.max(1000, (await once()) / 3);
      } catch (err) {
        if (!this.stopped) this.log.warn({ err: describeError(err) }, 'could not report to the federation service; retrying');
      }
      if (!this.stopped) this.registerTimer = setTimeout(() => void loop(), next);
    };
    await loop();
  }

  /**
   * Calls `onRoutes` with every new routing table until stopped; never throws. The same client as
   * the sidecars' (core/long-poll.ts): a restarted federation's tables are taken even when their
   * version repeats one held before.
   */
  async watchRoutes(onRoutes: (routes: GatewayRoutes) => void): Promise<void> {
    await longPoll(routesFeed, {
      federationUrl: this.config.federationUrl, dispatcher: () => this.agent, signal: this.abort.signal, logger: this.log,
      waitSeconds: longPollSeconds, onSnapshot: onRoutes,
    });
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.registerTimer) clearTimeout(this.registerTimer);
    clearInterval(this.renewTimer);
    this.abort.abort();
    await this.agent.destroy();
  }
}
