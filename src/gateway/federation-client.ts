import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from '../core/undici.js';
import { H1Agent } from '../sidecar/h1-agent.js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { GatewayConfig } from './config.js';
import { gatewayCertificate, gatewayRoot, type GatewayCertificate } from './gateway-certificate.js';
import { longPoll, type LongPollFeed } from '../core/long-poll.js';
import { GatewayRoutesSchema, trustFeed, type GatewayRoutes, type TrustAnswer } from '../model/records.js';
import { canonicalRoots } from '../trust/root-set.js';
import { certificateInfo } from '../trust/verify.js';
import { serviceListChanges } from '../model/service-changes.js';
import { isoTime } from '../core/utc-text.js';

const longPollSeconds = 30;
/** After the first, a federation that can sends only the services that changed (model/service-changes.ts). */
const routesFeed: LongPollFeed<typeof GatewayRoutesSchema> = {
  name: 'routing table', path: '/v1/gateway/routes', schema: GatewayRoutesSchema, versionOf: (r) => r.version, changes: serviceListChanges(GatewayRoutesSchema),
};

/**
 * The gateway's line to its cluster's federation service: it reports itself (so the federation
 * publishes it under the cluster lease) and long-polls its routing table. It authenticates with
 * its gateway certificate (gateway-certificate.ts), renewed at half its life. Until it has one,
 * its long polls and reports are refused (every read of the federation API needs a mesh
 * certificate) and retried. When the federation is down the gateway keeps routing with the last table it had.
 */
export class FederationClient {
  private agent: H1Agent;
  private stopped = false;
  private registerTimer: NodeJS.Timeout | undefined;
  /** This process's name among the replicas that report under the same id (one Deployment's pods). */
  private readonly instance = randomUUID();
  /** Set by withdraw(): no report goes out after it. */
  private withdrawn = false;
  private reportInFlight: Promise<unknown> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private trustPoll: Promise<void> | undefined;
  private renewing = false;
  private failures = 0;
  /** The mesh's roots as GET /v1/trust last told them, trimmed and sorted. */
  private roots: string[] = [];
  /** The intermediate a renewal was last made for, because the federation named it. */
  private renewedFor: string | undefined;
  private certificate: GatewayCertificate | undefined;
  private readonly abort = new AbortController();
  /** Called with each certificate obtained, the first and every renewal (the gateway answers health checks with it). */
  onCertificate: ((certificate: GatewayCertificate) => void) | undefined;

  constructor(private readonly config: GatewayConfig, private readonly log: Logger) {
    this.agent = this.newAgent(undefined);
  }

  /**
   * Gets the gateway's certificate now, then again at half its life; the old agent finishes its
   * requests. A failure is retried within seconds (backing off to a minute); only a first
   * self-issued one (the CA directory is unusable) is thrown.
   */
  async startCertificates(): Promise<void> {
    await this.renew(true);
    this.trustPoll = longPoll(trustFeed, {
      federationUrl: this.config.federationUrl, dispatcher: () => this.agent, signal: this.abort.signal, logger: this.log,
      waitSeconds: longPollSeconds, onSnapshot: (answer) => void this.takeTrust(answer),
    });
  }

  private async renew(first: boolean): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    clearTimeout(this.renewTimer);
    let nextMs: number;
    try {
      this.certificate = await gatewayCertificate(this.config, this.certificate);
      this.replaceAgent();
      this.log.info({ notAfter: isoTime(this.certificate.notAfter) }, 'gateway certificate obtained');
      this.onCertificate?.(this.certificate);
      this.failures = 0;
      nextMs = Math.max(1000, (this.certificate.notAfter.getTime() - Date.now()) / 2);
    } catch (err) {
      // Made from the CA directory, a failure is a missing or unreadable file: say so at start.
      if (first && this.config.tokenFile === undefined) throw err;
      this.failures += 1;
      nextMs = Math.min(60_000, 500 * 2 ** this.failures);
      if (!this.stopped) this.log.warn({ err: describeError(err), retryInMs: nextMs }, 'could not get the gateway certificate; retrying');
    } finally {
      this.renewing = false;
    }
    if (!this.stopped) {
      this.renewTimer = setTimeout(() => void this.renew(false), nextMs);
      this.renewTimer.unref();
    }
  }

  /** A new agent for new requests (the old one finishes its own): after a new certificate or new roots. */
  private replaceAgent(): void {
    const old = this.agent;
    this.agent = this.newAgent(this.certificate);
    void old.close().catch(() => undefined);
  }

  /**
   * The mesh's roots and the intermediate the federation signs with now, long-polled as sidecars
   * do (GET /v1/trust). The roots let the gateway keep trusting its federation after a root rotation
   * re-issues the federation's certificate from the new root; a new intermediate has the gateway
   * renew at once instead of at half its certificate's life (docs/trust.md, "Root rotation").
   */
  private async takeTrust(answer: TrustAnswer): Promise<void> {
    if (this.stopped) return;
    const roots = canonicalRoots(answer.roots);
    if (roots.join('\n') !== this.roots.join('\n')) {
      this.roots = roots;
      this.replaceAgent();
    }
    const ours = this.certificate?.chainPem[0];
    // Once per new intermediate: a CA directory that does not hold it yet (a Secret still being
    // updated) gives the old one again, and the next renewal at half life tries again.
    if (answer.issuer !== undefined && ours !== undefined && answer.issuer !== this.renewedFor && certificateInfo(ours).fingerprint256 !== answer.issuer) {
      this.renewedFor = answer.issuer;
      this.log.info({ issuer: answer.issuer }, 'the federation signs with a new intermediate; renewing the gateway certificate now');
      await this.renew(false);
    }
  }

  private newAgent(certificate: GatewayCertificate | undefined): H1Agent {
    return new H1Agent({
      connect: {
        // The root of the CA directory, and every root of the mesh the federation has told of.
        ca: [...new Set([(certificate?.rootPem ?? gatewayRoot(this.config)).trim(), ...this.roots])],
        ...(certificate ? { cert: [certificate.certPem, ...certificate.chainPem].map((p) => p.trim()).join('\n'), key: certificate.keyPem } : {}),
      },
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
        body: JSON.stringify({ id: this.config.id, address: advertise.address, zone: advertise.zone, instance: this.instance, ...(admin ? { admin } : {}) }),
      });
      const body = (await res.body.json()) as { ttlMs?: number; error?: { message: string } };
      if (res.statusCode !== 200) throw new Error(body.error?.message ?? `federation answered ${res.statusCode}`);
      return body.ttlMs ?? 15_000;
    };
    const loop = async (): Promise<void> => {
      if (this.withdrawn) return;
      let next = 1000;
      try {
        const report = once();
        this.reportInFlight = report;
        next = Math.max(1000, (await report) / 3);
      } catch (err) {
        if (!this.stopped && !this.withdrawn) this.log.warn({ err: describeError(err) }, 'could not report to the federation service; retrying');
      } finally {
        this.reportInFlight = undefined;
      }
      if (!this.stopped && !this.withdrawn) this.registerTimer = setTimeout(() => void loop(), next);
    };
    await loop();
  }

  /**
   * The gateway drains: it stops reporting and asks the federation to withdraw its record now
   * rather than a TTL later, so that other clusters' sidecars stop sending to it and close what
   * they hold. Waits `timeoutMs` at most (for a report still in flight too, which would
   * otherwise register it again); a federation that cannot be reached is logged, and the record
   * then goes when its TTL passes. Resolves with the federation's answer, or undefined.
   */
  async withdraw(timeoutMs = 2000): Promise<{ withdrawn: boolean; replicasLeft: number } | undefined> {
    this.withdrawn = true;
    if (this.registerTimer) clearTimeout(this.registerTimer);
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeoutMs)]);
    if (this.reportInFlight) await Promise.race([this.reportInFlight.catch(() => undefined), sleep(timeoutMs, undefined, { signal }).catch(() => undefined)]);
    try {
      const res = await request(`${this.config.federationUrl}/v1/gateways/${this.config.id}?instance=${this.instance}`, { method: 'DELETE', dispatcher: this.agent, signal });
      const body = (await res.body.json()) as { withdrawn?: boolean; replicasLeft?: number; error?: { message: string } };
      if (res.statusCode !== 200) throw new Error(body.error?.message ?? `federation answered ${res.statusCode}`);
      return { withdrawn: body.withdrawn === true, replicasLeft: body.replicasLeft ?? 0 };
    } catch (err) {
      this.log.warn({ err: describeError(err) }, 'could not withdraw the gateway from the federation service; its record goes when its TTL passes');
      return undefined;
    }
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
    clearTimeout(this.renewTimer);
    this.abort.abort();
    await this.trustPoll;
    await this.agent.destroy();
  }
}
