import type { IncomingHttpHeaders } from 'node:http';
import type { DetailedPeerCertificate } from 'node:tls';
import { channels, type AuthzDeniedMessage } from '../core/channels.js';
import type { ErrorCode } from '../core/errors.js';
import {
  authorizationApplies, authorize, compileAuthorization, emptyAuthorization, namespaceSettings,
  type AuthorizationTable, type CallerFacts, type Decision, type MtlsMode,
} from '../model/authorization.js';
import type { PolicyRecord } from '../model/policy-records.js';
import { normaliseRequestPath } from '../model/request-path.js';

const deniedChannel = channels.authzDenied;

export interface AuthzRefusal {
  code: Extract<ErrorCode, 'ISTHMUS_ERR_AUTHZ_DENIED' | 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED'>;
  status: 403 | 400;
  message: string;
}

/** Go on, giving the app `target` (the normalised path and the query as sent); or refuse. */
export type RequestVerdict = { target: string } | { refusal: AuthzRefusal };

/**
 * The authorization step of a destination's inbound, for HTTP/1.1, HTTP/2 and TCP alike: the
 * policy snapshot compiled once (model/authorization.ts), and per request the normalised path
 * (model/request-path.ts) and the decision on the verified caller. A service no authorization
 * applies to is passed through untouched, its path as sent; once one does, every request's path
 * is normalised, matched, and given to the app in that form, so the app sees what was checked.
 * Refusals are published on `isthmus:sidecar:authz-denied` (metrics, dashboard events).
 */
export class InboundAuthorization {
  private table: AuthorizationTable = emptyAuthorization;
  private readonly name: string;

  constructor(readonly namespace: string, readonly service: string) {
    this.name = `${namespace}/${service}`;
  }

  /** A new policy snapshot. */
  set(records: readonly PolicyRecord[]): void {
    this.table = compileAuthorization(records);
  }

  /** Whether plain-text callers are let in (the namespace's MeshNamespace `mtls.mode`). */
  get mtls(): MtlsMode {
    return namespaceSettings(this.table, this.namespace).mtls;
  }

  /** `request.headers` is read only when a policy applies and asks for a field (an HTTP/1.1 request builds it then). */
  request(caller: CallerFacts, method: string, target: string, request: { readonly headers: IncomingHttpHeaders }): RequestVerdict {
    if (!authorizationApplies(this.table, this.namespace, this.service)) return { target };
    const normalised = normaliseRequestPath(target);
    if ('refused' in normalised) {
      this.publish(caller, 'path_refused', undefined);
      return { refusal: { code: 'ISTHMUS_ERR_AUTHZ_PATH_REFUSED', status: 400, message: `${normalised.refused}; ${this.name} has authorization policies, so its paths must be unambiguous` } };
    }
    const decision = authorize(this.table, this.namespace, this.service, caller, { method, path: normalised.path, header: (n) => headerValue(request.headers[n]) });
    if (!decision.allowed) return { refusal: this.denied(caller, decision, `${method} ${normalised.path}`) };
    return { target: `${normalised.path}${normalised.query}` };
  }

  /** A TCP connection (or a CONNECT tunnel): only who calls is known. */
  connection(caller: CallerFacts): AuthzRefusal | undefined {
    if (!authorizationApplies(this.table, this.namespace, this.service)) return undefined;
    const decision = authorize(this.table, this.namespace, this.service, caller, undefined);
    return decision.allowed ? undefined : this.denied(caller, decision, 'connect');
  }

  /**
   * A plain-text caller was refused because the namespace is strict (its TLS handshake failed on
   * plain text, or it kept a connection open from permissive mode): counted and reported as the
   * other refusals are, naming the MeshNamespace that says strict when one does.
   */
  plaintextRefused(): void {
    this.publish({}, 'plaintext', namespaceSettings(this.table, this.namespace).policy);
  }

  private denied(caller: CallerFacts, decision: Decision, what: string): AuthzRefusal {
    this.publish(caller, decision.rule === undefined ? 'no_rule_allows' : 'deny_rule', decision.rule);
    const who = caller.identity ?? 'a plain-text caller';
    const from = caller.cluster === undefined ? '' : ` (cluster ${caller.cluster})`;
    return { code: 'ISTHMUS_ERR_AUTHZ_DENIED', status: 403, message: `${who}${from} may not ${what} on ${this.name}: ${decision.reason}` };
  }

  private publish(caller: CallerFacts, reason: AuthzDeniedMessage['reason'], rule: string | undefined): void {
    if (deniedChannel.hasSubscribers) deniedChannel.publish({ origin: this, service: this.name, caller: caller.identity, cluster: caller.cluster, reason, rule, at: Date.now() });
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

const maxRemembered = 10_000;

/**
 * The issuing cluster of each caller certificate seen in a full handshake, by fingerprint. A
 * resumed TLS session brings the caller's leaf without its chain (peer-identity.ts), so its
 * cluster is looked up here; one not seen by this process stays unknown, which rules read
 * strictly (model/authorization.ts).
 */
export class IssuingClusters {
  private readonly byFingerprint = new Map<string, string>();

  /** The caller facts of a verified peer: its identity, and its cluster from the chain or from memory. */
  facts(cert: DetailedPeerCertificate, peer: { identity: string; cluster?: string }): CallerFacts {
    if (peer.cluster !== undefined) {
      if (this.byFingerprint.size >= maxRemembered) this.byFingerprint.clear();
      this.byFingerprint.set(cert.fingerprint256, peer.cluster);
      return { identity: peer.identity, cluster: peer.cluster };
    }
    const cluster = this.byFingerprint.get(cert.fingerprint256);
    return cluster === undefined ? { identity: peer.identity } : { identity: peer.identity, cluster };
  }
}
