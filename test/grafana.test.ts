import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';

const dashboard = JSON.parse(readFileSync(new URL('../deploy/grafana/isthmus-mesh.json', import.meta.url), 'utf8'));
const documented = new Set([...readFileSync(new URL('../docs/metrics.md', import.meta.url), 'utf8').matchAll(/^\| `(isthmus_[a-z_]+)` \|/gm)].map((m) => m[1]));

test('every Grafana query uses only metrics that docs/metrics.md documents', () => {
  const exprs: string[] = dashboard.panels.flatMap((p: { targets: { expr: string }[] }) => p.targets.map((t) => t.expr));
  expect(exprs.length).toBeGreaterThan(10);
  for (const expr of exprs) {
    const names = [...expr.matchAll(/\b(isthmus_[a-z_]+?)(?:_bucket|_sum|_count)?\b(?=[{[(\s)]|$)/g)].map((m) => m[1]);
    expect(names.length, expr).toBeGreaterThan(0);
    for (const name of names) expect(documented, `${name} in: ${expr}`).toContain(name);
  }
});

test('panels do not overlap and every panel has a title and a Prometheus data source', () => {
  const cells = new Set<string>();
  for (const p of dashboard.panels) {
    expect(p.title).toBeTruthy();
    expect(p.datasource.type).toBe('prometheus');
    for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x += 1) {
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y += 1) {
        expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
        cells.add(`${x},${y}`);
      }
    }
  }
});
