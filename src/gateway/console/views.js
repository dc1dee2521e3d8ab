// views.js: what each view of the console shows, built as DOM.
// - Helpers: el, timeEl (locale time, UTC on hover), fields (<dl> items),
//   statusEl, armConfirm (a destructive button's second-click state).
// - Messages: row builders and the timeline renderer; app.js drives them
//   (it owns the live refresh).
// - One function per other view (deadLettersView, contactsView,
//   templatesView, healthView): wires its controls once, returns { load }.
// API data is untrusted: text goes in through textContent and attributes
// through setAttribute, never innerHTML.

import { api, ApiProblem, notify, showProblem, clearProblem, reporting } from '/console/api.js';

const $ = (id) => document.getElementById(id);

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
    if (child !== null && child !== undefined && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A Date from an RFC 3339 string or Unix ms, or null. */
export function toDate(value) {
  const date = value === null || value === undefined || value === '' ? null : new Date(value);
  return date && !Number.isNaN(date.getTime()) ? date : null;
}

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const SHORT = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });
const code = (text) => el('code', { text: String(text ?? '') });
const dash = () => el('span', { class: 'muted', text: '—' });

/** A <time> in the browser's locale (`short` in tables), "2026-11-24 10:00:00.120 UTC" on hover. */
export function timeEl(value, short = false) {
  const date = toDate(value);
  if (!date) return dash();
  const utc = date.toISOString().replace('T', ' ').replace('Z', ' UTC');
  return el('time', { datetime: date.toISOString(), title: utc, text: (short ? SHORT : LOCAL).format(date) });
}

/** <dl> items (div > dt + dd) from [label, value] pairs; null pairs left out. */
export function fields(pairs) {
  return pairs.filter(Boolean).map(([label, value]) => el('div', {},
    el('dt', { text: label }),
    el('dd', {}, value === null || value === undefined || value === '' ? dash() : value)));
}

/** A message status's text, coloured through data-status. */
export function statusEl(status, props = {}) {
  const text = String(status ?? 'unknown');
  return el('span', { class: 'status', dataset: { status: text }, text, ...props });
}

/** A check's or template's state ("ok", "open", "stale"…), coloured through data-state. */
const badge = (state) => el('span', { class: 'badge', dataset: { state: String(state).toLowerCase() }, text: String(state) });

/** "131047 Re-engagement message (whatsapp)" */
export function errorText(error) {
  if (!error || typeof error !== 'object') return '';
  const parts = [error.code, error.title].filter((p) => p !== null && p !== undefined && p !== '');
  return parts.join(' ') + (error.channel ? ` (${error.channel})` : '');
}

/**
 * A destructive button's first click: it reads `label` (and isArmed is
 * true) until clicked again, blurred or 10 s pass. No confirm() dialog,
 * which headless tests cannot answer.
 */
export function armConfirm(button, label) {
  const original = button.textContent;
  const disarm = () => {
    if (!isArmed(button)) return;
    delete button.dataset.confirm;
    button.textContent = original;
    button.classList.remove('confirming');
  };
  button.dataset.confirm = 'yes';
  button.textContent = label;
  button.classList.add('confirming');
  button.addEventListener('blur', disarm, { once: true });
  setTimeout(disarm, 10000);
  notify(`Press "${label}" again to confirm.`);
}

export const isArmed = (button) => button.dataset.confirm === 'yes';

// --- Messages -------------------------------------------------------------

/** Unix ms of a message's acceptance (0 when unknown): the list's order. */
const acceptedMs = (m) => toDate(m?.acceptedAt)?.getTime() ?? 0;

function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

/** One <tr data-id> of the messages table, its status in td.status. */
export function messageRow(m) {
  const id = String(m.messageId ?? '');
  const tr = el('tr', { dataset: { id, at: String(acceptedMs(m)) } },
    el('td', { class: 'time' }, timeEl(m.acceptedAt, true)),
    el('td', { class: 'to', text: m.to ?? '' }),
    el('td', { class: 'channel' }),
    el('td', { class: 'status' }),
    el('td', { class: 'error' }),
    el('td', { class: 'id' }, code(id)),
    el('td', { class: 'actions' }, el('button', {
      type: 'button', class: 'open', 'aria-controls': 'timeline', 'aria-expanded': 'false',
      title: `Open the timeline of ${id}`, text: 'Open',
    })));
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

/** Inserts `tr` before the first older row (newest first; ids, v7, break ties). */
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
 * After a refresh of the first page, removes rows that no longer match the
 * filters (a status filter, say): those missing from the page when it is
 * the whole result, or when they are newer than its oldest message.
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
    entry?.attempt !== undefined && entry?.attempt !== null ? `attempt ${entry.attempt}` : null,
    entry?.providerStatus ? `provider: ${entry.providerStatus}` : null,
  ].filter(Boolean).join(' · ');
  return el('li', { dataset: { status } },
    statusEl(status), ' ', timeEl(entry?.at),
    meta ? el('span', { class: 'meta', text: meta }) : null,
    entry?.error ? el('span', { class: 'entry-error', text: errorText(entry.error) }) : null);
}

/** The legs: runs of history entries on one channel (WhatsApp, then its SMS fallback). */
function legsList(history) {
  const legs = [];
  for (const entry of history) {
    const channel = entry?.channel ?? legs.at(-1)?.channel ?? '';
    if (!legs.length || legs.at(-1).channel !== channel) legs.push({ channel, statuses: [] });
    legs.at(-1).statuses.push(String(entry?.status ?? 'unknown'));
  }
  const list = el('ul', { id: 'timeline-legs', class: 'legs' });
  legs.forEach((leg, i) => list.append(el('li', { dataset: { channel: leg.channel } },
    el('strong', { text: `${leg.channel || 'unknown channel'}${i === legs.length - 1 ? ' (latest)' : ''}: ` }),
    leg.statuses.join(' → '))));
  if (!legs.length) list.append(el('li', { class: 'muted', text: 'No legs yet.' }));
  return list;
}

/** Fills the timeline panel's body from GET /api/v1/messages/{id}. */
export function renderTimeline(body, m) {
  const history = Array.isArray(m.history) ? m.history : [];
  const details = el('dl', { id: 'timeline-fields', class: 'fields' }, fields([
    ['Message ID', code(m.messageId)],
    ['Status', statusEl(m.status, { id: 'timeline-status' })],
    ['Channel', m.channel],
    ['To', m.to],
    ['Accepted', timeEl(m.acceptedAt)],
    ['Updated', timeEl(m.updatedAt)],
    m.scheduledFor ? ['Scheduled for', timeEl(m.scheduledFor)] : null,
    m.batchId ? ['Batch', code(m.batchId)] : null,
    ['Provider message ID', m.providerMessageId ? code(m.providerMessageId) : null],
    m.callbackData ? ['Callback data', String(m.callbackData)] : null,
  ]));
  const list = el('ol', { id: 'timeline-history', class: 'history' }, history.map(historyItem));
  if (!history.length) list.append(el('li', { class: 'muted', text: 'No history yet.' }));
  body.replaceChildren(details,
    m.error ? el('p', { id: 'timeline-error', class: 'entry-error' }, el('strong', { text: 'Error: ' }), errorText(m.error)) : '',
    el('h4', { text: 'History' }), list,
    el('h4', { text: 'Legs' }), legsList(history));
}

// --- Dead letters ---------------------------------------------------------

function deadLetterRow(d) {
  const id = String(d?.id ?? '');
  const envelope = d?.envelope && typeof d.envelope === 'object' ? d.envelope : {};
  return el('tr', { dataset: { id } },
    el('td', { class: 'id' }, code(id)),
    el('td', { class: 'reason', text: d?.reason ?? '' }),
    el('td', { class: 'attempts num', text: d?.attempts ?? '' }),
    el('td', { class: 'time' }, timeEl(d?.failedAtMs, true)),
    el('td', { class: 'to' }, envelope.to ? String(envelope.to) : dash()),
    el('td', { class: 'channel', text: envelope.channel ?? '' }),
    el('td', { class: 'actions' },
      el('button', { type: 'button', class: 'redrive', title: `Redrive ${id}`, text: 'Redrive' }),
      el('button', { type: 'button', class: 'delete danger', title: `Delete ${id}`, text: 'Delete' })));
}

/** Dead letters: the list, Redrive, and Delete after a second click. */
export function deadLettersView() {
  const tbody = $('dead-letters').tBodies[0];
  const load = () => reporting('dead-letters', async () => {
    const data = await api.listDeadLetters();
    const list = Array.isArray(data?.deadLetters) ? data.deadLetters : [];
    tbody.replaceChildren(...list.map(deadLetterRow));
    $('dead-letters-empty').hidden = list.length > 0;
  });
  async function settle(id, redrive, row) {
    for (const b of row.querySelectorAll('button')) b.disabled = true;
    let result = redrive ? `Dead letter ${id} redriven: back in the queue, due now.` : `Dead letter ${id} deleted.`;
    try {
      await (redrive ? api.redriveDeadLetter(id) : api.deleteDeadLetter(id));
      clearProblem();
    } catch (error) {
      showProblem(error);
      result = `Could not ${redrive ? 'redrive' : 'delete'} dead letter ${id}: ${error.title}.`;
    }
    await load();
    notify(result);
    if (document.activeElement === document.body || !document.activeElement) $('dead-letters-heading').focus();
  }
  $('dl-refresh').addEventListener('click', load);
  $('dead-letters').addEventListener('click', (event) => {
    const button = event.target.closest('button');
    const row = button?.closest('tr');
    if (!row?.dataset.id || button.disabled) return;
    if (button.classList.contains('redrive')) settle(row.dataset.id, true, row);
    else if (button.classList.contains('delete') && isArmed(button)) settle(row.dataset.id, false, row);
    else if (button.classList.contains('delete')) armConfirm(button, 'Confirm delete');
  });
  return { load };
}

// --- Contacts & opt-outs --------------------------------------------------

const windowText = (open) => (open === true ? 'Open' : open === false ? 'Closed' : 'Unknown (never heard from)');
const OPT_OUT_BOXES = ['optout-whatsapp', 'optout-sms', 'optout-all'];

function renderContact(contact, optOut) {
  const channels = optOut?.channels ?? contact?.optOuts ?? [];
  $('contact-window').replaceChildren(...fields([
    ['Number', contact?.number],
    ['Sending number ID', contact?.from],
    ['Window', el('span', { class: 'window', dataset: { open: String(contact?.windowOpen ?? 'unknown') }, text: windowText(contact?.windowOpen) })],
    ['Their last message', timeEl(contact?.lastInboundAt)],
    ['Window expires', timeEl(contact?.windowExpiresAt)],
  ]));
  $('optout-current').replaceChildren(...fields([
    ['Opted out of', channels.length ? channels.join(', ') : 'nothing'],
    optOut ? ['Changed by', optOut.source] : null,
    optOut ? ['Changed at', timeEl(optOut.updatedAt)] : null,
  ]));
  for (const id of OPT_OUT_BOXES) $(id).checked = channels.includes($(id).value);
}

/** Contacts: a number's window and opt-out; set or remove the opt-out. */
export function contactsView() {
  let number = '';
  async function lookUp(event) {
    event?.preventDefault();
    const typed = $('contact-number').value.trim();
    if (!typed) {
      showProblem(new ApiProblem(0, { title: 'Enter a number', detail: 'E.164: + then 8–15 digits, e.g. +14155550123.' }));
      return $('contact-number').focus();
    }
    const found = await reporting('action', () => Promise.all([
      api.getContact(typed, $('contact-from').value.trim()),
      api.getOptOut(typed).catch((e) => { if (e.status === 404) return null; throw e; }), // 404: none
    ]));
    $('contact-result').hidden = !found;
    if (!found) return;
    number = found[0]?.number ?? typed;
    renderContact(...found);
  }
  async function change(call, done) {
    if (await reporting('action', async () => { await call(); return true; })) {
      await lookUp();
      notify(done);
    }
  }
  $('contact-form').addEventListener('submit', lookUp);
  $('optout-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const channels = OPT_OUT_BOXES.filter((id) => $(id).checked).map((id) => $(id).value);
    if (!channels.length) {
      return showProblem(new ApiProblem(0, { title: 'Choose a channel', detail: 'To opt the number back in, use "Remove opt-out".' }));
    }
    change(() => api.putOptOut(number, channels), `Opt-out saved for ${number}: ${channels.join(', ')}.`);
  });
  $('optout-remove').addEventListener('click', (event) => {
    const button = event.currentTarget;
    if (!isArmed(button)) return armConfirm(button, 'Confirm remove');
    button.blur();
    change(() => api.deleteOptOut(number), `Opt-out removed for ${number}.`);
  });
  return { load: () => {} };
}

// --- Templates ------------------------------------------------------------

function templateRow(t) {
  return el('tr', { dataset: { name: t?.name ?? '', language: t?.language ?? '' } },
    el('td', { class: 'name' }, code(t?.name)),
    el('td', { text: t?.language ?? '' }),
    el('td', { text: t?.category ?? '' }),
    el('td', { class: 'template-status' }, badge(t?.status ?? '')),
    el('td', {}, code(t?.wabaId)),
    el('td', {}, timeEl(t?.syncedAt, true)));
}

/** Templates: GET /api/v1/templates as a table, and its accounts. */
export function templatesView() {
  const load = () => reporting('templates', async () => {
    const data = await api.listTemplates();
    const templates = Array.isArray(data?.templates) ? data.templates : [];
    const accounts = Array.isArray(data?.accounts) ? data.accounts : [];
    $('templates').tBodies[0].replaceChildren(...templates.map(templateRow));
    $('template-accounts').replaceChildren(...accounts.map((a) => el('li', {},
      'Account ', code(a?.wabaId), ' synced ', timeEl(a?.syncedAt), a?.stale ? badge('stale') : '')));
    $('templates-empty').hidden = templates.length > 0;
  });
  $('templates-refresh').addEventListener('click', load);
  return { load };
}

// --- Health ---------------------------------------------------------------

/** "oldestAgeSeconds" → "Oldest age seconds" */
function humanize(key) {
  const words = String(key).replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/[-_]/g, ' ').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Any JSON value as DOM: objects as nested <dl>, times as <time>, states as badges. */
function valueNode(key, value, depth) {
  if (value === null || value === undefined) return dash();
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'number') return /seconds$/i.test(key) ? `${Math.round(value * 10) / 10} s` : value.toLocaleString();
  if (typeof value === 'string') {
    if (/^\d{4}-\d\d-\d\dT/.test(value)) return timeEl(value);
    return ['status', 'circuit'].includes(key) ? badge(value) : value;
  }
  if (depth > 4) return code(JSON.stringify(value));
  if (Array.isArray(value)) {
    if (!value.length) return 'none';
    if (value.every((v) => v === null || typeof v !== 'object')) return value.join(', ');
    return el('ul', { class: 'plain' }, value.map((v) => el('li', {}, valueNode(key, v, depth + 1))));
  }
  return el('dl', { class: 'fields' }, fields(Object.entries(value).map(([k, v]) => [humanize(k), valueNode(k, v, depth + 1)])));
}

/** Health: /health as a definition list (status, failing, each check's detail). */
export function healthView() {
  let last = '';
  const load = () => reporting('health', async () => {
    const health = await api.getHealth();
    $('health-updated').textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    const json = JSON.stringify(health);
    if (json === last && $('health').childElementCount) return; // unchanged: keeps a selection
    last = json;
    const pairs = [['Status', badge(health?.status ?? 'unknown')]];
    if (Array.isArray(health?.failing) && health.failing.length) pairs.push(['Failing', health.failing.join(', ')]);
    for (const [name, check] of Object.entries(health?.checks ?? {})) {
      const detail = check && typeof check === 'object' && 'detail' in check ? check.detail : check;
      pairs.push([humanize(name), el('div', { class: 'check-detail' }, badge(check?.status ?? 'unknown'), valueNode(name, detail, 1))]);
    }
    $('health').replaceChildren(...fields(pairs));
  });
  return { load };
}
