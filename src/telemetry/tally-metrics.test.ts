import { describe, expect, test } from 'vitest';
import { Counter, Histogram, Registry } from './prom.js';
import { latencyBuckets } from './sidecar-metrics.js';
import { TallyCounter, TallyHistogram } from './tally-metrics.js';

/** The same observations through prom-client's metrics and through ours, each in a registry of its own. */
function both() {
  const prom = new Registry();
  const ours = new Registry();
  const labelNames = ['source_cluster', 'destination_cluster', 'destination_service'];
  const help = 'Time from the app\'s request to the response headers, "quoted" \\ and all.';
  return {
    prom, ours,
    promCounter: new Counter({ name: 'isthmus_requests_total', help: 'Requests.', labelNames: [...labelNames, 'code'], registers: [prom] }),
    ourCounter: new TallyCounter({ name: 'isthmus_requests_total', help: 'Requests.', registers: [ours] }),
    promHistogram: new Histogram({ name: 'isthmus_request_duration_seconds', help, labelNames, buckets: latencyBuckets, registers: [prom] }),
    ourHistogram: new TallyHistogram({ name: 'isthmus_request_duration_seconds', help, buckets: latencyBuckets, registers: [ours] }),
  };
}

describe('tally metrics: counting without hashing labels per request', () => {
  test('the exposition is the text prom-client writes for the same observations: bounds, +Inf, sum, count, label order and escaping', async () => {
    const m = both();
    const sets = [
      { source_cluster: 'east', destination_cluster: 'west', destination_service: 'demo/ledger' },
      { source_cluster: 'east', destination_cluster: 'none', destination_service: 'a "quoted"\\ name\nnext' },
    ];
    // Values on the bounds, between them, below the first and above the last.
    const values = [0, 0.001, 0.0011, 0.0025, 0.004, 0.01, 0.3, 2.5, 9.99, 10, 11, 250];
    for (const [i, labels] of sets.entries()) {
      const promChild = m.promHistogram.labels(labels);
      const ourChild = m.ourHistogram.labels(labels);
      for (const v of values.slice(i)) {
        promChild.observe(v);
        ourChild.observe(v);
      }
      for (const code of ['200', '503', 'connect_error']) {
        const promCount = m.promCounter.labels({ ...labels, code });
        const ourCount = m.ourCounter.labels({ ...labels, code });
        for (let n = 0; n < code.length; n += 1) {
          promCount.inc();
          ourCount.inc();
        }
      }
    }
    const text = await m.ours.metrics();
    expect(text).toBe(await m.prom.metrics());
    expect(text).toContain('isthmus_request_duration_seconds_bucket{le="0.001",source_cluster="east",destination_cluster="west",destination_service="demo/ledger"} 2');
    expect(text).toContain('isthmus_request_duration_seconds_count{source_cluster="east",destination_cluster="west",destination_service="demo/ledger"} 12');
    expect(text).toContain('isthmus_requests_total{source_cluster="east",destination_cluster="west",destination_service="demo/ledger",code="connect_error"} 13');
    expect(await m.ours.getMetricsAsJSON()).toEqual(await m.prom.getMetricsAsJSON());
  });

  test('a child is made once per label set and keeps counting; reset zeroes it, and the kept child counts on', async () => {
    const m = both();
    const labels = { source_cluster: 'east', destination_cluster: 'west', destination_service: 'demo/hello' };
    expect(m.ourCounter.labels({ ...labels, code: '200' })).toBe(m.ourCounter.labels({ ...labels, code: '200' }));
    const kept = m.ourCounter.labels({ ...labels, code: '200' });
    kept.inc();
    m.ourHistogram.labels(labels).observe(0.002);
    expect(await m.ours.metrics()).toContain('isthmus_requests_total{source_cluster="east",destination_cluster="west",destination_service="demo/hello",code="200"} 1');
    m.ours.resetMetrics();
    const zeroed = await m.ours.metrics();
    expect(zeroed).toContain('isthmus_requests_total{source_cluster="east",destination_cluster="west",destination_service="demo/hello",code="200"} 0');
    expect(zeroed).toContain('isthmus_request_duration_seconds_count{source_cluster="east",destination_cluster="west",destination_service="demo/hello"} 0');
    expect(zeroed).toContain('isthmus_request_duration_seconds_bucket{le="0.0025",source_cluster="east",destination_cluster="west",destination_service="demo/hello"} 0');
    // The child its holder kept still counts into what is scraped.
    kept.inc();
    expect(await m.ours.metrics()).toContain('isthmus_requests_total{source_cluster="east",destination_cluster="west",destination_service="demo/hello",code="200"} 1');
  });
});
