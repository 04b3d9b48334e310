import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { buildConnector, request, type Connector } from '../core/undici.js';
import { H1Agent } from './h1-agent.js';
import { describeError, errorCodes, IsthmusError, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { isoTime } from '../core/utc-text.js';
import { ensureDirectory, writeTextAtomic } from '../core/user-paths.js';
import { Backoff } from '../core/backoff.js';
import { longPoll } from '../core/long-poll.js';
import { trustFeed, type TrustAnswer } from '../model/records.js';
import { createCsr } from '../trust/csr-request.js';
import { sameRoots } from '../trust/root-set.js';
import { certificateInfo, verifyChain, verifyKeyMatchesCert } from '../trust/verify.js';

export interface WorkloadCredentials {
  identity: string;
  certPem: string;
  /** Issuer chain, intermediate first, presented after the leaf. */
  chainPem: string[];
  keyPem: string;
  /** Every root the mesh trusts, to verify peers with. */
  trustBundle: string[];
  notAfter: Date;
}

export interface WorkloadIdentityOptions {
  /** https://host:port of this cluster's federation API. */
  federationUrl: string;
  /** The root that vouches for the federation API's serving certificate. */
  rootCertPem: string;
  /** From `isthmus register`; needed only when no usable certificate is saved in stateDir. */
  bootstrapToken?: string;
  stateDir: string;
  logger: Logger;
  /** Fraction of a certificate's life after which it is renewed. */
  renewAt?: number;
  /** How long a long poll of GET /v1/trust waits for a change before it is asked again (default 30 s). */
  trustWaitSeconds?: number;
  /**
   * How long a certificate request may wait for the federation's answer (default 15 s; Node's
   * own default would be 300 s, a sidecar that starts and says nothing for five minutes).
   */
  certificateRequestTimeoutMs?: number;
  now?: () => number;
}

/** A first certificate whose request got no answer in time is asked for this many times in all. */
export const firstCertificateAttempts = 3;
const defaultCertificateRequestTimeoutMs = 15_000;

/** `lifeStart` is when we received the certificate: the CA backdates notBefore for clock skew, which is not life we can use. */
interface Held extends WorkloadCredentials { lifeStart: number }

const fileName = 'identity.json';
// Below this fraction of life left a saved certificate is not started with, and a failing renewal is an error.
const minLifeLeft = 0.1;
const firstRetryMs = 1000;
const maxRetryMs = 30_000;
const maxTimerMs = 2 ** 31 - 1;
/**
 * A new intermediate reaches every sidecar of a cluster in the same moment (the trust bundle is
 * long-polled): each renews after a random wait below this, so the federation signs them over a
 * few seconds rather than all in one burst.
 */
const issuerRenewalSpreadMs = 5000;
const defaultTrustWaitSeconds = 30;

/**
 * The workload's certificate (docs/trust.md): the key is made here, the first
 * certificate is bought with a bootstrap token, every later one with the certificate before it,
 * at `renewAt` of its life and with no gap: a new certificate is installed only once it is
 * signed, and the old one serves until then. Kept on disk so a sidecar restarts while the
 * federation service is down.
 */
export class WorkloadIdentity extends EventEmitter {
  // Assigned by init() before start() hands the object out.
  private held!: Held;
  private context: SecureContext | undefined;
  private federationContext: SecureContext | undefined;
  private agent: H1Agent;
  private renewalAgent: H1Agent | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  /** Waits between failed renewals: about 1 s, growing to 30 s, with jitter so a mesh of sidecars does not retry in step. */
  private readonly renewBackoff = new Backoff({ initialMs: firstRetryMs, maxMs: maxRetryMs });
  private trustPoll: Promise<void> | undefined;
  /** A renewal for a new intermediate, waiting out its share of the spread. */
  private issuerRenewal: NodeJS.Timeout | undefined;
  /** The intermediate the federation last named as the one it signs with. */
  private federationIssuer: string | undefined;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private readonly now: () => number;
  private stopped = false;
  private renewing = false;

  private constructor(private readonly opts: WorkloadIdentityOptions) {
    super();
    this.log = opts.logger.child({ component: 'identity' });
    this.now = opts.now ?? Date.now;
    // The trust bundle's long poll presents the certificate held (the federation API serves mesh members only).
    // Certificate requests (the bootstrap, which has none yet and pays with its token, and
    // renewals) use an agent of their own.
    this.agent = this.federationAgent();
  }

  static async start(opts: WorkloadIdentityOptions): Promise<WorkloadIdentity> {
    const self = new WorkloadIdentity(opts);
    try {
      await self.init();
    } catch (err) {
      await self.stop();
      throw err;
    }
    return self;
  }

  current(): WorkloadCredentials {
    const { identity, certPem, chainPem, keyPem, trustBundle, notAfter } = this.held;
    return { identity, certPem, chainPem: [...chainPem], keyPem, trustBundle: [...trustBundle], notAfter: new Date(notAfter) };
  }

  /** For servers and clients facing peers; the same object until the certificate or trust bundle changes. */
  secureContext(): SecureContext {
    const { certPem, chainPem, keyPem, trustBundle } = this.held;
    return (this.context ??= createSecureContext({ cert: [certPem, ...chainPem].join('\n'), key: keyPem, ca: trustBundle }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.renewTimer);
    clearTimeout(this.issuerRenewal);
    this.abort.abort();
    await this.trustPoll;
    await Promise.all([this.agent.destroy(), this.renewalAgent?.destroy()]);
  }

  private async init(): Promise<void> {
    ensureDirectory(this.opts.stateDir, 'the sidecar\'s stateDir', 0o700);
    const saved = this.load();
    if (saved && this.lifeLeft(saved) > minLifeLeft) {
      this.log.info({ identity: saved.identity, notAfter: isoTime(saved.notAfter) }, 'using the saved workload certificate');
      this.install(saved, false);
    } else {
      if (saved) this.held = saved;
      try {
        this.install(await this.obtainFirst(), false);
      } catch (err) {
        if (!saved || saved.notAfter.getTime() <= this.now()) throw err;
        // Nearly spent still beats none: serve with it while the renewal loop keeps trying.
        this.log.error({ err: describeError(err), notAfter: isoTime(saved.notAfter) }, 'could not renew the saved certificate, which is close to expiry; using it meanwhile');
      }
    }
    this.log.info({ identity: this.held.identity, notAfter: isoTime(this.held.notAfter) }, 'workload identity ready');
    this.scheduleRenewal();
    // Long-polled: a root added or removed, or a new intermediate, arrives within moments.
    this.trustPoll = longPoll(trustFeed, {
      federationUrl: this.opts.federationUrl, dispatcher: () => this.agent, signal: this.abort.signal, logger: this.log,
      waitSeconds: this.opts.trustWaitSeconds ?? defaultTrustWaitSeconds,
      onSnapshot: (answer) => this.takeTrust(answer),
    });
  }

  private scheduleRenewal(): void {
    const { lifeStart, notAfter } = this.held;
    const delay = lifeStart + (this.opts.renewAt ?? 0.5) * (notAfter.getTime() - lifeStart) - this.now();
    // setTimeout fires at once for delays beyond ~24.8 days; wait in steps for long-lived certificates.
    if (delay > maxTimerMs) this.renewTimer = setTimeout(() => this.scheduleRenewal(), maxTimerMs).unref();
    else this.renewTimer = setTimeout(() => void this.renew(), Math.max(0, delay)).unref();
  }

  private async renew(): Promise<void> {
    if (this.stopped || this.renewing) return;
    this.renewing = true;
    try {
      const next = await this.obtain();
      if (this.stopped) return;
      this.install(next, true);
      this.renewBackoff.reset();
      this.log.info({ identity: this.held.identity, notAfter: isoTime(this.held.notAfter) }, 'workload certificate renewed');
      this.scheduleRenewal();
    } catch (err) {
      if (this.stopped) return;
      const left = this.lifeLeft(this.held);
      const retryMs = this.renewBackoff.next();
      const fields = { err: describeError(err), notAfter: isoTime(this.held.notAfter), retryInMs: retryMs };
      if (left <= 0) this.log.error(fields, 'the workload certificate has EXPIRED and could not be renewed: peers refuse this workload until renewal succeeds');
      else if (left < minLifeLeft) this.log.error(fields, 'the workload certificate expires soon and could not be renewed; check the federation service');
      else this.log.warn(fields, 'could not renew the workload certificate; keeping the current one and retrying');
      this.renewTimer = setTimeout(() => void this.renew(), retryMs).unref();
      return;
    } finally {
      this.renewing = false;
    }
    // A renewal already under way when the federation named a new intermediate may have been
    // signed by the one before, and that answer is not told again: look now.
    this.renewIfIssuerChanged();
  }

  /**
   * The certificate a start cannot do without. A request the federation did not answer in time
   * is sent again (a busy federation, or a connection it accepted and never served); an
   * unreachable federation or a refusal ends the start at once, as before.
   */
  private async obtainFirst(): Promise<Held> {
    for (let attempt = 1; ; attempt += 1) {
      this.log.info({ federation: this.opts.federationUrl, attempt }, 'asking the federation for a workload certificate');
      try {
        return await this.obtain();
      } catch (err) {
        const cause = (err as { cause?: { code?: unknown } }).cause?.code;
        const unanswered = cause === 'UND_ERR_HEADERS_TIMEOUT' || cause === 'UND_ERR_BODY_TIMEOUT';
        if (!unanswered || attempt >= firstCertificateAttempts || this.stopped) throw err;
        this.log.warn({ err: describeError(err), attempt, of: firstCertificateAttempts }, 'the certificate request got no answer in time; asking again');
      }
    }
  }

  /** Renews with the current certificate while it is valid, else with the bootstrap token. */
  private async obtain(): Promise<Held> {
    const held = this.held as Held | undefined;
    if (held && held.notAfter.getTime() > this.now()) return await this.sign({ certificate: held });
    if (this.opts.bootstrapToken !== undefined) return await this.sign({ token: this.opts.bootstrapToken });
    throw new IsthmusError(
      'ISTHMUS_ERR_TRUST_TOKEN_INVALID',
      `No usable certificate in ${join(this.opts.stateDir, fileName)} and no bootstrap token. ` +
        'Run `isthmus register <service> -n <namespace> -c <cluster.yaml> --address <host:port>` and start the sidecar with the token it prints.',
    );
  }

  private async sign(auth: { token: string } | { certificate: Held }): Promise<Held> {
    const url = this.opts.federationUrl;
    // A new ECDSA P-256 key (trust/csr.ts): about 0.1 ms, so it is made right here.
    const { csrPem, keyPem } = createCsr();
    // A fresh connection for every certificate request, so the federation sees the current
    // certificate, not one an older connection presented; and so a bootstrap's connection, which
    // carries no certificate, is never kept for the trust bundle's long poll, which needs one (the
    // API keeps idle connections open 72 s).
    const answerMs = this.opts.certificateRequestTimeoutMs ?? defaultCertificateRequestTimeoutMs;
    const agent = this.renewalAgent = new H1Agent({
      headersTimeout: answerMs, bodyTimeout: answerMs,
      connect: { ca: this.federationRoots(), ...('certificate' in auth ? { cert: [auth.certificate.certPem, ...auth.certificate.chainPem].join('\n'), key: auth.certificate.keyPem } : {}) },
    });
    let status: number;
    let body: unknown;
    try {
      const res = await request(`${url}/v1/certificates`, {
        method: 'POST', dispatcher: agent, signal: this.abort.signal,
        headers: { 'content-type': 'application/json', ...('token' in auth ? { authorization: `Bearer ${auth.token}` } : {}) },
        body: JSON.stringify({ csr: csrPem }),
      });
      status = res.statusCode;
      body = await res.body.json().catch(() => undefined);
    } catch (err) {
      throw new IsthmusError('ISTHMUS_ERR_API_UNREACHABLE', `The federation service at ${url} did not answer a certificate request (${describeError(err)}). Check that \`isthmus federation\` runs for this cluster and that ${url} is reachable from here.`, { cause: err });
    } finally {
      await agent.destroy();
      this.renewalAgent = undefined;
    }
    if (status !== 200) throw refusal(url, status, body, 'token' in auth);
    const signed = (body ?? {}) as { certificate?: unknown; chain?: unknown; trustBundle?: unknown };
    if (typeof signed.certificate !== 'string' || !isStrings(signed.chain) || !isStrings(signed.trustBundle)) {
      throw new IsthmusError('ISTHMUS_ERR_API_UNREACHABLE', `The federation service at ${url} answered a certificate request without certificate, chain and trustBundle; is it an Isthmus federation of this version?`);
    }
    const now = this.now();
    const verified = verifyChain({ leafPem: signed.certificate, intermediatesPem: signed.chain, rootsPem: signed.trustBundle, now: new Date(now) });
    return {
      identity: identityOf(verified.identity), certPem: signed.certificate, chainPem: signed.chain, keyPem,
      trustBundle: signed.trustBundle, notAfter: verified.notAfter,
      lifeStart: Math.max(now, certificateInfo(signed.certificate).notBefore.getTime()),
    };
  }

  private install(next: Held, announce: boolean): void {
    const previous = this.held as Held | undefined;
    this.held = next;
    this.context = undefined;
    this.federationContext = undefined;
    // New credentials or roots: new connections for the trust bundle's long poll (the poll in
    // flight ends on the old one). A kept one would present the certificate before (which the
    // API refuses once it expires) for as long as it is reused.
    const old = this.agent;
    this.agent = this.federationAgent();
    void old.close().catch(() => undefined);
    this.save();
    if (announce) this.emit('renewed', this.current());
    if (previous && !sameRoots(previous.trustBundle, next.trustBundle)) this.emit('trust-bundle', [...next.trustBundle]);
  }

  /** A trust answer that differs from the last one: new roots are installed at once. */
  private takeTrust(answer: TrustAnswer): void {
    if (this.stopped) return;
    if (!sameRoots(this.held.trustBundle, answer.roots)) {
      this.log.info({ roots: answer.roots.length }, 'trust bundle changed');
      this.install({ ...this.held, trustBundle: answer.roots }, false);
    }
    this.federationIssuer = answer.issuer;
    this.renewIfIssuerChanged();
  }

  /**
   * The federation signs with another intermediate than the one our leaf names (`isthmus ca
   * rotate-intermediate`): renew within seconds rather than at half life, so a root rotation
   * waits seconds for the workloads, not half a certificate's life.
   */
  private renewIfIssuerChanged(): void {
    const issuer = this.federationIssuer;
    const ours = this.held.chainPem[0];
    if (issuer === undefined || ours === undefined || this.renewing || this.stopped || this.issuerRenewal !== undefined || certificateInfo(ours).fingerprint256 === issuer) return;
    const inMs = Math.floor(Math.random() * issuerRenewalSpreadMs);
    this.log.info({ issuer, inMs }, 'the federation signs with a new intermediate; renewing');
    this.issuerRenewal = setTimeout(() => {
      this.issuerRenewal = undefined;
      clearTimeout(this.renewTimer);
      void this.renew();
    }, inMs).unref();
  }

  private federationAgent(): H1Agent {
    // A long poll is answered within its wait: no answer 10 s after that is a connection gone dead.
    const answerMs = ((this.opts.trustWaitSeconds ?? defaultTrustWaitSeconds) + 10) * 1000;
    return new H1Agent({ connect: connectorFor(() => (this.federationContext ??= this.heldContext())), headersTimeout: answerMs, bodyTimeout: answerMs });
  }

  private heldContext(): SecureContext {
    const held = this.held as Held | undefined;
    return createSecureContext({ ca: this.federationRoots(), ...(held ? { cert: [held.certPem, ...held.chainPem].join('\n'), key: held.keyPem } : {}) });
  }

  /** What the federation API's certificate may chain to: the root we were given, and any root added since. */
  private federationRoots(): string[] {
    return [...new Set([this.opts.rootCertPem, ...((this.held as Held | undefined)?.trustBundle ?? [])].map((pem) => pem.trim()))];
  }

  private lifeLeft(held: Held): number {
    const total = held.notAfter.getTime() - held.lifeStart;
    return total > 0 ? (held.notAfter.getTime() - this.now()) / total : 0;
  }

  private save(): void {
    const { identity, certPem, chainPem, keyPem, trustBundle, notAfter, lifeStart } = this.held;
    try {
      writeJsonAtomic(join(this.opts.stateDir, fileName), { identity, cert: certPem, chain: chainPem, key: keyPem, trustBundle, notAfter: isoTime(notAfter), receivedAt: isoTime(lifeStart) });
    } catch (err) {
      this.log.error({ err: describeError(err), stateDir: this.opts.stateDir }, 'could not save the workload certificate; a restart will need the federation service');
    }
  }

  /** The saved credentials if they still verify against their own trust bundle; anything else is ignored with a reason. */
  private load(): Held | undefined {
    const path = join(this.opts.stateDir, fileName);
    try {
      const saved = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
      const { cert, chain, key, trustBundle, receivedAt } = saved;
      if (typeof cert !== 'string' || typeof key !== 'string' || !isStrings(chain) || !isStrings(trustBundle)) throw new Error('cert, chain, key or trustBundle is missing');
      verifyKeyMatchesCert(cert, key);
      const verified = verifyChain({ leafPem: cert, intermediatesPem: chain, rootsPem: trustBundle, now: new Date(this.now()) });
      const notBefore = certificateInfo(cert).notBefore.getTime();
      return {
        identity: identityOf(verified.identity), certPem: cert, chainPem: chain, keyPem: key, trustBundle, notAfter: verified.notAfter,
        lifeStart: Math.max(notBefore, typeof receivedAt === 'string' ? Date.parse(receivedAt) || 0 : 0),
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ path, err: describeError(err) }, 'ignoring the saved workload certificate');
      return undefined;
    }
  }
}

/**
 * An undici connector whose new connections use whatever context `secureContext()` returns then,
 * so renewed credentials apply without replacing the Agent; open connections keep theirs.
 */
export function connectorFor(secureContext: () => SecureContext): Connector {
  let built: { context: SecureContext; connect: Connector } | undefined;
  return (options, callback) => {
    const context = secureContext();
    // A new connector per context also drops cached TLS sessions, which would resume the old client certificate.
    if (built?.context !== context) built = { context, connect: buildConnector({ secureContext: context }) };
    built.connect(options, callback);
  };
}

/** Temp file, fsync, rename: a crash leaves the old file or the new one, never half of one. Mode 0600: it may hold a private key. */
export function writeJsonAtomic(path: string, value: unknown): void {
  writeTextAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}


function refusal(url: string, status: number, body: unknown, withToken: boolean): IsthmusError {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const reason = typeof error?.message === 'string' ? error.message : `HTTP ${status}`;
  if (withToken && error?.code === 'ISTHMUS_ERR_TRUST_TOKEN_INVALID') {
    return new IsthmusError(
      'ISTHMUS_ERR_TRUST_TOKEN_INVALID',
      `The federation service at ${url} refused the bootstrap token: ${reason} ` +
        'Run `isthmus register <service> -n <namespace> -c <cluster.yaml> --address <host:port>` for a new token and start the sidecar with it.',
    );
  }
  const code: ErrorCode = typeof error?.code === 'string' && error.code in errorCodes ? (error.code as ErrorCode) : 'ISTHMUS_ERR_API_UNREACHABLE';
  return new IsthmusError(code, `The federation service at ${url} refused the certificate request (HTTP ${status}): ${reason}`);
}

function identityOf(identity: string | undefined): string {
  if (identity === undefined) throw new IsthmusError('ISTHMUS_ERR_TRUST_CERT_INVALID', 'The workload certificate carries no SPIFFE ID; it cannot serve as a mesh identity.');
  return identity;
}

function isStrings(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}
