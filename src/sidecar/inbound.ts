import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { pipeline } from 'node:stream/promises';
import { Pool, type Dispatcher } from 'undici';
import { channels } from '../core/channels.js';
import type { Logger } from '../core/log.js';
import { forwardableHeaders } from './headers.js';
import { peerIdentity } from './peer-identity.js';

const requestChannel = channels.inboundRequest;

export interface InboundCredentials { certPem: string; chainPem: string[]; keyPem: string; trustBundle: string[]; identity: string }


/**
 * The mTLS listener in front of the app. Only peers with a certificate that chains to a mesh
 * root get in; the app learns who called from `x-forwarded-client-cert` in Envoy's format
 * (By=<us>;Hash=<sha256 of their certificate>;URI=<their SPIFFE ID>), which this sidecar sets
 * and which it strips from anything that arrives, so it cannot be forged from outside.
 */
export class Inbound {
  readonly server: Server;
  private readonly app: Pool;
  private identity: string;

  constructor(credentials: InboundCredentials, appAddress: string, private readonly logger: Logger) {
    this.identity = credentials.identity;
    this.app = new Pool(`http://${appAddress}`, { connections: 64, keepAliveTimeout: 30_000 });
    this.server = createServer({ ...tlsOptions(credentials), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2', keepAliveTimeout: 60_000 }, (req, res) => {
      void this.handle(req, res).catch((err: unknown) => {
        this.logger.warn({ err: (err as Error).message }, 'inbound request to the app failed');
        if (!res.headersSent) {
          res.writeHead(502, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { code: 'ISTHMUS_ERR_API_UNREACHABLE', message: `the app at ${appAddress} did not answer` } }));
        } else res.destroy();
      });
    });
    this.server.on('secureConnection', (socket) => socket.setNoDelay(true));
    this.server.on('tlsClientError', (err) => this.logger.debug({ err: err.message }, 'inbound TLS handshake refused'));
  }

  /** A renewed certificate or a changed trust bundle applies to new connections at once. */
  update(credentials: InboundCredentials): void {
    this.identity = credentials.identity;
    this.server.setSecureContext(tlsOptions(credentials));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.app.close();
  }

  /** One event per answered request, for src/telemetry/. */
  private answered(started: number, peer: string | undefined, code: number): void {
    if (requestChannel.hasSubscribers) requestChannel.publish({ origin: this, peer, code, seconds: (performance.now() - started) / 1000 });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const socket = req.socket as TLSSocket;
    const cert = socket.getPeerCertificate(true);
    const peer = peerIdentity(cert);
    if ('error' in peer) {
      this.answered(started, undefined, 403);
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'ISTHMUS_ERR_TRUST_IDENTITY_DENIED', message: peer.error } }));
      return;
    }
    // Any XFCC that arrives is dropped: only this sidecar may say who called.
    const headers = forwardableHeaders(req.headers, 'x-forwarded-client-cert');
    const hash = createHash('sha256').update(cert.raw).digest('hex');
    headers['x-forwarded-client-cert'] = `By=${this.identity};Hash=${hash};URI=${peer.identity}`;
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    const response = await this.app.request({
      path: req.url ?? '/',
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body: hasBody ? req : null,
    }).catch((err: unknown) => {
      this.answered(started, peer.identity, 502);
      throw err;
    });
    res.writeHead(response.statusCode, forwardableHeaders(response.headers));
    this.answered(started, peer.identity, response.statusCode);
    await pipeline(response.body, res).catch(() => res.destroy());
  }
}

function tlsOptions(c: InboundCredentials) {
  return { cert: [c.certPem.trim(), ...c.chainPem.map((p) => p.trim())].join('\n'), key: c.keyPem, ca: c.trustBundle };
}
