import { Gauge, type Registry } from './prom.js';
import type { TypedChannel } from '../core/channels.js';

/** Subscribes to a channel, keeping only the messages of the observed components (their `origin`). */
export type Listen = <T extends { origin: object }>(channel: TypedChannel<T>, listener: (message: T) => void) => void;

/**
 * A Listen that keeps the messages published by `origins` (every message when undefined: one
 * component per process), and `close()` that unsubscribes everything it subscribed.
 */
export function originListener(origins: readonly object[] | undefined): { listen: Listen; close(): void } {
  const kept = origins === undefined ? undefined : new Set(origins);
  const unsubscribe: (() => void)[] = [];
  const listen: Listen = (channel, listener) => {
    const filtered = (message: Parameters<typeof listener>[0]) => {
      if (!kept || kept.has(message.origin)) listener(message);
    };
    channel.subscribe(filtered);
    unsubscribe.push(() => channel.unsubscribe(filtered));
  };
  return {
    listen,
    close: () => {
      for (const off of unsubscribe.splice(0)) off();
    },
  };
}

export interface CertificateFacts {
  identity: string;
  notAfter: Date;
}

/** `isthmus_certificate_expiry_timestamp_seconds{cluster, identity}`, read on scrape. */
export function certificateExpiry(registry: Registry, cluster: string, certificates: (() => CertificateFacts[]) | undefined): void {
  if (!certificates) return;
  new Gauge({
    name: 'isthmus_certificate_expiry_timestamp_seconds',
    help: 'When the certificate this process serves with expires (Unix seconds); alert when this - time() gets small.',
    labelNames: ['cluster', 'identity'],
    registers: [registry],
    collect() {
      this.reset();
      for (const cert of certificates()) this.set({ cluster, identity: cert.identity }, Math.floor(cert.notAfter.getTime() / 1000));
    },
  });
}
