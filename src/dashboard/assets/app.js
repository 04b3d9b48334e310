// Isthmus dashboard: plain DOM, no build step. Draws /api/stream's overview documents.
/* global uPlot */
'use strict';

const maxPoints = 300; // per pair: 10 minutes at one push every 2 s
const history = new Map(); // "from→to" → { t: number[], p50: (number|null)[] }
let chart;
let lastGeneratedAt;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function latencyClass(ms) {
  if (ms === null || ms === undefined) return 'lat-none';
  if (ms < 5) return 'lat-good';
  if (ms < 50) return 'lat-warn';
  return 'lat-bad';
}

const fmt = (ms) => (ms === null || ms === undefined ? '–' : ms < 10 ? ms.toFixed(2) : ms.toFixed(1));

function renderClusters(o) {
  $('clusters').replaceChildren(...o.clusters.map((c) => el('li',
    { class: c.alive ? 'alive' : 'dead', 'data-cluster': c.name },
    el('span', { class: 'dot' }), el('strong', {}, c.name),
    el('span', { class: 'state' }, `${c.alive ? 'alive' : 'down'} · ${c.gateways} gw`))));
}

function renderMatrix(o) {
  const names = o.clusters.map((c) => c.name);
  const byPair = new Map(o.probes.map((p) => [`${p.from}→${p.to}`, p]));
  const head = el('tr', {}, el('th', {}, 'from \\ to'), ...names.map((n) => el('th', {}, n)));
  const rows = names.map((from) => el('tr', {}, el('th', {}, from), ...names.map((to) => {
    if (from === to) return el('td', { class: 'self' }, '·');
    const p = byPair.get(`${from}→${to}`);
    const cell = el('td', { class: `cell ${latencyClass(p?.p50Ms)}`, 'data-from': from, 'data-to': to });
    if (!p || p.p50Ms === null) {
      cell.append(p?.lastError ? 'failing' : 'no data');
      if (p?.lastError) cell.title = p.lastError;
    } else {
      cell.append(el('span', { class: 'ms' }, `${fmt(p.p50Ms)} / ${fmt(p.p99Ms)} ms`));
      cell.title = `${p.samples} samples, ${p.failures} failures, updated ${p.updatedAt}`;
    }
    if (p && p.failures > 0) cell.append(el('span', { class: 'fail' }, `${p.failures} failed`));
    return cell;
  })));
  $('matrix').replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
}

function renderServices(o) {
  const names = o.clusters.map((c) => c.name);
  const head = el('tr', {}, el('th', {}, 'service'), el('th', {}, 'served from'), ...names.map((n) => el('th', {}, n)));
  const rows = o.services.map((s) => {
    const byCluster = new Map(s.clusters.map((c) => [c.cluster, c]));
    return el('tr', { 'data-service': `${s.namespace}/${s.name}` },
      el('td', {}, `${s.namespace}/${s.name}`),
      el('td', {}, s.clusters.map((c) => c.cluster).join(', ')),
      ...names.map((n) => {
        const c = byCluster.get(n);
        if (!c) return el('td', { class: 'absent' }, '–');
        return el('td', { class: c.healthy === 0 ? 'down' : '' }, `${c.healthy}/${c.total}`);
      }));
  });
  $('services').replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
}

function record(o) {
  if (o.generatedAt === lastGeneratedAt) return;
  lastGeneratedAt = o.generatedAt;
  const t = Date.parse(o.generatedAt) / 1000;
  for (const p of o.probes) {
    const key = `${p.from}→${p.to}`;
    let h = history.get(key);
    if (!h) history.set(key, (h = { t: [], p50: [] }));
    h.t.push(t);
    h.p50.push(p.p50Ms);
    if (h.t.length > maxPoints) { h.t.shift(); h.p50.shift(); }
  }
  const select = $('pair');
  const keys = [...history.keys()].sort();
  if (keys.join() !== [...select.options].map((x) => x.value).join()) {
    const chosen = select.value;
    select.replaceChildren(...keys.map((k) => el('option', { value: k }, k)));
    if (keys.includes(chosen)) select.value = chosen;
  }
}

function drawSeries() {
  const h = history.get($('pair').value);
  const data = h ? [h.t, h.p50] : [[], []];
  if (!chart) {
    const width = Math.max(300, $('series').clientWidth);
    chart = new uPlot({
      width, height: 220,
      series: [{}, { label: 'p50 ms', stroke: '#0969da', width: 2, spanGaps: false }],
      axes: [{}, { label: 'ms' }],
    }, data, $('series'));
    window.addEventListener('resize', () => chart.setSize({ width: Math.max(300, $('series').clientWidth), height: 220 }));
  } else {
    chart.setData(data);
  }
}

function render(o) {
  $('served-by').textContent = `served by ${o.servedBy} · catalog r${o.catalogRevision} · ${new Date(o.generatedAt).toLocaleTimeString()}`;
  renderClusters(o);
  renderMatrix(o);
  renderServices(o);
  record(o);
  drawSeries();
}

function connect() {
  const source = new EventSource('/api/stream');
  source.addEventListener('open', () => { $('conn').className = 'conn up'; $('conn').textContent = 'live'; });
  source.addEventListener('error', () => { $('conn').className = 'conn down'; $('conn').textContent = 'reconnecting…'; });
  source.addEventListener('overview', (e) => render(JSON.parse(e.data)));
}

$('pair').addEventListener('change', drawSeries);
connect();
