// chart.js: sends by status over time, from the JSON of GET /api/v1/stats.
//
// Pure builders, no fetching and no global state: each takes the stats
// document (and the range it was asked for) and returns a new element.
// - buildChart: an <svg> of stacked bars per bucket, one colour per status
//   (colours come from console.css classes `s-<status>`), with <title> and
//   <desc> for assistive technology and a <title> per bar segment on hover.
// - buildLegend: the statuses as a list with their colours.
// - buildChartTable: the same numbers as a table (the page hides it visually).
// - buildTotals: the totals (byStatus, byChannel, smsSegments, byErrorCode)
//   as cards for <dl id="totals">.
// - chartPanel: keeps the page's chart elements drawn from the stats its
//   caller fetches (it is given the fetch; this module makes no calls), and
//   redraws at the box's width.
// Data from the API is untrusted: every text goes in through textContent.

const SVG = 'http://www.w3.org/2000/svg';

/** Statuses in the gateway's rank order (Status::ALL), failed last. */
export const STATUS_ORDER = [
  'accepted', 'redriven', 'submitted', 'sent', 'delivered', 'read', 'cancelled', 'failed',
];

/** The ranges the chart offers: span, the stats granularity, bucket size. */
export const RANGES = {
  hour: { spanMs: 3600e3, granularity: 'minute', bucketMs: 60e3, label: 'last hour, by minute' },
  day: { spanMs: 86400e3, granularity: 'hour', bucketMs: 3600e3, label: 'last day, by hour' },
  month: { spanMs: 30 * 86400e3, granularity: 'day', bucketMs: 86400e3, label: 'last 30 days, by day' },
};

const HEIGHT = 200;
const PAD = { left: 44, right: 10, top: 12, bottom: 26 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function html(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

const count = (value) => (Number.isFinite(Number(value)) ? Math.max(0, Number(value)) : 0);
const entries = (object) => (object && typeof object === 'object' ? Object.entries(object) : []);
const sum = (object) => entries(object).reduce((total, [, n]) => total + count(n), 0);
/** A status as a CSS class suffix (statuses are lower-case words). */
const cls = (status) => `s-${String(status).toLowerCase().replace(/[^a-z0-9-]/g, '')}`;

/** The statuses present in the document, in rank order, unknown ones after. */
export function statusesOf(stats) {
  const seen = new Set(entries(stats?.byStatus).map(([s]) => s));
  for (const point of Array.isArray(stats?.series) ? stats.series : []) {
    for (const [s] of entries(point?.byStatus)) seen.add(s);
  }
  const known = STATUS_ORDER.filter((s) => seen.has(s));
  return known.concat([...seen].filter((s) => !STATUS_ORDER.includes(s)).sort());
}

/** Every bucket from since to until (empty ones included), oldest first. */
export function bucketsOf(stats, bucketMs) {
  const floor = (ms) => Math.floor(ms / bucketMs) * bucketMs;
  const byStart = new Map();
  for (const point of Array.isArray(stats?.series) ? stats.series : []) {
    const at = Date.parse(point?.at);
    if (!Number.isFinite(at)) continue;
    const bucket = byStart.get(floor(at)) ?? {};
    for (const [s, n] of entries(point.byStatus)) bucket[s] = (bucket[s] ?? 0) + count(n);
    byStart.set(floor(at), bucket);
  }
  const starts = [...byStart.keys()];
  const since = Date.parse(stats?.since);
  const until = Date.parse(stats?.until);
  const first = Math.min(...starts, Number.isFinite(since) ? floor(since) : Infinity);
  const last = Math.max(...starts, Number.isFinite(until) ? floor(until - 1) : -Infinity);
  const buckets = [];
  if (!Number.isFinite(first) || !Number.isFinite(last)) return buckets;
  for (let at = first; at <= last && buckets.length < 2000; at += bucketMs) {
    const byStatus = byStart.get(at) ?? {};
    buckets.push({ at, byStatus, total: sum(byStatus) });
  }
  return buckets;
}

/** A bucket's start as people read it, in the browser's time zone. */
export function bucketLabel(at, range) {
  const options = range.granularity === 'day'
    ? { month: 'short', day: 'numeric' }
    : { hour: '2-digit', minute: '2-digit' };
  return new Intl.DateTimeFormat(undefined, options).format(new Date(at));
}

/** The smallest of 1, 2, 5 × 10^k at or above n (at least 1). */
function niceCeil(n) {
  if (n <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 5, 10]) if (step * power >= n) return step * power;
  return 10 * power;
}

/** The one-sentence summary used by <desc> and aria. */
export function describe(stats, range) {
  const total = sum(stats?.byStatus);
  if (total === 0) return `No messages in the ${range.label}.`;
  const parts = statusesOf(stats)
    .map((s) => [s, count(stats.byStatus?.[s])])
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${s} ${n}`);
  return `${total} message${total === 1 ? '' : 's'} in the ${range.label}: ${parts.join(', ')}.`;
}

function drawAxes(root, { width, yMax }) {
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const ticks = yMax % 2 === 0 ? [0, yMax / 2, yMax] : [0, yMax];
  for (const tick of ticks) {
    const y = PAD.top + plotH - (tick / yMax) * plotH;
    root.append(svg('line', { class: 'grid-line', x1: PAD.left, x2: width - PAD.right, y1: y, y2: y }));
    root.append(svg('text', { class: 'axis-label', x: PAD.left - 6, y: y + 5, 'text-anchor': 'end' }, String(tick)));
  }
}

function drawXLabels(root, buckets, { width, step, range }) {
  if (buckets.length === 0) return;
  const y = HEIGHT - 6;
  const picks = [[0, 'start'], [Math.floor(buckets.length / 2), 'middle'], [buckets.length - 1, 'end']];
  const used = new Set();
  for (const [index, anchor] of picks) {
    if (used.has(index)) continue;
    used.add(index);
    const centre = PAD.left + step * (index + 0.5);
    const x = anchor === 'start' ? PAD.left : anchor === 'end' ? width - PAD.right : centre;
    root.append(svg('text', { class: 'axis-label', x, y, 'text-anchor': anchor }, bucketLabel(buckets[index].at, range)));
  }
}

function drawBars(root, buckets, statuses, { step, yMax, range }) {
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const barW = Math.max(1, step * 0.75);
  buckets.forEach((bucket, index) => {
    let base = PAD.top + plotH;
    const x = PAD.left + step * index + (step - barW) / 2;
    for (const status of statuses) {
      const n = count(bucket.byStatus[status]);
      if (n === 0) continue;
      const h = (n / yMax) * plotH;
      base -= h;
      const rect = svg('rect', { class: `seg ${cls(status)}`, x, y: base, width: barW, height: Math.max(h, 0.5) });
      rect.append(svg('title', {}, `${bucketLabel(bucket.at, range)}: ${status} ${n}`));
      root.append(rect);
    }
  });
}

/**
 * The chart as a new <svg> `width` pixels wide (the caller gives its box's
 * width and sets the id). `range` is one of RANGES.
 */
export function buildChart(stats, { range = RANGES.hour, width = 640 } = {}) {
  const w = Math.max(280, Math.floor(width));
  const buckets = bucketsOf(stats, range.bucketMs);
  const statuses = statusesOf(stats);
  const yMax = niceCeil(Math.max(0, ...buckets.map((b) => b.total)));
  const step = (w - PAD.left - PAD.right) / Math.max(1, buckets.length);
  const root = svg('svg', {
    width: w, height: HEIGHT, viewBox: `0 0 ${w} ${HEIGHT}`,
    role: 'img', 'aria-labelledby': 'chart-title chart-desc', class: 'chart',
  });
  root.append(svg('title', { id: 'chart-title' }, `Sends by status, ${range.label}`));
  root.append(svg('desc', { id: 'chart-desc' }, describe(stats, range)));
  drawAxes(root, { width: w, yMax });
  drawBars(root, buckets, statuses, { step, yMax, range });
  drawXLabels(root, buckets, { width: w, step, range });
  if (sum(stats?.byStatus) === 0 && buckets.every((b) => b.total === 0)) {
    const y = PAD.top + (HEIGHT - PAD.top - PAD.bottom) / 2;
    root.append(svg('text', { class: 'empty-label', x: w / 2, y, 'text-anchor': 'middle' }, 'No messages in this range'));
  }
  return root;
}

/** The legend: one item per status present, with its colour. */
export function buildLegend(stats) {
  const list = html('ul', { id: 'chart-legend', class: 'legend', 'aria-label': 'Legend' });
  for (const status of statusesOf(stats)) {
    const item = html('li', { class: cls(status) });
    item.append(html('span', { class: 'swatch', 'aria-hidden': 'true' }), document.createTextNode(status));
    list.append(item);
  }
  return list;
}

/** The chart's numbers as a visually hidden table (non-empty buckets). */
export function buildChartTable(stats, { range = RANGES.hour } = {}) {
  const statuses = statusesOf(stats);
  const table = html('table', { id: 'chart-table' }); // inside a visually hidden box
  table.append(html('caption', {}, `Sends by status, ${range.label}`));
  const head = html('tr');
  for (const name of ['Time', ...statuses, 'Total']) head.append(html('th', { scope: 'col' }, name));
  table.appendChild(html('thead')).append(head);
  const body = table.appendChild(html('tbody'));
  const rows = bucketsOf(stats, range.bucketMs).filter((b) => b.total > 0);
  for (const bucket of rows) {
    const row = body.appendChild(html('tr'));
    row.append(html('th', { scope: 'row' }, `${bucketLabel(bucket.at, range)} (${new Date(bucket.at).toISOString()})`));
    for (const status of statuses) row.append(html('td', {}, String(count(bucket.byStatus[status]))));
    row.append(html('td', {}, String(bucket.total)));
  }
  if (rows.length === 0) {
    body.appendChild(html('tr')).append(html('td', { colspan: statuses.length + 2 }, 'No messages in this range'));
  }
  return table;
}

function card(label, value, className = '') {
  const box = html('div', { class: `card ${className}`.trim() });
  const dd = html('dd');
  if (value instanceof Node) dd.append(value);
  else dd.textContent = String(value);
  box.append(html('dt', {}, label), dd);
  return box;
}

function errorCodes(byErrorCode) {
  const codes = entries(byErrorCode).filter(([, n]) => count(n) > 0).sort((a, b) => count(b[1]) - count(a[1]));
  if (codes.length === 0) return 'none';
  const list = html('ul', { class: 'codes' });
  for (const [code, n] of codes.slice(0, 8)) list.append(html('li', {}, `${code}: ${count(n)}`));
  if (codes.length > 8) list.append(html('li', {}, `and ${codes.length - 8} more`));
  return list;
}

/** The totals as cards (dt/dd pairs in divs) for <dl id="totals">. */
export function buildTotals(stats) {
  const cards = [card('All messages', sum(stats?.byStatus), 'total')];
  for (const status of statusesOf(stats)) {
    const n = count(stats.byStatus?.[status]);
    if (n > 0) cards.push(card(status, n, cls(status)));
  }
  const channelNames = { whatsapp: 'WhatsApp', sms: 'SMS' };
  for (const [channel, n] of entries(stats?.byChannel)) {
    cards.push(card(channelNames[channel] ?? channel, count(n), 'channel'));
  }
  cards.push(card('SMS segments', count(stats?.smsSegments), 'segments'));
  cards.push(card('Error codes', errorCodes(stats?.byErrorCode), 'errors'));
  return cards;
}

// --- The chart on the page ----------------------------------------------

const rfc3339 = (date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * The chart on the page: #chart-range picks the range; load() asks
 * `fetchStats(since, until, granularity)` and redraws #chart, #chart-legend,
 * #chart-table and #totals; `onLoaded()` / `onError(problem)` report.
 */
export function chartPanel({ fetchStats, onLoaded, onError }) {
  const $ = (id) => document.getElementById(id);
  let last = null;
  let gen = 0;
  function draw() {
    const width = $('chart-box').clientWidth;
    if (!last || !width) return; // hidden: drawn when it shows
    const chart = buildChart(last.stats, { range: last.range, width });
    chart.id = 'chart';
    $('chart').replaceWith(chart);
    $('chart-legend').replaceWith(buildLegend(last.stats));
    $('chart-table').replaceWith(buildChartTable(last.stats, { range: last.range }));
    $('totals').replaceChildren(...buildTotals(last.stats));
  }
  async function load() {
    const mine = ++gen;
    const range = RANGES[$('chart-range').value] ?? RANGES.hour;
    const until = new Date();
    try {
      const stats = await fetchStats(rfc3339(new Date(until - range.spanMs)), rfc3339(until), range.granularity);
      if (mine !== gen) return;
      last = { stats, range };
      draw();
      onLoaded();
    } catch (error) {
      if (mine === gen) onError(error);
    }
  }
  /** Forgets what was drawn (signing out). */
  function reset() {
    gen += 1;
    last = null;
    for (const id of ['chart', 'chart-legend', 'totals']) $(id).replaceChildren();
    $('chart-table').replaceChildren(html('caption', {}, 'Sends by status'));
  }
  let width = 0;
  new ResizeObserver(([entry]) => {
    const next = Math.round(entry.contentRect.width);
    if (next && next !== width) {
      width = next;
      requestAnimationFrame(draw);
    }
  }).observe($('chart-box'));
  $('chart-range').addEventListener('change', load);
  return { load, reset };
}
