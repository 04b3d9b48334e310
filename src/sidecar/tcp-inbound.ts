import { connect, type Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { channels } from '../core/channels.js';
import type { Logger } from '../core/log.js';
import { IssuingClusters, type InboundAuthorization } from './authz-layer.js';
import { peerIdentity } from './peer-identity.js';
import { acceptPlaintextWhen, isPlaintextCaller } from './plaintext-inbound.js';
import { OpenSockets } from '../core/open-sockets.js';
import { meteredSplice } from '../core/byte-meter.js';
import { defaultTimeouts } from './timeouts.js';
import { isTcpAlpn, tcpAlpn } from './tcp-protocol.js';

const tcpChannel = channels.tcpInbound;
const closedChannel = channels.tcpInboundClosed;
const bytesChannel = channels.tcpInboundBytes;

export interface TcpInboundCredentials { certPem: string; chainPem: string[]; keyPem: string; trustBundle: string[] }

export interface TcpInboundStats {
  /** Callers that passed the checks and were spliced to the app. */
  accepted: number;
  /** Callers closed before any byte reached the app, by reason. */
  refused: Partial<Record<'handshake' | 'plaintext' | 'alpn' | 'identity' | 'authorization' | 'app-unreachable', number>>;
}

/**
 * How long a new connection may stay silent while the namespace is permissive, before its first
 * byte says TLS or plain text (the HTTP inbound's handshake limit). A TLS client always speaks
 * first; so does every plain-text client permissive mode can tell apart (docs/authorization.md).
 */
const firstBytesTimeoutMs = 10_000;

/**
 * The inbound listener of a sidecar whose app speaks plain TCP (`inbound.appProtocol: tcp`): it
 * terminates mTLS exactly as the HTTP inbound does (a client certificate chaining to a mesh
 * root, exactly one SPIFFE ID in that root's trust domain), requires ALPN `isthmus-tcp`, and
 * then splices the decrypted stream to the app's port. Nothing is read from the caller until
 * the app has accepted, and no byte of a refused caller ever reaches the app.
 *
 * While the namespace's mTLS mode is `permissive`, a connection whose first byte is not a TLS
 * handshake is a plain-text caller (plaintext-inbound.ts): it has no identity, so it is spliced
 * to the app only when the service's rules allow a caller they know nothing about.
 */
export class TcpInbound {
  readonly server: Server;
  readonly stats: TcpInboundStats = { accepted: 0, refused: {} };
  private readonly sockets = new OpenSockets();
  private readonly clusters = new IssuingClusters();

  /**
   * `authz`: who may connect (authz-layer.ts), and the namespace's mTLS mode; a TCP connection
   * has no method or path, so only rules about the caller can allow it. Without it the inbound
   * is strict.
   */
  constructor(
    credentials: TcpInboundCredentials, private readonly appAddress: string, private readonly log: Logger,
    private readonly idleTimeoutMs = defaultTimeouts.tunnelIdleMs, private readonly authz?: InboundAuthorization,
  ) {
    this.server = createServer({
      ...tlsOptions(credentials), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2',
      // Not allowHalfOpen here: a TCP health check's FIN before any handshake must close the
      // socket at once (half-open, it would linger until the handshake timeout). Callers that
      // pass are made half-open in accept(), before the first byte is read.
      ALPNProtocols: [tcpAlpn],
    }, (socket) => this.acceptSecure(socket));
    this.server.on('connection', (raw: Socket) => this.sockets.track(raw));
    acceptPlaintextWhen(this.server, () => this.authz?.mtls === 'permissive', firstBytesTimeoutMs, () => (socket) => this.acceptPlaintext(socket));
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException) => {
      // A peer that left before finishing a handshake (health checks, every 2 s) was not refused.
      if (err.code === 'ECONNRESET') return;
      if (!isPlaintextCaller(err)) return void this.refuse(undefined, 'handshake', err.message);
      this.authz?.plaintextRefused();
      this.refuse(undefined, 'plaintext', `a plain-text caller, and the namespace's mTLS mode is strict: call through a sidecar's TCP listener (${err.message})`);
    });
  }

  /** A renewed certificate or a changed trust bundle applies to new connections at once. */
  update(credentials: TcpInboundCredentials): void {
    this.server.setSecureContext(tlsOptions(credentials));
  }

  /** No new connection; those open run on until they end, or for `ms` at most: resolves with how many are left. */
  async drain(ms: number): Promise<number> {
    this.server.close();
    return this.sockets.emptied(ms);
  }

  async close(): Promise<void> {
    this.sockets.destroyAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * A caller whose TLS session is up: this listener's own, or one an HTTP inbound in front of
   * several app ports handed over because its ALPN chose this TCP port (inbound-ports.ts).
   */
  acceptSecure(caller: TLSSocket): void {
    caller.allowHalfOpen = true; // read by the stream when the caller's end arrives: only that direction ends
    caller.pause();
    this.sockets.track(caller);
    caller.on('error', () => caller.destroy());
    if (!isTcpAlpn(caller.alpnProtocol)) {
      this.refuse(caller, 'alpn', `the caller did not offer ALPN ${tcpAlpn} (got ${caller.alpnProtocol || 'none'}); connect through a sidecar's TCP listener`);
      return;
    }
    const cert = caller.getPeerCertificate(true);
    const peer = peerIdentity(cert);
    if ('error' in peer) {
      this.refuse(caller, 'identity', peer.error);
      return;
    }
    const refusal = this.authz?.connection(this.clusters.facts(cert, peer));
    if (refusal) {
      this.refuse(caller, 'authorization', refusal.message, refusal.code);
      return;
    }
    this.spliceToApp(caller, peer.identity);
  }

  /** A plain-text caller, handed over paused while the namespace is permissive. */
  private acceptPlaintext(caller: Socket): void {
    caller.allowHalfOpen = true; // as in accept(): the caller's FIN ends only its direction
    caller.on('error', () => caller.destroy());
    const refusal = this.authz?.connection({});
    if (refusal) {
      this.refuse(caller, 'authorization', refusal.message, refusal.code);
      return;
    }
    this.spliceToApp(caller, undefined);
  }

  /** `peer`: the caller's SPIFFE ID, undefined for a plain-text caller. */
  private spliceToApp(caller: Socket, peer: string | undefined): void {
    const split = this.appAddress.lastIndexOf(':');
    const app = connect({ host: this.appAddress.slice(0, split), port: Number(this.appAddress.slice(split + 1)), allowHalfOpen: true, noDelay: true });
    this.sockets.track(app);
    const abandon = () => app.destroy();
    caller.once('close', abandon);
    app.once('error', (err) => {
      caller.off('close', abandon);
      this.stats.refused['app-unreachable'] = (this.stats.refused['app-unreachable'] ?? 0) + 1;
      this.log.warn({ code: 'ISTHMUS_ERR_TCP_APP_UNREACHABLE', app: this.appAddress, caller: peer, err: err.message }, `the app at ${this.appAddress} did not accept; caller's connection closed`);
      if (tcpChannel.hasSubscribers) tcpChannel.publish({ origin: this, peer, result: 'app_unreachable', code: 'ISTHMUS_ERR_TCP_APP_UNREACHABLE' });
      caller.destroy();
    });
    app.once('connect', () => {
      caller.off('close', abandon);
      app.removeAllListeners('error');
      this.stats.accepted += 1;
      if (tcpChannel.hasSubscribers) tcpChannel.publish({ origin: this, peer, result: 'accepted' });
      this.log.debug({ caller: peer ?? 'plain text', app: this.appAddress }, 'TCP caller spliced to the app');
      const opened = performance.now();
      // The bytes counted while the connection is open too (core/byte-meter.ts), not only at its
      // end. The local workload is the app: what it sent is what came from it (b).
      meteredSplice(caller, app, {
        idleMs: this.idleTimeoutMs,
        report: (fromCaller, fromApp) => {
          if (bytesChannel.hasSubscribers) bytesChannel.publish({ origin: this, peer, sentBytes: fromApp, receivedBytes: fromCaller });
        },
        onEnd: (end, bytes) => {
          if (closedChannel.hasSubscribers) closedChannel.publish({ origin: this, peer, end, sentBytes: bytes.fromB, receivedBytes: bytes.fromA, seconds: (performance.now() - opened) / 1000 });
        },
      });
      caller.resume();
    });
  }

  private refuse(caller: Socket | undefined, reason: keyof TcpInboundStats['refused'], detail: string, code: 'ISTHMUS_ERR_TCP_CALLER_REFUSED' | 'ISTHMUS_ERR_AUTHZ_DENIED' | 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED' = 'ISTHMUS_ERR_TCP_CALLER_REFUSED'): void {
    this.stats.refused[reason] = (this.stats.refused[reason] ?? 0) + 1;
    if (tcpChannel.hasSubscribers) tcpChannel.publish({ origin: this, peer: undefined, result: 'refused', code: 'ISTHMUS_ERR_TCP_CALLER_REFUSED' });
    // A failed handshake is a port scan or a client without a mesh certificate: debug, as the HTTP inbound does
    // (a plain-text caller is counted and reported as an authorization refusal).
    this.log[reason === 'handshake' || reason === 'plaintext' ? 'debug' : 'warn']({ code, reason, remote: caller?.remoteAddress }, detail);
    caller?.destroy();
  }
}

function tlsOptions(c: TcpInboundCredentials) {
  return { cert: [c.certPem.trim(), ...c.chainPem.map((p) => p.trim())].join('\n'), key: c.keyPem, ca: c.trustBundle };
}
