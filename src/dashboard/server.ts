import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { buildOverview, type OverviewSource } from './overview.js';

/**
 * Our page's own files. tsc does not copy them to dist/, so both src/dashboard/server.ts and
 * dist/dashboard/server.js (each two levels below the package root) read them from src/.
 */
const assetsDir = fileURLToPath(new URL('../../src/dashboard/assets/', import.meta.url));
const require = createRequire(import.meta.url);

/** URL path → [file, content type]. Nothing else is served: no path from the request reaches the disk. */
const assets: Record<string, [string, string]> = {
  '/': [`${assetsDir}index.html`, 'text/html; charset=utf-8'],
  '/assets/app.js': [`${assetsDir}app.js`, 'text/javascript; charset=utf-8'],
  '/assets/style.css': [`${assetsDir}style.css`, 'text/css; charset=utf-8'],
  '/assets/uplot.js': [require.resolve('uplot/dist/uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
  '/assets/uplot.css': [require.resolve('uplot/dist/uPlot.min.css'), 'text/css; charset=utf-8'],
};

export interface DashboardSource extends OverviewSource {
  on(event: 'catalog', listener: () => void): unknown;
  off(event: 'catalog', listener: () => void): unknown;
}

export interface DashboardHandler {
  /** Answers the request and returns true if it is the dashboard's; false leaves it to the caller. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** Ends every open stream. */
  close(): void;
}

/** The dashboard on the federation's plain-HTTP port: the page, its assets, /api/overview and /api/stream (SSE). */
export function createDashboard(source: DashboardSource, opts: { pushIntervalMs?: number } = {}): DashboardHandler {
  const streams = new Set<() => void>();
  const pushIntervalMs = opts.pushIntervalMs ?? 2000;

  function stream(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    let seq = 0;
    const push = () => {
      seq += 1;
      res.write(`id: ${seq}\nevent: overview\ndata: ${JSON.stringify(buildOverview(source))}\n\n`);
    };
    push();
    const timer = setInterval(push, pushIntervalMs);
    source.on('catalog', push);
    const end = () => {
      clearInterval(timer);
      source.off('catalog', push);
      streams.delete(end);
      res.end();
    };
    streams.add(end);
    req.on('close', end);
  }

  return {
    handle(req, res) {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (path === '/api/overview') {
        const body = JSON.stringify(buildOverview(source));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
        return true;
      }
      if (path === '/api/stream') {
        stream(req, res);
        return true;
      }
      const asset = assets[path === '/index.html' ? '/' : path];
      if (!asset) return false;
      const [file, type] = asset;
      readFile(file).then((body) => {
        res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-cache' });
        res.end(req.method === 'HEAD' ? undefined : body);
      }, (err: unknown) => {
        const text = `dashboard asset missing: ${(err as Error).message}\n`;
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
      return true;
    },
    close() {
      for (const end of [...streams]) end();
    },
  };
}
