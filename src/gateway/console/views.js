// views.js: turns API answers into DOM for each view of the console.
//
// No fetching and no timers here (app.js does those): each function takes
// the JSON the gateway answered and builds or updates elements. Everything
// from the API is untrusted, so text goes in through textContent and
// attributes through setAttribute: never innerHTML.
//
// Messages: messageRow / updateMessageRow / mergeMessageRows / pruneMessageRows
// Timeline: renderTimeline      Dead letters: renderDeadLetters
// Contacts: renderContact       Templates: renderTemplates
// Health:   renderHealth        Errors: problemNode

/** An element with attributes (`class`, `text`, `dataset` are special) and children. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = String(value);
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A Date from an RFC 3339 string or Unix ms, or null. */
export function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  const date = new Date(typeof value === 'number' ? value : String(value));
  return Number.isNaN(date.getTime()) ? null : date;
}

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** "2026-11-24 10:00:00.120 UTC" */
export const utcText = (date) => date.toISOString().replace('T', ' ').replace('Z', ' UTC');

/** A <time> in the browser's locale, its UTC form on hover; a dash when absent. */
export function timeEl(value) {
  const date = toDate(value);
  if (!date) return el('span', { class: 'muted', text: '—' });
  return el('time', { datetime: date.toISOString(), title: utcText(date), text: LOCAL.format(date) });
}

/** A datetime-local value (the browser's zone) as RFC 3339 UTC, or ''. */
export function localToUtc(value) {
  const date = value ? new Date(value) : null;
  return date && !Number.isNaN(date.getTime()) ? date.toISOString().replace(/\.000Z$/, 'Z') : '';
}

const code = (text) => el('code', { text: String(text ?? '') });
const dash = () => el('span', { class: 'muted', text: '—' });

/** A <dl> of [label, value] pairs; null pairs are left out. */
export function fields(list, props = {}) {
  const dl = el('dl', { class: 'fields', ...props });
  for (const pair of list) {
    if (!pair) continue;
    const [label, value] = pair;
    const shown = value === null || value === undefined || value === '' ? dash() : value;
    dl.append(el('div', {}, el('dt', { text: label }), el('dd', {}, shown)));
  }
  return dl;
}

/** A status as text with its colour (data-status drives the CSS). */
export function statusEl(status, props = {}) {
  const text = String(status ?? 'unknown');
  return el('span', { class: 'status', dataset: { status: text }, text, ...props });
}

/** "131047 Re-engagement message (whatsapp)" */
export function errorText(error) {
  if (!error || typeof error !== 'object') return '';
  const parts = [error.code, error.title].filter((p) => p !== null && p !== undefined && p !== '');
  return parts.join(' ') + (error.channel ? ` (${error.channel})` : '');
}

/** A problem document for #alert: title, detail, code, field errors. */
export function problemNode(problem) {
  const box = el('div', { class: 'problem' }, el('strong', { text: problem.title }));
  if (problem.detail) box.append(` ${problem.detail}`);
  if (problem.code) box.append(' ', el('span', { class: 'muted', text: `(${problem.code})` }));
  if (problem.errors?.length) {
    const list = el('ul');
    for (const e of problem.errors.slice(0, 20)) {
      list.append(el('li', {}, code(e?.field ?? ''), ` ${e?.message ?? ''}`));
    }
    box.append(list);
  }
  return box;
}

// --- Messages -------------------------------------------------------------

/** Unix ms of a message's acceptance (0 when unknown): the list's order. */
const acceptedMs = (m) => toDate(m?.acceptedAt)?.getTime() ?? 0;

function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

/** One <tr data-id> of the messages table, its status in td.status. */
export function messageRow(m) {
  const id = String(m.messageId ?? '');
  const tr = el('tr', { dataset: { id, at: String(acceptedMs(m)) } });
  tr.append(
    el('td', { class: 'time' }, timeEl(m.acceptedAt)),
    el('td', { class: 'to', text: m.to ?? '' }),
    el('td', { class: 'channel' }),
    el('td', { class: 'status' }),
    el('td', { class: 'error' }),
    el('td', { class: 'id' }, code(id)),
    el('td', { class: 'actions' },
      el('button', { type: 'button', class: 'open', 'aria-controls': 'timeline', 'aria-expanded': 'false', title: `Open the timeline of ${id}`, text: 'Open' })),
  );
  updateMessageRow(tr, m);
  return tr;
}

/** Brings a row up to date; a changed status flashes once. */
export function updateMessageRow(tr, m) {
  setText(tr.querySelector('td.channel'), String(m.channel ?? ''));
  setText(tr.querySelector('td.error'), errorText(m.error));
  const cell = tr.querySelector('td.status');
  const status = String(m.status ?? 'unknown');
  if (cell.textContent === status) return;
  const changed = cell.textContent !== '';
  cell.textContent = status;
  cell.dataset.status = status;
  if (changed) {
    tr.classList.add('changed');
    tr.addEventListener('animationend', () => tr.classList.remove('changed'), { once: true });
  }
}

/** Inserts `tr` before the first older row (newest first, id breaks ties). */
function insertByTime(tbody, tr) {
  const at = Number(tr.dataset.at);
  const older = [...tbody.rows].find((r) => {
    const other = Number(r.dataset.at);
    return other < at || (other === at && r.dataset.id < tr.dataset.id);
  });
  tbody.insertBefore(tr, older ?? null);
}

/** Applies a page: rows shown are updated in place, new ones inserted in order. */
export function mergeMessageRows(tbody, messages) {
  const rows = new Map([...tbody.rows].map((r) => [r.dataset.id, r]));
  for (const m of Array.isArray(messages) ? messages : []) {
    if (!m || m.messageId === undefined) continue;
    const row = rows.get(String(m.messageId));
    if (row) {
      updateMessageRow(row, m);
    } else {
      const tr = messageRow(m);
      insertByTime(tbody, tr);
      rows.set(tr.dataset.id, tr);
    }
  }
}

/**
 * After a refresh of the first page: removes rows that no longer match the
 * filters (a status filter, say). A row missing from the page no longer
 * matches when the page is the whole result, or when it is newer than the
 * page's oldest message.
 */
export function pruneMessageRows(tbody, messages, nextCursor) {
  const list = Array.isArray(messages) ? messages : [];
  const ids = new Set(list.map((m) => String(m?.messageId)));
  const oldest = list.length ? Math.min(...list.map(acceptedMs)) : Infinity;
  for (const row of [...tbody.rows]) {
    if (ids.has(row.dataset.id)) continue;
    if (nextCursor === null || nextCursor === undefined || Number(row.dataset.at) > oldest) row.remove();
  }
}

// --- Timeline -------------------------------------------------------------

function historyItem(entry) {
  const status = String(entry?.status ?? 'unknown');
  const meta = [
    entry?.channel,
    entry?.attempt !== undefined ? `attempt ${entry.attempt}` : null,
    entry?.providerStatus ? `provider: ${entry.providerStatus}` : null,
  ].filter(Boolean).join(' · ');
  return el('li', { dataset: { status } },
    statusEl(status),
    ' ', timeEl(entry?.at),
    meta ? el('span', { class: 'meta', text: meta }) : null,
    entry?.error ? el('span', { class: 'entry-error', text: errorText(entry.error) }) : null);
}

/** The legs: runs of history entries on one channel (WhatsApp, then SMS). */
function legsOf(history) {
  const legs = [];
  for (const entry of history) {
    const channel = entry?.channel ?? legs.at(-1)?.channel ?? '';
    if (!legs.length || legs.at(-1).channel !== channel) legs.push({ channel, statuses: [] });
    legs.at(-1).statuses.push(String(entry?.status ?? 'unknown'));
  }
  return legs;
}

function legsList(history) {
  const list = el('ul', { id: 'timeline-legs', class: 'legs' });
  const legs = legsOf(history);
  legs.forEach((leg, i) => {
    const label = `${leg.channel || 'channel unknown'}${i === legs.length - 1 ? ' (latest)' : ''}: `;
    list.append(el('li', { dataset: { channel: leg.channel } }, el('strong', { text: label }), leg.statuses.join(' → ')));
  });
  if (!legs.length) list.append(el('li', { class: 'muted', text: 'No legs yet.' }));
  return list;
}

/** Fills the timeline panel's body with one message's view (GET /api/v1/messages/{id}). */
export function renderTimeline(body, m) {
  const history = Array.isArray(m?.history) ? m.history : [];
  const details = fields([
    ['Message ID', code(m.messageId)],
    ['Status', statusEl(m.status, { id: 'timeline-status' })],
    ['Channel', m.channel],
    ['To', m.to],
    ['Accepted', timeEl(m.acceptedAt)],
    ['Updated', timeEl(m.updatedAt)],
    m.scheduledFor ? ['Scheduled for', timeEl(m.scheduledFor)] : null,
    m.batchId ? ['Batch', code(m.batchId)] : null,
    ['Provider message ID', m.providerMessageId ? code(m.providerMessageId) : null],
    m.callbackData ? ['Callback data', m.callbackData] : null,
  ], { id: 'timeline-fields' });
  const list = el('ol', { id: 'timeline-history', class: 'history' }, history.map(historyItem));
  if (!history.length) list.append(el('li', { class: 'muted', text: 'No history yet.' }));
  body.replaceChildren(
    details,
    m.error ? el('div', { id: 'timeline-error', class: 'entry-error block' }, el('strong', { text: 'Error: ' }), errorText(m.error)) : '',
    el('h4', { text: 'History' }), list,
    el('h4', { text: 'Legs' }), legsList(history),
  );
}

// --- Dead letters ---------------------------------------------------------

function deadLetterRow(d) {
  const id = String(d?.id ?? '');
  const envelope = d?.envelope && typeof d.envelope === 'object' ? d.envelope : {};
  return el('tr', { dataset: { id } },
    el('td', { class: 'id' }, code(id)),
    el('td', { class: 'reason', text: d?.reason ?? '' }),
    el('td', { class: 'attempts num', text: d?.attempts ?? '' }),
    el('td', { class: 'time' }, timeEl(d?.failedAtMs)),
    el('td', { class: 'to' }, envelope.to ? String(envelope.to) : dash()),
    el('td', { class: 'channel', text: envelope.channel ?? '' }),
    el('td', { class: 'actions' },
      el('button', { type: 'button', class: 'redrive', title: `Redrive ${id}`, text: 'Redrive' }),
      el('button', { type: 'button', class: 'delete danger', title: `Delete ${id}`, text: 'Delete' })));
}

/** The dead-letters table body from GET /api/v1/dead-letters's list. */
export function renderDeadLetters(tbody, list) {
  tbody.replaceChildren(...(Array.isArray(list) ? list : []).map(deadLetterRow));
}

// --- Contacts & opt-outs --------------------------------------------------

function windowText(open) {
  if (open === true) return 'Open';
  if (open === false) return 'Closed';
  return 'Unknown (never heard from this person)';
}

/** The window and opt-out of one number (contacts and opt-outs answers). */
export function renderContact(windowList, optOutList, contact, optOut) {
  const channels = optOut?.channels ?? contact?.optOuts ?? [];
  windowList.replaceChildren(...fields([
    ['Number', contact?.number],
    ['Sending number ID', contact?.from],
    ['Window', el('span', { class: 'window', dataset: { open: String(contact?.windowOpen ?? 'unknown') }, text: windowText(contact?.windowOpen) })],
    ['Last message from them', timeEl(contact?.lastInboundAt)],
    ['Window expires', timeEl(contact?.windowExpiresAt)],
  ]).children);
  optOutList.replaceChildren(...fields([
    ['Opted out of', channels.length ? channels.join(', ') : 'nothing'],
    optOut ? ['Changed by', optOut.source] : null,
    optOut ? ['Changed at', timeEl(optOut.updatedAt)] : null,
  ]).children);
}

// --- Templates ------------------------------------------------------------

/** The templates table and the accounts list from GET /api/v1/templates. */
export function renderTemplates(tbody, accountsList, data) {
  const templates = Array.isArray(data?.templates) ? data.templates : [];
  tbody.replaceChildren(...templates.map((t) => el('tr', { dataset: { name: t?.name ?? '', language: t?.language ?? '' } },
    el('td', { class: 'name' }, code(t?.name)),
    el('td', { text: t?.language ?? '' }),
    el('td', { text: t?.category ?? '' }),
    el('td', { class: 'template-status', dataset: { state: String(t?.status ?? '').toLowerCase() }, text: t?.status ?? '' }),
    el('td', {}, code(t?.wabaId)),
    el('td', {}, timeEl(t?.syncedAt)))));
  const accounts = Array.isArray(data?.accounts) ? data.accounts : [];
  accountsList.replaceChildren(...accounts.map((a) => el('li', {},
    'Account ', code(a?.wabaId), ': synced ', timeEl(a?.syncedAt),
    a?.stale ? el('span', { class: 'badge', dataset: { state: 'stale' }, text: 'stale' }) : '')));
}

// --- Health ---------------------------------------------------------------

/** "oldestAgeSeconds" → "Oldest age seconds" */
const humanize = (key) => {
  const words = String(key).replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[-_]/g, ' ').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
};

const badge = (state) => el('span', { class: 'badge', dataset: { state: String(state) }, text: String(state) });

/** Any JSON value as DOM: objects as nested <dl>, times as <time>. */
function valueNode(key, value, depth = 0) {
  if (value === null || value === undefined) return dash();
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'number') {
    return /seconds$/i.test(key) ? `${Math.round(value * 10) / 10} s` : value.toLocaleString();
  }
  if (typeof value === 'string') {
    if (/^\d{4}-\d\d-\d\dT/.test(value)) return timeEl(value);
    return key === 'status' || key === 'circuit' ? badge(value) : value;
  }
  if (depth > 4) return code(JSON.stringify(value));
  if (Array.isArray(value)) {
    if (!value.length) return 'none';
    if (value.every((v) => typeof v !== 'object' || v === null)) return value.join(', ');
    return el('ul', { class: 'plain' }, value.map((v) => el('li', {}, valueNode(key, v, depth + 1))));
  }
  return fields(Object.entries(value).map(([k, v]) => [humanize(k), valueNode(k, v, depth + 1)]));
}

/** /health's JSON as a definition list: status, failing checks, each check. */
export function renderHealth(list, health) {
  const pairs = [['Status', badge(health?.status ?? 'unknown')]];
  if (Array.isArray(health?.failing) && health.failing.length) pairs.push(['Failing', health.failing.join(', ')]);
  for (const [name, check] of Object.entries(health?.checks ?? {})) {
    const detail = check && typeof check === 'object' ? check.detail : check;
    pairs.push([humanize(name), el('div', { class: 'check-detail' }, badge(check?.status ?? 'unknown'), valueNode(name, detail, 1))]);
  }
  list.replaceChildren(...fields(pairs).children);
}
