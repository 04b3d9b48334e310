import { request } from 'node:http';

export interface ProxiedResponse { status: number; body: any; text: string; headers: Record<string, string | string[] | undefined> }

/** What `curl -x http://<proxy> <url>` does: an absolute-form request to the sidecar's proxy port. */
export function viaProxy(proxy: string, url: string, timeoutMs = 5000, headers: Record<string, string> = {}): Promise<ProxiedResponse> {
  const split = proxy.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = request({ host: proxy.slice(0, split), port: Number(proxy.slice(split + 1)), path: url, headers: { host: new URL(url).host, ...headers }, timeout: timeoutMs }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => {
        let body: unknown;
        try { body = JSON.parse(text); } catch { body = undefined; }
        resolve({ status: res.statusCode ?? 0, body, text, headers: res.headers });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Sends requests one after another (a steady, bounded loop) until stopped, recording where each
 * was answered (the cluster and instance a dev mesh sample names) and whether it failed, with a
 * timestamp. A request not answered within `timeoutMs` is given up (status 0, error `timed out`).
 */
export function steadyTraffic(proxy: string, url: string, gapMs = 40, timeoutMs = 3000) {
  const results: { at: number; ms: number; ok: boolean; cluster?: string; instance?: string; status: number; error?: string }[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const at = Date.now();
      try {
        const res = await viaProxy(proxy, url, timeoutMs);
        results.push({ at, ms: Date.now() - at, ok: res.status === 200, cluster: res.body?.cluster, instance: res.body?.instance, status: res.status, ...(res.status === 200 ? {} : { error: res.text.slice(0, 200) }) });
      } catch (err) {
        results.push({ at, ms: Date.now() - at, ok: false, status: 0, error: (err as Error).message });
      }
      await new Promise((r) => setTimeout(r, gapMs));
    }
  })();
  return {
    results,
    async stop() {
      running = false;
      await done;
      return results;
    },
  };
}
