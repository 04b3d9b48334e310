// Isthmus dashboard: plain DOM, no build step. Draws /api/stream's overview documents
// (`Overview` in src/dashboard/overview.ts) and charts one pair from /api/series.
/* global uPlot */
'use strict';

const maxPoints = 300; // probe p50 per pair: 10 minutes at one push every 2 s
const seriesEveryMs = 5000; // /api/series has one point per 5 s step
const probeHistory = new Map(); // "from→to" → { t: number[], p50: (number|null)[] }
const trafficPairsSeen = new Set(); // "from→to" pairs that carried real requests since the tab opened
let trafficSeries = { key: '', t: [], p50: [], p99: [] };
let view = 'probes'; // which matrix: 'probes' or 'traffic'
let latest; // the last overview
let chart;
let lastGeneratedAt;
const drawn = new Map(); // section → JSON of what it last drew, to leave unchanged DOM alone

const $ = (id) => document.getElementById(id);
const svgNs = 'http://www.w3.org/2000/svg';

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(svgNs, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

/** True (and remembers) when `value` differs from what `section` drew last time. */
function changed(section, value) {
  const json = JSON.stringify(value);
  if (drawn.get(section) === json) return false;
  drawn.set(section, json);
  return true;
}

/** The colour classes of the legend: one set of thresholds for probes and real traffic. */
function latencyClass(ms) {
  if (ms === null || ms === undefined) return 'lat-none';
  if (ms < 5) return 'lat-good';
  if (ms < 50) return 'lat-warn';
  return 'lat-bad';
}

const isNum = (x) => typeof x === 'number' && Number.isFinite(x);
const fmt = (ms) => (!isNum(ms) ? '–' : ms < 10 ? ms.toFixed(2) : ms.toFixed(1));
const fmtRate = (rps) => (!isNum(rps) ? '–' : rps < 10 ? rps.toFixed(1) : rps.toFixed(0));
const fmtPct = (p) => (!isNum(p) ? '–' : p === 100 ? '100%' : `${p.toFixed(p >= 99 ? 2 : 1)}%`);
const fmtTime = (iso) => new Date(iso).toLocaleTimeString();
const pairKey = (from, to) => `${from}→${to}`;

/** 300 → "5m", 3600 → "1h", as `isthmus policy apply` writes windows. */
function fmtWindow(s) {
  if (s % 86400 === 0) return `${s / 86400}d`;
  if (s % 3600 === 0) return `${s / 3600}h`;
  return `${Math.round(s / 60)}m`;
}

/** 130 → "2m 10s". */
function fmtDuration(s) {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? ` ${s % 60}s` : ''}`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) ? ` ${Math.floor((s % 3600) / 60)}m` : ''}`;
}

// ---- clusters: map and list ----

/** Nodes on a ring; each link split at its middle, each half coloured by the probes from its end. */
function renderMap(o) {
  const probes = new Map(o.probes.map((p) => [pairKey(p.from, p.to), p]));
  const n = o.clusters.length;
  // The ring grows with the clusters so nodes, and the labels of the links meeting at one, keep apart.
  const r = n <= 1 ? 0 : Math.max(110, n * 24);
  const at = new Map(o.clusters.map((c, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
    return [c.name, { x: r * Math.cos(a), y: r * Math.sin(a), a }];
  }));
  const links = [];
  const labels = [];
  o.clusters.forEach((a, i) => o.clusters.slice(i + 1).forEach((b) => {
    const pa = at.get(a.name);
    const pb = at.get(b.name);
    const mid = { x: (pa.x + pb.x) / 2, y: (pa.y + pb.y) / 2 };
    // Labels beside the line, on the side away from the ring's centre, so they never cover it.
    const len = Math.hypot(pb.x - pa.x, pb.y - pa.y) || 1;
    let side = { x: -(pb.y - pa.y) / len, y: (pb.x - pa.x) / len };
    if (side.x * mid.x + side.y * mid.y < 0) side = { x: -side.x, y: -side.y };
    for (const [from, to, p0] of [[a, b, pa], [b, a, pb]]) {
      const p = probes.get(pairKey(from.name, to.name));
      const ms = p ? p.p50Ms : null;
      const noGateway = to.gateways === 0;
      links.push(svg('line', { x1: p0.x, y1: p0.y, x2: mid.x, y2: mid.y, class: `link ${noGateway ? 'no-gateway' : latencyClass(ms)}`, 'data-from': from.name, 'data-to': to.name },
        svg('title', {}, `${from.name} → ${to.name}: ${noGateway ? `${to.name} publishes no east-west gateway` : isNum(ms) ? `p50 ${fmt(ms)} ms, p99 ${fmt(p.p99Ms)} ms` : p?.lastError ? `failing: ${p.lastError}` : 'no probe data'}`)));
      // A half without data is dashed grey and says nothing more. A label sits on its half of the
      // line, its background centred on the line: the text is centred on the same point.
      if (isNum(ms) && !noGateway) {
        const text = `${fmt(ms)} ms`;
        const x = p0.x + (mid.x - p0.x) * 0.6;
        const y = p0.y + (mid.y - p0.y) * 0.6;
        const w = text.length * 5.8 + 8;
        labels.push(svg('g', { class: 'link-label', 'data-from': from.name, 'data-to': to.name },
          svg('rect', { x: x - w / 2, y: y - 8, width: w, height: 16, rx: 3 }),
          svg('text', { x, y, 'dominant-baseline': 'central', 'text-anchor': 'middle' }, text)));
      }
    }
  }));
  const nodes = o.clusters.map((c) => {
    const p = at.get(c.name);
    // Names sit outside the ring, away from the links; a down cluster says so under its name.
    const lx = p.x + Math.cos(p.a) * 22;
    const ly = p.y + Math.sin(p.a) * 22 + (Math.sin(p.a) < -0.5 && !c.alive ? -8 : 4);
    const anchor = Math.abs(Math.cos(p.a)) < 0.3 ? 'middle' : Math.cos(p.a) > 0 ? 'start' : 'end';
    return svg('g', { class: `node ${c.alive ? 'alive' : 'dead'}`, 'data-cluster': c.name, 'data-alive': String(c.alive) },
      svg('title', {}, `${c.name} (region ${c.region}): ${c.alive ? 'alive' : 'down'}, ${c.gateways} gateway${c.gateways === 1 ? '' : 's'}`),
      svg('circle', { cx: p.x, cy: p.y, r: 12 }),
      svg('text', { x: lx, y: ly, 'text-anchor': anchor, class: 'node-label' }, c.name,
        ...(c.alive ? [] : [svg('tspan', { x: lx, dy: '1.1em', class: 'node-down' }, 'down')])));
  });
  // Fit the drawing: room beside the nodes for names, above and below for names and labels.
  const xs = [...at.values()].map((p) => p.x);
  const ys = [...at.values()].map((p) => p.y);
  const [x0, x1] = [Math.min(...xs, 0) - 75, Math.max(...xs, 0) + 75];
  const [y0, y1] = [Math.min(...ys, 0) - 36, Math.max(...ys, 0) + 40];
  $('map').setAttribute('viewBox', `${x0} ${y0} ${x1 - x0} ${y1 - y0}`);
  $('map').replaceChildren(...links, ...labels, ...nodes);
}

function renderClusters(o) {
  if (!changed('clusters', [o.clusters, o.probes.map((p) => [p.from, p.to, p.p50Ms, p.p99Ms, p.lastError])])) return;
  renderMap(o);
  $('clusters').replaceChildren(...o.clusters.map((c) => el('li',
    { class: c.alive ? 'alive' : 'dead', 'data-cluster': c.name },
    el('span', { class: 'dot' }), el('strong', {}, c.name),
    el('span', { class: 'state' }, `${c.alive ? 'alive' : 'down'} · ${c.gateways} gw`))));
}

// ---- latency matrix ----

function probeCell(p, from, to, gateways) {
  if (from === to) return el('td', { class: 'self', 'data-view': 'probes' }, '·');
  if (gateways === 0) {
    // Nothing to probe is not a failing probe: the cluster has no way in from other clusters.
    return el('td', { class: 'cell no-gateway', 'data-view': 'probes', 'data-from': from, 'data-to': to, title: `${to} publishes no east-west gateway, so no other cluster can reach its services (isthmus join ${to} --gateway <host:port> --force, then start isthmus gateway)` }, 'no gateway');
  }
  const cell = el('td', { class: `cell ${latencyClass(p?.p50Ms)}`, 'data-view': 'probes', 'data-from': from, 'data-to': to });
  if (!p || p.p50Ms === null) {
    cell.append(p?.lastError ? 'failing' : 'no data');
    if (p?.lastError) cell.title = p.lastError;
  } else {
    cell.append(el('span', { class: 'ms' }, `${fmt(p.p50Ms)} / ${fmt(p.p99Ms)} ms`));
    cell.title = `${p.samples} probes, ${p.failures} failed, updated ${p.updatedAt}`;
  }
  if (p && p.failures > 0) cell.append(el('span', { class: 'sub' }, `${p.failures} failed`));
  return cell;
}

function trafficCell(t, from, to, windowSeconds) {
  const cell = el('td', { class: `cell ${latencyClass(t?.p50Ms)}${from === to ? ' same' : ''}`, 'data-view': 'traffic', 'data-from': from, 'data-to': to });
  if (!t || t.requests === 0) {
    cell.append('no traffic');
    cell.title = `no request from ${from} answered in ${to} in the last ${windowSeconds} s`;
    return cell;
  }
  cell.append(el('span', { class: 'ms' }, `${fmt(t.p50Ms)} / ${fmt(t.p99Ms)} ms`),
    el('span', { class: 'sub' }, `${fmtRate(t.rps)} req/s · ${fmtPct(t.successPercent)}`));
  cell.title = `${t.requests} requests from ${from}'s sidecars answered in ${to}, last ${windowSeconds} s`;
  return cell;
}

function renderMatrix(o) {
  const names = o.clusters.map((c) => c.name);
  const gateways = new Map(o.clusters.map((c) => [c.name, c.gateways]));
  const probes = new Map(o.probes.map((p) => [pairKey(p.from, p.to), p]));
  const traffic = new Map((o.traffic?.pairs ?? []).map((t) => [pairKey(t.from, t.to), t]));
  const windowSeconds = o.traffic?.windowSeconds ?? 60;
  $('matrix-note').textContent = view === 'probes'
    ? 'p50 / p99 ms of gateway probes, row → column'
    : `p50 / p99 ms of real requests over the last ${windowSeconds} s, row → column (diagonal: within the cluster)`;
  const head = el('tr', {}, el('th', {}, 'from \\ to'), ...names.map((n) => el('th', {}, n)));
  const rows = names.map((from) => el('tr', {}, el('th', {}, from), ...names.map((to) => (view === 'probes'
    ? probeCell(probes.get(pairKey(from, to)), from, to, gateways.get(to))
    : trafficCell(traffic.get(pairKey(from, to)), from, to, windowSeconds)))));
  $('matrix').dataset.view = view;
  $('matrix').replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
}

function setView(next) {
  view = next;
  for (const b of document.querySelectorAll('.switch button')) b.setAttribute('aria-pressed', String(b.dataset.view === view));
  if (latest) renderMatrix(latest);
}

// ---- time series ----

function record(o) {
  if (o.generatedAt === lastGeneratedAt) return;
  lastGeneratedAt = o.generatedAt;
  const t = Date.parse(o.generatedAt) / 1000;
  for (const p of o.probes) {
    const key = pairKey(p.from, p.to);
    let h = probeHistory.get(key);
    if (!h) probeHistory.set(key, (h = { t: [], p50: [] }));
    h.t.push(t);
    h.p50.push(p.p50Ms);
    if (h.t.length > maxPoints) { h.t.shift(); h.p50.shift(); }
  }
  for (const p of o.traffic?.pairs ?? []) trafficPairsSeen.add(pairKey(p.from, p.to));
  const select = $('pair');
  const keys = [...new Set([...probeHistory.keys(), ...trafficPairsSeen])].sort();
  if (keys.join() !== [...select.options].map((x) => x.value).join()) {
    const chosen = select.value;
    select.replaceChildren(...keys.map((k) => el('option', { value: k }, k.replace('→', ' → '))));
    // First visit: a pair between two clusters, which is what the page is about.
    select.value = keys.includes(chosen) ? chosen : (keys.find((k) => k.split('→')[0] !== k.split('→')[1]) ?? keys[0] ?? '');
    if (select.value !== chosen) void fetchSeries();
  }
}

async function fetchSeries() {
  const key = $('pair').value;
  if (!key) return;
  const [from, to] = key.split('→');
  try {
    const res = await fetch(`/api/series?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&minutes=10`);
    if (!res.ok) return;
    const { points, probes } = await res.json();
    if ($('pair').value !== key) return; // the choice moved on while we waited
    // The server keeps the probe history too (an hour): a reload or a new pair starts with it.
    if (Array.isArray(probes) && probes.length > 0) probeHistory.set(key, { t: probes.map((p) => p.t / 1000), p50: probes.map((p) => p.p50Ms) });
    trafficSeries = { key, t: points.map((p) => p.t / 1000), p50: points.map((p) => p.p50Ms), p99: points.map((p) => p.p99Ms) };
    drawSeries();
  } catch {
    // The stream's indicator already says when the server is gone; keep the last points.
  }
}

function drawSeries() {
  const key = $('pair').value;
  const h = probeHistory.get(key) ?? { t: [], p50: [] };
  const s = trafficSeries.key === key ? trafficSeries : { t: [], p50: [], p99: [] };
  // Alignment gaps become `undefined` (drawn over); real nulls (no data in a step) stay gaps.
  const data = uPlot.join([[h.t, h.p50], [s.t, s.p50, s.p99]]);
  if (!chart) {
    const size = () => ({ width: Math.max(300, $('series').clientWidth), height: 240 });
    chart = new uPlot({
      ...size(),
      series: [{},
        { label: 'probe p50 ms', stroke: '#0969da', width: 2, value: (u, v) => fmt(v) },
        { label: 'traffic p50 ms', stroke: '#8250df', width: 2, value: (u, v) => fmt(v) },
        { label: 'traffic p99 ms', stroke: '#8250df', width: 1, dash: [6, 4], value: (u, v) => fmt(v) }],
      axes: [{}, { label: 'ms' }],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max ?? 1) * 1.1] } },
    }, data, $('series'));
    window.addEventListener('resize', () => chart.setSize(size()));
  } else {
    chart.setData(data);
  }
}

function choosePair(key) {
  if (![...$('pair').options].some((o) => o.value === key)) return;
  $('pair').value = key;
  drawSeries();
  void fetchSeries();
}

// ---- services ----

function servedFrom(s) {
  // A TCP service has connections, not requests: where they went, as its own table says.
  const t = s.traffic ?? (s.tcp && s.tcp.servedFrom.length > 0 ? s.tcp : null);
  if (!t) return el('span', { class: 'muted', title: 'no requests in the window; these clusters export it' }, s.clusters.map((c) => c.cluster).join(', '));
  if (t.servedFrom.length === 0) return el('span', { class: 'bad-text' }, 'no answer');
  // Never round a share to 0% or 100% that is not.
  const pct = (share) => (share > 0 && share < 0.005 ? '<1' : share < 1 && share >= 0.995 ? '>99' : String(Math.round(share * 100)));
  return t.servedFrom.map((x) => `${x.cluster} ${pct(x.share)}%`).join(', ');
}

/** The policies in force on a service (isthmus explain says the same), and a split's live shares. */
function policyBadges(p) {
  if (!p) return [];
  const badges = p.badges.map((b) => el('span', { class: `badge policy policy-${b.tone}`, title: b.title, 'data-policy': b.tone }, b.label));
  const live = p.live ? [el('span', { class: 'muted live-split', 'data-col': 'live-split' }, `live ${p.live.map((x) => `${x.backend.slice(x.backend.indexOf('/') + 1)} ${Math.round(x.share * 100)}%`).join(' / ')}`)] : [];
  return [' ', ...badges.flatMap((b) => [b, ' ']), ...live];
}

function renderServices(o) {
  if (!changed('services', [o.clusters.map((c) => c.name), o.services])) return;
  const names = o.clusters.map((c) => c.name);
  const head = el('tr', {},
    el('th', {}, 'service'), el('th', {}, 'served from'), el('th', {}, 'req/s'), el('th', {}, 'success'),
    el('th', {}, 'p50 ms'), el('th', {}, 'p99 ms'), ...names.map((n) => el('th', { class: 'cluster-col' }, n)));
  const rows = o.services.map((s) => {
    const byCluster = new Map(s.clusters.map((c) => [c.cluster, c]));
    const t = s.traffic;
    return el('tr', { 'data-service': `${s.namespace}/${s.name}` },
      el('td', { 'data-col': 'service' }, el('a', { href: `#service=${s.namespace}/${s.name}`, 'data-open-service': `${s.namespace}/${s.name}` }, `${s.namespace}/${s.name}`),
        ...((s.protocols ?? []).includes('tcp') ? [' ', el('span', { class: 'badge protocol', 'data-protocol': 'tcp', title: 'a TCP service: its connections and bytes are in the TCP services table below' }, 'tcp')] : []),
        ...policyBadges(s.policies)),
      el('td', { 'data-col': 'served-from' }, servedFrom(s)),
      el('td', { 'data-col': 'rate', class: 'num' }, fmtRate(t?.rps)),
      el('td', { 'data-col': 'success', class: `num${isNum(t?.successPercent) && t.successPercent < 99 ? ' bad-text' : ''}` }, fmtPct(t?.successPercent)),
      el('td', { 'data-col': 'p50', class: 'num' }, fmt(t?.p50Ms)),
      el('td', { 'data-col': 'p99', class: 'num' }, fmt(t?.p99Ms)),
      ...names.map((n) => {
        const c = byCluster.get(n);
        if (!c) return el('td', { class: 'absent', 'data-cluster': n }, '–');
        return el('td', { class: c.healthy === 0 ? 'down' : c.healthy < c.total ? 'partial' : '', 'data-cluster': n }, `${c.healthy}/${c.total}`);
      }));
  });
  $('services').replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
}

/** Bytes per second in powers of 1000, as `isthmus stat` prints them. */
function fmtBytes(perSecond) {
  if (!isNum(perSecond)) return '–';
  if (perSecond < 1000) return `${Math.round(perSecond)} B/s`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = perSecond / 1000;
  let unit = 0;
  while (v >= 1000 && unit < units.length - 1) { v /= 1000; unit += 1; }
  return `${v.toFixed(1)} ${units[unit]}/s`;
}

/** TCP services (a port declared tcp, or connections seen): connections and bytes through the callers' fixed listeners. */
function renderTcp(o) {
  const tcp = o.services.filter((s) => s.tcp || (s.protocols ?? []).includes('tcp'));
  if (!changed('tcp', tcp)) return;
  $('tcp-section').hidden = tcp.length === 0;
  const head = el('tr', {},
    el('th', {}, 'service'), el('th', {}, 'served from'), el('th', {}, 'conn/s'), el('th', {}, 'established'),
    el('th', {}, 'open'), el('th', {}, 'sent'), el('th', {}, 'received'));
  const rows = tcp.map((s) => {
    const t = s.tcp;
    return el('tr', { 'data-service': `${s.namespace}/${s.name}` },
      el('td', { 'data-col': 'service' }, `${s.namespace}/${s.name}`),
      el('td', { 'data-col': 'served-from' }, servedFrom({ ...s, traffic: null })),
      el('td', { 'data-col': 'conn-rate', class: 'num' }, fmtRate(t?.connectionsPerSecond)),
      el('td', { 'data-col': 'established', class: `num${isNum(t?.successPercent) && t.successPercent < 99 ? ' bad-text' : ''}` }, fmtPct(t?.successPercent)),
      el('td', { 'data-col': 'open', class: 'num' }, t ? String(t.open) : '–'),
      el('td', { 'data-col': 'sent', class: 'num', title: 'bytes the callers sent per second' }, fmtBytes(t?.sentBytesPerSecond)),
      el('td', { 'data-col': 'received', class: 'num', title: 'bytes the callers received per second' }, fmtBytes(t?.receivedBytesPerSecond)));
  });
  $('tcp').replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
}

// ---- events ----

const eventTone = {
  failover: 'warn', ejection: 'warn', 'cluster-down': 'bad', 'slo-violated': 'bad',
  failback: 'good', 'cluster-up': 'good', 'slo-resolved': 'good', unreachable: 'bad', reachable: 'good',
  'authz-denied': 'bad',
  'rollout-step': 'warn', 'rollout-succeeded': 'good', 'rollout-rolled-back': 'bad',
};

function renderEvents(o) {
  const events = o.events ?? [];
  if (!changed('events', events)) return;
  $('events-note').textContent = events.length ? `newest first · ${events.length} shown` : 'newest first';
  if (events.length === 0) {
    $('events').replaceChildren(el('li', { class: 'empty' }, 'No events yet. Failovers, ejections, clusters going down or coming back, gateways this cluster cannot reach, SLOs missed or met again, and callers refused by authorization appear here.'));
    return;
  }
  $('events').replaceChildren(...events.map((e) => el('li', {
    class: `event tone-${eventTone[e.kind] ?? 'none'} kind-${e.kind}`, 'data-kind': e.kind, 'data-service': e.service, 'data-id': `${e.cluster}/${e.id}`,
  },
  el('time', { datetime: e.at, title: e.at }, fmtTime(e.at)),
  el('span', { class: `badge tone-${eventTone[e.kind] ?? 'none'}` }, e.kind),
  el('span', { class: 'who', title: 'reported by' }, e.cluster),
  el('span', { class: 'summary' }, e.summary),
  (e.count ?? 1) > 1 ? el('span', { class: 'count', title: `${e.count} reports of the same change` }, `×${e.count}`) : null)));
}

// ---- SLOs ----

function describeObjective(ob) {
  const parts = [
    ...(ob.latency ? [`p${ob.latency.percentile} < ${ob.latency.belowMs} ms`] : []),
    ...(isNum(ob.successPercent) ? [`${ob.successPercent}% success`] : []),
  ];
  return `${parts.join(' and ')} over ${fmtWindow(ob.windowSeconds)}`;
}

function burnCell(s) {
  const one = (value, label) => el('span', { class: `burn${isNum(value) && value > 1 ? ' bad-text' : ''}` },
    el('b', {}, isNum(value) ? value.toFixed(2) : '–'), ` ${label}`);
  return el('td', { 'data-col': 'burn', title: '1 spends the error budget exactly over the window; above 1 the objective is being missed; – is too few requests to say' },
    one(s.burnRate.window, `over ${fmtWindow(s.objective.windowSeconds)}`), el('br'), one(s.burnRate.short, `last ${fmtWindow(Math.min(300, s.objective.windowSeconds))}`));
}

function coveredCell(s) {
  const share = Math.min(1, s.coveredSeconds / s.objective.windowSeconds);
  return el('td', { 'data-col': 'covered', title: 'how much of the window this dashboard has history for; it starts when the federation starts' },
    `${fmtDuration(s.coveredSeconds)} of ${fmtWindow(s.objective.windowSeconds)}`,
    el('span', { class: 'bar' }, el('span', { style: `width: ${(share * 100).toFixed(0)}%` })));
}

function alertedCell(s) {
  const a = s.alerted;
  const verb = s.webhook ? 'paged' : 'recorded (no webhook)';
  if (!a) return el('td', { 'data-col': 'paged', class: 'muted' }, s.webhook ? 'never paged' : 'no webhook');
  return el('td', { 'data-col': 'paged', class: a.state === 'violated' ? 'bad-text' : '' },
    a.state === 'violated' ? `${verb}: missed since ${fmtTime(a.since)}` : `resolved since ${fmtTime(a.since)}`,
    el('small', {}, ` by ${a.by}`));
}

function renderSlos(o) {
  const slos = o.slos ?? [];
  if (!changed('slos', slos)) return;
  if (slos.length === 0) {
    $('slos').replaceChildren(el('p', { class: 'empty' }, 'No service level objectives. Write one as YAML (kind: ServiceLevelObjective; see ',
      el('code', {}, 'isthmus policy apply --help'), ') and apply it with ', el('code', {}, 'isthmus policy apply -f slo.yaml'), '.'));
    return;
  }
  const head = el('tr', {}, ...['objective', 'service', 'target', 'state', 'burn rate', 'observed', 'window covered', 'webhook'].map((h) => el('th', {}, h)));
  const rows = slos.map((s) => {
    const ob = s.observed;
    const latency = s.objective.latency ? `p${s.objective.latency.percentile} ${fmt(ob.latencyMs)} ms · ` : '';
    return el('tr', { 'data-slo': `${s.namespace}/${s.name}`, 'data-state': s.state },
      el('td', { 'data-col': 'name' }, `${s.namespace}/${s.name}`),
      el('td', { 'data-col': 'service' }, `${s.namespace}/${s.service}`),
      el('td', { 'data-col': 'objective' }, describeObjective(s.objective), el('small', {}, ` (≥ ${s.objective.minRequests} requests)`)),
      el('td', { 'data-col': 'state' }, el('span', { class: `badge state-${s.state}` }, s.state)),
      burnCell(s),
      el('td', { 'data-col': 'observed' }, `${latency}${fmtPct(ob.successPercent)} success · ${ob.requests} requests`),
      coveredCell(s),
      alertedCell(s));
  });
  $('slos').replaceChildren(el('table', {}, el('thead', {}, head), el('tbody', {}, ...rows)));
}

// ---- the stream ----

function render(o) {
  latest = o;
  $('served-by').textContent = `served by ${o.servedBy} · catalog r${o.catalogRevision} · ${new Date(o.generatedAt).toLocaleTimeString()}`;
  renderClusters(o);
  renderMatrix(o);
  renderServices(o);
  renderTcp(o);
  renderSlos(o);
  renderEvents(o);
  record(o);
  drawSeries();
}

function connect() {
  const source = new EventSource('/api/stream');
  source.addEventListener('open', () => { $('conn').className = 'conn up'; $('conn').textContent = 'live'; });
  source.addEventListener('error', () => {
    $('conn').className = 'conn down';
    $('conn').textContent = 'reconnecting…';
    // A refused stream is closed for good: say why when it is the missing operator credential.
    if (source.readyState === EventSource.CLOSED) {
      void fetch('/api/overview').then((res) => {
        if (res.status === 401 || res.status === 403) $('conn').textContent = 'sign in: open /?token=<the output of isthmus operator token>';
        else setTimeout(connect, 2000);
      }, () => setTimeout(connect, 2000));
    }
  });
  source.addEventListener('overview', (e) => render(JSON.parse(e.data)));
}

// ---- the service page (manager view) ----

let openService; // "<ns>/<name>" shown on the service page, or undefined
const pct = (share) => `${Math.round(share * 100)}%`;

async function showService(key) {
  openService = key;
  $('service-page').hidden = false;
  $('service-name').textContent = key;
  await refreshService(true);
}

function closeService() {
  openService = undefined;
  $('service-page').hidden = true;
  if (location.hash.startsWith('#service=')) history.replaceState(null, '', location.pathname);
}

/** `full`: draw the page anew (after opening it or a write); else only the live split moves, so an edit in progress is kept. */
async function refreshService(full) {
  const key = openService;
  if (!key) return;
  const res = await fetch(`/api/services/${key}`);
  if (openService !== key) return;
  if (!res.ok) {
    $('service-body').replaceChildren(el('p', { class: 'edit-error' }, res.status === 401 || res.status === 403 ? 'sign in: open /?token=<the output of isthmus operator token>' : `the service could not be read (${res.status})`));
    return;
  }
  const d = await res.json();
  renderRollout(key, d.rollout, d.writable, full);
  const live = new Map((d.live ?? []).map((x) => [x.backend, x.share]));
  // Drawn anew when the splits themselves changed (a rollout's step, another operator) or the rollout's phase did.
  const drawnFrom = JSON.stringify([key, d.splits, d.rollout?.record.phase ?? 'none']);
  if (!full && $('service-body').dataset.drawnFrom === drawnFrom) {
    for (const span of document.querySelectorAll('#service-body [data-live-backend]')) {
      const share = live.get(span.dataset.liveBackend);
      span.textContent = share === undefined ? '–' : pct(share);
    }
    return;
  }
  $('service-body').dataset.service = key;
  $('service-body').dataset.drawnFrom = drawnFrom;
  // A TCP service's traffic is connections: say what of this page applies to them.
  const tcp = (latest?.services ?? []).some((s) => `${s.namespace}/${s.name}` === key && (s.protocols ?? []).includes('tcp'));
  $('service-body').replaceChildren(
    ...(tcp ? [el('p', { class: 'note', 'data-section': 'protocol' }, `${key} is a TCP service: its traffic is connections (the TCP services table). Authorization applies as they arrive, by the caller's identity (rules with from only); rollouts, splits, routes, faults, retries and rate limits act on HTTP requests, not on its connections.`)] : []),
    el('h3', {}, 'Splits'), ...(d.splits.length ? d.splits.map((sp) => splitEditor(key, sp, live, d.writable, rolloutActive && d.rollout?.record.split === sp.policy && sp.kind === 'TrafficSplit')) : [el('p', { class: 'muted' }, 'no HTTPRoute or TrafficSplit routes this service')]),
    el('h3', {}, 'Routes'), list(d.routes.map((r) => `${r.policy}: ${r.match} → ${r.backends.map((b) => `${b.backend.slice(b.backend.indexOf('/') + 1)} ${b.percent}%`).join(' / ')}${r.timeoutMs !== undefined ? `, timeout ${r.timeoutMs} ms` : ''}`), 'routes', 'every request goes to the service itself'),
    el('h3', {}, 'Faults'), ...(d.faults.length ? d.faults.map((f) => faultEditor(key, f, d.writable)) : [el('p', { class: 'muted' }, 'no FaultInjection on this service')]),
    el('h3', {}, 'Retries, circuit breakers, rate limits, failover'), list(d.resilience.filter((r) => r.kind !== 'FaultInjection').map((r) => `${r.kind} — ${r.settings}`), 'resilience', 'none: the built-in retries and no limits (docs/traffic-policy.md)'),
    el('h3', {}, 'Authorization'), d.authorization ? list([`${d.authorization.allowList ? 'allow list' : 'deny rules only'}`, ...d.authorization.rules, ...d.authorization.problems], 'authorization') : el('p', { class: 'muted', 'data-section': 'authorization' }, 'no authorization policy: the namespace default applies'));
}

function list(lines, section, none) {
  if (lines.length === 0) return el('p', { class: 'muted', 'data-section': section }, none);
  return el('ul', { 'data-section': section }, ...lines.map((l) => el('li', {}, l)));
}

/** `owned`: the running rollout's own split, which its driver rewrites at every step; edited from the rollout panel only. */
function splitEditor(key, sp, live, writable, owned) {
  const id = `${sp.kind}/${sp.policy}/${sp.rule}`;
  const total = sp.backends.reduce((n, b) => n + b.weight, 0);
  const rows = sp.backends.map((b, i) => el('tr', { 'data-backend': b.backend },
    el('td', {}, b.backend.slice(b.backend.indexOf('/') + 1)),
    el('td', {}, el('input', { type: 'number', min: '0', step: '1', value: String(b.weight), 'data-weight-index': String(i), 'aria-label': `weight of ${b.backend}` })),
    el('td', { class: 'muted' }, total > 0 ? pct(b.weight / total) : '–'),
    // The live split is the service's, among the backends of its weighted rules: a one-backend rule has none.
    el('td', {}, sp.backends.length > 1 ? el('span', { 'data-live-backend': b.backend }, live.has(b.backend) ? pct(live.get(b.backend)) : '–') : '–')));
  const status = el('p', { class: 'edit-status' });
  const save = el('button', { type: 'button', 'data-action': 'save-weights', disabled: !writable || owned }, 'save weights');
  const box = el('div', { class: 'split', 'data-split': id },
    el('p', {}, `${sp.kind} ${sp.policy}${sp.kind === 'HTTPRoute' ? ` rule ${sp.rule}` : ''}: ${sp.match}`,
      owned ? el('small', { class: 'muted', 'data-owned-by': 'rollout' }, ' (the rollout\'s: it sets these weights at every step; pause or abort it above)') : null),
    el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'backend'), el('th', {}, 'weight'), el('th', {}, 'share'), el('th', {}, 'live (60 s)'))), el('tbody', {}, ...rows)),
    save, status);
  save.addEventListener('click', () => {
    // Sent as typed: the policy's own checks judge each weight and name the bad one's path.
    const weights = [...box.querySelectorAll('input[data-weight-index]')].map((input) => (input.value.trim() !== '' && Number.isFinite(Number(input.value)) ? Number(input.value) : input.value));
    void sendEdit(key, 'weights', { kind: sp.kind, policy: sp.policy, rule: sp.rule, weights }, status);
  });
  return box;
}

function faultEditor(key, f, writable) {
  const current = f.abortPercent ?? f.delayPercent ?? 0;
  const on = el('input', { type: 'checkbox', 'data-fault-on': f.policy, checked: f.on });
  const percent = el('input', { type: 'number', min: '0', max: '100', value: String(current > 0 ? current : 10), 'data-fault-percent': f.policy, 'aria-label': `percent of ${f.policy}` });
  const status = el('p', { class: 'edit-status' });
  const apply = el('button', { type: 'button', 'data-action': 'apply-fault', disabled: !writable }, 'apply');
  apply.addEventListener('click', () => {
    const n = Number(percent.value);
    void sendEdit(key, 'fault', on.checked ? { policy: f.policy, on: true, percent: percent.value.trim() !== '' && Number.isFinite(n) ? n : percent.value } : { policy: f.policy, on: false }, status);
  });
  return el('div', { class: 'fault', 'data-fault': f.policy },
    el('p', {}, `FaultInjection ${f.policy}: ${f.settings} `, el('span', { class: `badge ${f.on ? 'policy-fault' : 'policy-other'} policy` }, f.on ? 'on' : 'off')),
    el('label', {}, on, ' on, for '), percent, ' % of requests ', apply, status);
}

async function sendEdit(key, what, body, status) {
  status.className = 'edit-status';
  status.textContent = 'saving…';
  try {
    const res = await fetch(`/api/services/${key}/${what}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) {
      const e = answer.error ?? {};
      status.className = 'edit-status edit-error';
      status.dataset.code = e.code ?? '';
      // A policy's problems name each bad field's path (e.g. /spec/rules/1/backendRefs/0/weight).
      const fields = Array.isArray(e.details) ? e.details.map((p) => `${p.path}: ${p.message}`).join('\n') : '';
      status.textContent = `${res.status} ${e.code ?? ''}\n${fields || e.message || ''}${res.status === 401 ? '\nsign in: open /?token=<the output of isthmus operator token>' : ''}`;
      return;
    }
    status.className = 'edit-status edit-ok';
    status.dataset.code = '';
    status.textContent = `applied: ${answer.applied.map((a) => `${a.kind} ${a.name} ${a.change}`).join(', ')}`;
    const note = status.textContent;
    await refreshService(true);
    // The page was drawn anew: say what happened on the new editor too.
    const again = document.querySelector(`#service-body [data-${what === 'fault' ? 'fault' : 'split'}="${what === 'fault' ? body.policy : `${body.kind}/${body.policy}/${body.rule}`}"] .edit-status`);
    if (again) { again.className = 'edit-status edit-ok'; again.textContent = note; }
  } catch (err) {
    status.className = 'edit-status edit-error';
    status.textContent = `not sent: ${err.message}`;
  }
}

// ---- the rollout panel ----

let rolloutDeadline; // { at: ms when the step's hold ends, phase } for the ticking "left" figure
let rolloutActive = false; // a running rollout refreshes the page every 2 s instead of 5 s
const endedWords = { succeeded: 'succeeded', 'rolled-back': 'rolled back', aborted: 'aborted' };
const phaseTone = { progressing: 'warn', paused: 'none', succeeded: 'good', 'rolled-back': 'bad', aborted: 'none' };

/** The rollout's state (drawn on every refresh) and its controls (drawn anew only when the phase changes, so a half-typed form survives). */
function renderRollout(key, panel, writable, full) {
  const r = panel?.record;
  rolloutActive = r ? r.phase === 'progressing' || r.phase === 'paused' : false;
  const box = $('rollout-panel');
  box.dataset.rollout = r ? r.phase : 'none';
  const state = r ? rolloutState(panel) : [el('p', { class: 'muted', 'data-section': 'rollout-state' }, 'rollout: none. Start one below to move this service\'s requests to a new version step by step, each step judged by an objective.')];
  if (changed('rollout-state', [key, panel && { ...panel, progress: panel.progress && { ...panel.progress, heldMs: 0, remainingMs: 0 } }])) {
    $('rollout-state').replaceChildren(...state);
    // A note of what the operator just did ("started: progressing") is stale once the rollout moved on; a refusal stays.
    const note = document.querySelector('#rollout-controls .edit-ok');
    if (note && note.dataset.at && Date.now() - Number(note.dataset.at) > 3000) { note.textContent = ''; note.className = 'edit-status'; }
  }
  rolloutDeadline = panel?.progress ? { at: Date.now() + panel.progress.remainingMs, phase: r.phase, left: panel.progress.remainingMs } : undefined;
  tickRollout();
  if (changed('rollout-controls', [key, r?.phase ?? 'none', r?.createdAt, writable]) || full) {
    $('rollout-controls').replaceChildren(...rolloutControls(key, panel, writable));
  }
}

function rolloutState(panel) {
  const r = panel.record;
  const p = panel.progress;
  const current = p ? p.step : -1;
  const ended = r.phase in endedWords;
  const lastBegun = r.history.at(-1)?.step ?? -1;
  const steps = el('ol', { class: 'rollout-steps', 'data-section': 'rollout-steps' }, ...r.steps.map((weight, i) => {
    const begun = r.history.find((h) => h.step === i);
    let stepState = 'pending';
    if (i === current) stepState = 'current';
    else if (i < lastBegun) stepState = 'done';
    else if (i === lastBegun && ended) stepState = r.phase === 'succeeded' ? 'done' : 'stopped';
    return el('li', { class: `rollout-step step-${stepState}`, 'data-step': String(i), 'data-state': stepState, 'aria-current': i === current ? 'step' : undefined,
      title: begun ? `begun ${begun.startedAt} by ${begun.by}` : 'not begun' },
    el('b', {}, `${weight}%`), el('small', {}, stepState === 'current' ? ' now' : stepState === 'stopped' ? ' stopped here' : begun ? ` ${fmtTime(begun.startedAt)}` : ''));
  }));
  const lines = [
    el('p', { 'data-section': 'rollout-summary' }, el('span', { class: `badge tone-${phaseTone[r.phase]}`, 'data-phase': r.phase }, r.phase), ' ',
      el('b', {}, r.from), ' → ', el('b', {}, r.to), ` · ${r.steps.join(' / ')}% every ${fmtDuration(r.intervalSeconds)} · split `, el('code', {}, r.split)),
    steps,
  ];
  if (p) {
    lines.push(el('p', { 'data-section': 'rollout-step' }, `step ${p.step + 1} of ${p.of}: ${p.weight}% of requests to ${r.to} · `,
      el('span', { 'data-time-left': '' }, ''), r.phase === 'paused' ? ' (paused: the hold does not count on)' : ''));
  }
  if (panel.held) lines.push(el('p', { class: 'waiting', 'data-section': 'rollout-held' }, panel.held));
  const ob = panel.objective;
  if (!ob) {
    lines.push(el('p', { class: 'bad-text', 'data-section': 'rollout-objective' }, `objective ${r.objective}: not stored. The step is held until it is applied again (isthmus policy apply) or the rollout is aborted.`));
  } else {
    const burn = isNum(ob.burnRate) ? ob.burnRate.toFixed(2) : '–';
    lines.push(el('p', { 'data-section': 'rollout-objective' }, `objective ${r.objective} on ${ob.service}: burn rate `,
      el('b', { class: isNum(ob.burnRate) && ob.burnRate > 1 ? 'bad-text' : '', 'data-burn-rate': burn }, burn),
      ` over ${fmtWindow(ob.windowSeconds)} (${ob.requests} requests; ${ob.minRequests} needed for a verdict; above 1 rolls back)`));
  }
  if (r.ended) {
    lines.push(el('p', { class: r.phase === 'rolled-back' ? 'bad-text' : '', 'data-section': 'rollout-ended' },
      `${endedWords[r.phase]}: ${r.ended.reason} (${r.ended.by}, ${fmtTime(r.ended.at)})`));
  }
  return lines;
}

/** The ticking "12s left of 30s": from the server's figure, counted down here between refreshes. */
function tickRollout() {
  const span = document.querySelector('#rollout-state [data-time-left]');
  if (!span || !rolloutDeadline) return;
  const left = rolloutDeadline.phase === 'paused' ? rolloutDeadline.left : Math.max(0, rolloutDeadline.at - Date.now());
  span.textContent = `${fmtDuration(Math.ceil(left / 1000))} left in this step`;
}

function rolloutControls(key, panel, writable) {
  const r = panel?.record;
  const status = el('p', { class: 'edit-status', 'data-section': 'rollout-status' });
  const button = (verb, label) => {
    const b = el('button', { type: 'button', 'data-action': `rollout-${verb}`, disabled: !writable }, label);
    b.addEventListener('click', () => void sendRollout(key, `rollout/${verb}`, {}, status));
    return b;
  };
  if (r && (r.phase === 'progressing' || r.phase === 'paused')) {
    return [el('p', {}, r.phase === 'progressing' ? button('pause', 'pause') : button('resume', 'resume'), ' ', button('abort', 'abort: every request back to ' + r.from)), status];
  }
  const [namespace] = key.split('/');
  const objectives = (latest?.slos ?? []).filter((s) => s.namespace === namespace);
  const field = (name, label, attrs) => el('label', {}, `${label} `, el('input', { name, 'aria-label': label, ...attrs }));
  const form = el('form', { class: 'rollout-start', 'data-section': 'rollout-start' },
    field('to', 'to', { placeholder: 'new version, e.g. hello-v2', required: true }),
    field('from', 'from', { placeholder: r?.phase === 'succeeded' ? r.to : `default: ${key.split('/')[1]}` }),
    field('steps', 'steps', { value: '10,50,100', size: '10' }),
    field('interval', 'interval', { value: '1m', size: '5' }),
    field('objective', 'objective', { list: 'rollout-objectives', placeholder: 'an objective on the new version', required: true }),
    el('datalist', { id: 'rollout-objectives' }, ...objectives.map((s) => el('option', { value: s.name }, `${s.name} (on ${s.service})`))),
    el('button', { type: 'submit', 'data-action': 'rollout-start', disabled: !writable }, 'start rollout'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const value = (name) => form.elements[name].value.trim();
    // Sent as typed: the server reads steps and interval as `isthmus rollout start` does and names a bad field.
    void sendRollout(key, 'rollout', { to: value('to'), ...(value('from') ? { from: value('from') } : {}), steps: value('steps'), interval: value('interval'), objective: value('objective') }, status);
  });
  return [form, status];
}

async function sendRollout(key, what, body, status) {
  status.className = 'edit-status';
  status.textContent = 'sending…';
  try {
    const res = await fetch(`/api/services/${key}/${what}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) {
      const e = answer.error ?? {};
      status.className = 'edit-status edit-error';
      status.dataset.code = e.code ?? '';
      // The message names the bad field as the JSON has it (steps, interval, to, objective).
      status.textContent = `${res.status} ${e.code ?? ''}\n${e.message ?? ''}${res.status === 401 ? '\nsign in: open /?token=<the output of isthmus operator token>' : ''}`;
      return;
    }
    await refreshService(true);
    const again = document.querySelector('#rollout-controls [data-section="rollout-status"]');
    if (again) { again.className = 'edit-status edit-ok'; again.dataset.code = ''; again.dataset.at = String(Date.now()); again.textContent = `${what === 'rollout' ? 'started' : what.slice('rollout/'.length)}: ${answer.rollout.phase}`; }
  } catch (err) {
    status.className = 'edit-status edit-error';
    status.textContent = `not sent: ${err.message}`;
  }
}

function serviceFromHash() {
  const m = /^#service=([a-z0-9-]+\/[a-z0-9-]+)$/.exec(location.hash);
  if (m) void showService(m[1]);
}

$('service-close').addEventListener('click', closeService);
window.addEventListener('hashchange', serviceFromHash);
let serviceTicks = 0;
setInterval(() => {
  serviceTicks += 1;
  tickRollout();
  if (serviceTicks % (rolloutActive ? 2 : 5) === 0) void refreshService(false);
}, 1000);
serviceFromHash();

$('pair').addEventListener('change', () => choosePair($('pair').value));
for (const b of document.querySelectorAll('.switch button')) b.addEventListener('click', () => setView(b.dataset.view));
$('matrix').addEventListener('click', (e) => {
  const cell = e.target.closest('td[data-from]');
  if (cell) choosePair(pairKey(cell.dataset.from, cell.dataset.to));
});
setInterval(() => void fetchSeries(), seriesEveryMs);
connect();
