import { connect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { tcpProbe } from '../federation/health-checker.js';
import { formatGatewayHealthSni } from '../model/sni.js';

/**
 * The sidecar's active check of a remote cluster's gateway: a TLS ClientHello to it with the
 * gateway health SNI (`health.gateway.<cluster>.isthmus`), which the gateway answers itself,
 * completing the handshake with its own certificate. A TCP connect cannot tell a hung gateway
 * from a live one: the kernel of a stopped process still completes the TCP handshake into its
 * listen backlog, so only a reaction to bytes proves the gateway process reads. The check
 * measures the gateway and nothing behind it: the probe SNI, which the gateway splices to its
 * federation, made a hung federation behind a live gateway look like a hung gateway, and the
 * data path does not need the federation. Either reaction passes: the handshake completes, or
 * the gateway closes the connection after the TCP connect (it has no certificate yet, or it is
 * older and refuses the name: it read the ClientHello, so it is alive). Silence until the
 * timeout fails, and so does a refused connection. The check asks only whether the gateway
 * answers, never who answers: the connection carries no request, so no certificate is checked,
 * and a ticket from the last check resumes the next handshake (no signature, little CPU).
 */
export class GatewayCheck {
  private readonly tickets = new Map<string, Buffer>();
  /**
   * One TLS context for every check: without it each connect made a context of its own (an
   * OpenSSL SSL_CTX and its setup), 4% of an idle sidecar's busy time in a profile. The
   * check presents no certificate and verifies none, so one context serves every gateway.
   */
  private context: SecureContext | undefined;

  /**
   * `handshakeTimeoutMs`: the data plane's own connect timeout (timeouts.connect), since a path
   * that cannot finish a handshake in that time fails every new connection of a request anyway;
   * a shorter one would call a gateway on a busy machine hung, and drop its connections.
   */
  constructor(private readonly clusterOf: (address: string) => string | undefined, private readonly handshakeTimeoutMs: number) {}

  /** HealthChecker's probe: the handshake for a gateway, a TCP connect for anything else. */
  readonly probe = (address: string, timeoutMs: number): Promise<boolean> => {
    const cluster = this.clusterOf(address);
    if (cluster === undefined) return tcpProbe(address, timeoutMs);
    return this.handshake(address, formatGatewayHealthSni(cluster), this.handshakeTimeoutMs);
  };

  private handshake(address: string, servername: string, timeoutMs: number): Promise<boolean> {
    const split = address.lastIndexOf(':');
    const ticket = this.tickets.get(address);
    return new Promise((resolve) => {
      let socket: TLSSocket | undefined;
      const done = (ok: boolean) => {
        clearTimeout(timer);
        socket?.destroy();
        resolve(ok);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      let reached = false;
      socket = connect({
        host: address.slice(0, split), port: Number(address.slice(split + 1)), servername,
        secureContext: (this.context ??= createSecureContext()),
        rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...(ticket ? { session: ticket } : {}),
      });
      socket.once('connect', () => { reached = true; });
      // Closed by the gateway after the TCP connect: it read the ClientHello and acted on it.
      socket.once('close', () => done(reached));
      socket.on('session', (session: Buffer) => {
        this.tickets.set(address, session);
        done(true);
      });
      // TLS 1.2 sends no ticket after the handshake; TLS 1.3 may send it just after: wait briefly for it.
      socket.once('secureConnect', () => setTimeout(() => done(true), 50).unref());
      socket.once('error', () => done(reached));
    });
  }
}
