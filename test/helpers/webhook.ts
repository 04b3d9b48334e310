import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SloWebhookPayload } from '../../src/federation/slo-alerter.js';

/** A real HTTP endpoint that records every SLO page posted to it (JSON bodies), answering 204. */
export interface WebhookReceiver {
  url: string;
  pages: SloWebhookPayload[];
  close(): Promise<void>;
}

export async function webhookReceiver(host: string): Promise<WebhookReceiver> {
  const pages: SloWebhookPayload[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      pages.push(JSON.parse(body) as SloWebhookPayload);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    url: `http://${host}:${(server.address() as AddressInfo).port}/page`,
    pages,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
