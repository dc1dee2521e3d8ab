// app.js: the console's entry point (<script type="module" src="/console/app.js">).
//
// - Sign in: the key is checked with GET /api/v1/messages?limit=1, then kept
//   in sessionStorage only (api.js); a 401 anywhere brings the form back.
// - Navigation: <nav> buttons show one view; the URL hash names the view
//   (#/messages, #/dead-letters, …; #messages is read too), never the key.
//   The slash keeps the hash from naming an element (table#messages), which
//   would scroll the page to it on load and move where Tab starts.
// - Timers: the messages list and the open timeline every 2 s (view shown,
//   tab visible, "Live" checked), the chart every 10 s, health every 5 s
//   while shown. A timer never starts a call while its last one runs.
// - The messages view (filters, list, More, timeline, chart) is driven
//   here; the other views are views.js's, one function each.

import { api, session, setUnauthorizedHandler, ApiProblem, notify, showProblem, clearProblem, problemNode } from '/console/api.js';
import * as V from '/console/views.js';
import { chartPanel } from '/console/chart.js';

const $ = (id) => document.getElementById(id);
const VIEWS = ['messages', 'dead-letters', 'contacts', 'templates', 'health'];

const state = {
  view: null,
  filters: {},
  cursor: null,
  paged: false, // "More" was used: the live refresh leaves the cursor alone
  listGen: 0, // bumped when the list is reloaded: older answers are dropped
  openId: null,
  opener: null,
  lastTimeline: '',
  busy: new Set(),
};

let chart = null; // chart.js's chartPanel, made once in init()
let others = {}; // the other views' { load }, made once in init()

/** Runs `fn` unless a call of that name is still running. */
async function single(name, fn) {
  if (state.busy.has(name)) return;
  state.busy.add(name);
  try {
    await fn();
  } finally {
    state.busy.delete(name);
  }
}

// --- Sign in and out ------------------------------------------------------

function showSignedIn(signedIn) {
  $('sign-in-panel').hidden = signedIn;
  $('nav').hidden = !signedIn;
  $('sign-out').hidden = !signedIn;
  if (!signedIn) for (const view of VIEWS) $(`view-${view}`).hidden = true;
}

/** The sign-in check's verdict: an error text, or null when the key may be kept. */
async function refusal(key) {
  try {
    await api.checkKey(key);
    return null;
  } catch (problem) {
    if (problem.status === 401) return 'This API key was refused (401). Check it and try again.';
    if (problem.status === 0) return `${problem.title}. ${problem.detail}`;
    return null; // any other answer (a 501 without a status store, say) came after the key passed
  }
}

async function signIn(event) {
  event.preventDefault();
  const input = $('api-key');
  const error = $('sign-in-error');
  const key = input.value.trim();
  error.textContent = '';
  if (!key) {
    error.textContent = 'Enter an API key.';
    return input.focus();
  }
  $('sign-in').disabled = true;
  const refused = await refusal(key);
  $('sign-in').disabled = false;
  if (refused) {
    error.textContent = refused;
    return input.select();
  }
  try {
    session.set(key);
  } catch {
    error.textContent = 'This browser refuses session storage, where the key would be kept for this tab.';
    return;
  }
  input.value = '';
  start();
  notify('Signed in.');
}

function resetViews() {
  Object.assign(state, { cursor: null, paged: false, openId: null, opener: null, lastTimeline: '' });
  state.listGen += 1;
  chart.reset();
  for (const id of ['messages', 'dead-letters', 'templates']) $(id).tBodies[0].replaceChildren();
  for (const id of ['timeline-body', 'health', 'template-accounts', 'messages-updated']) $(id).replaceChildren();
  $('timeline').hidden = true;
  $('contact-result').hidden = true;
  $('more').hidden = true;
}

/** Back to the sign-in form; `message` says why (a 401). */
function signOut(message) {
  session.clear();
  state.view = null;
  resetViews();
  clearProblem();
  showSignedIn(false);
  $('sign-in-error').textContent = message ?? '';
  $('api-key').focus();
  if (!message) notify('Signed out.');
}

function start() {
  showSignedIn(true);
  resetViews();
  go(viewFromHash() ?? 'messages');
}

// --- Navigation -----------------------------------------------------------

function viewFromHash() {
  const name = location.hash.replace(/^#\/?/, '');
  return VIEWS.includes(name) ? name : null;
}

const hashOf = (view) => `#/${view}`;

function load(view) {
  if (view === 'messages') {
    loadMessages();
    chart.load();
  } else {
    others[view].load();
  }
}

function go(view, { focus = false } = {}) {
  if (!session.get()) return;
  state.view = view;
  for (const name of VIEWS) {
    $(`view-${name}`).hidden = name !== view;
    if (name === view) $(`nav-${name}`).setAttribute('aria-current', 'page');
    else $(`nav-${name}`).removeAttribute('aria-current');
  }
  if (location.hash !== hashOf(view)) history.replaceState(null, '', hashOf(view));
  clearProblem();
  load(view);
  if (focus) $(`view-${view}`).querySelector('h2').focus();
}

function onNav(event) {
  const view = event.target.closest('button[data-view]')?.dataset.view;
  if (!view) return;
  $('notice').textContent = ''; // the last action's result belongs to the last view
  if (location.hash !== hashOf(view)) history.pushState(null, '', hashOf(view));
  go(view, { focus: true });
}

function onHashChange() {
  const view = viewFromHash();
  if (view && view !== state.view && session.get()) go(view);
}

// --- Messages -------------------------------------------------------------

const tbody = () => $('messages').tBodies[0];

/** A datetime-local value (the browser's zone) as RFC 3339 UTC, or ''. */
function localToUtc(value) {
  const date = value ? new Date(value) : null;
  return date && !Number.isNaN(date.getTime()) ? date.toISOString().replace(/\.000Z$/, 'Z') : '';
}

function readFilters() {
  const value = (id) => $(id).value.trim();
  return {
    to: value('f-to'),
    status: value('f-status'),
    channel: value('f-channel'),
    from: value('f-from'),
    batchId: value('f-batch'),
    since: localToUtc(value('f-since')),
    until: localToUtc(value('f-until')),
    limit: value('f-limit') || '50',
  };
}

function setCursor(cursor) {
  state.cursor = typeof cursor === 'string' && cursor ? cursor : null;
  $('more').hidden = state.cursor === null;
}

function afterRows() {
  $('messages-empty').hidden = tbody().rows.length > 0;
  markOpenRow();
  $('messages-updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

/** The first page with the form's filters, replacing the table. */
async function loadMessages() {
  const gen = ++state.listGen;
  state.filters = readFilters();
  state.paged = false;
  try {
    const page = await api.listMessages(state.filters);
    if (gen !== state.listGen) return;
    tbody().replaceChildren();
    V.mergeMessageRows(tbody(), page?.messages);
    setCursor(page?.nextCursor);
    afterRows();
    clearProblem('messages');
  } catch (error) {
    if (gen === state.listGen) showProblem(error, 'messages');
  }
}

/** The live refresh: the first page again, merged into the rows shown. */
async function refreshMessages() {
  const gen = state.listGen;
  try {
    const page = await api.listMessages(state.filters);
    if (gen !== state.listGen) return;
    V.mergeMessageRows(tbody(), page?.messages);
    V.pruneMessageRows(tbody(), page?.messages, page?.nextCursor);
    if (!state.paged) setCursor(page?.nextCursor);
    afterRows();
    clearProblem('messages');
  } catch (error) {
    if (gen === state.listGen) showProblem(error, 'messages');
  }
}

/** The next page (same filters), appended. */
async function moreMessages() {
  if (!state.cursor) return;
  const gen = state.listGen;
  const before = tbody().rows.length;
  $('more').disabled = true;
  try {
    const page = await api.listMessages(state.filters, state.cursor);
    if (gen !== state.listGen) return;
    V.mergeMessageRows(tbody(), page?.messages);
    state.paged = true;
    setCursor(page?.nextCursor);
    afterRows();
    notify(`${tbody().rows.length - before} more messages shown.`);
  } catch (error) {
    showProblem(error, 'messages');
  } finally {
    $('more').disabled = false;
  }
}

function clearFilters() {
  for (const id of ['f-to', 'f-status', 'f-channel', 'f-from', 'f-batch', 'f-since', 'f-until']) $(id).value = '';
  $('f-limit').value = '50';
  loadMessages();
}

// --- Timeline -------------------------------------------------------------

const rowOf = (id) => [...tbody().rows].find((r) => r.dataset.id === id);

function markOpenRow() {
  for (const row of tbody().rows) {
    const open = row.dataset.id === state.openId;
    row.classList.toggle('is-open', open);
    row.querySelector('button.open')?.setAttribute('aria-expanded', String(open));
  }
}

/** Fetches the open message; re-renders only when it changed (keeps a selection). */
async function fetchTimeline() {
  const id = state.openId;
  if (!id) return;
  try {
    const message = await api.getMessage(id);
    if (state.openId !== id) return;
    if (!message || typeof message !== 'object') throw new ApiProblem(502, { title: 'Unexpected answer', detail: 'The message was empty.' });
    const json = JSON.stringify(message);
    if (json !== state.lastTimeline) {
      state.lastTimeline = json;
      V.renderTimeline($('timeline-body'), message);
      $('timeline-heading').textContent = `Timeline of ${message.to ?? 'message'}`;
    }
    const row = rowOf(id);
    if (row) V.updateMessageRow(row, message);
    clearProblem('timeline');
  } catch (error) {
    if (state.openId !== id) return;
    if (error.status !== 404) return showProblem(error, 'timeline');
    state.lastTimeline = '';
    $('timeline-body').replaceChildren(problemNode(error));
  }
}

function openTimeline(id, opener) {
  Object.assign(state, { openId: id, opener, lastTimeline: '' });
  $('timeline').hidden = false;
  $('timeline-heading').textContent = 'Timeline';
  $('timeline-body').replaceChildren(V.el('p', { class: 'muted', text: 'Loading…' }));
  markOpenRow();
  $('timeline-heading').focus();
  fetchTimeline();
}

function closeTimeline() {
  const { opener, openId } = state;
  Object.assign(state, { openId: null, opener: null, lastTimeline: '' });
  $('timeline').hidden = true;
  $('timeline-body').replaceChildren();
  markOpenRow();
  const target = opener?.isConnected ? opener : rowOf(openId)?.querySelector('button.open');
  (target ?? $('messages-heading')).focus();
}

function onMessagesClick(event) {
  const button = event.target.closest('button.open');
  const id = button?.closest('tr')?.dataset.id;
  if (id) openTimeline(id, button);
}

// --- Timers ---------------------------------------------------------------

const showing = (view) => session.get() && state.view === view && document.visibilityState === 'visible';
const live = () => $('live').checked;

function tickList() {
  if (!showing('messages') || !live()) return;
  single('messages', refreshMessages);
  if (state.openId) single('timeline', fetchTimeline);
}

function tickStats() {
  if (showing('messages') && live()) single('stats', chart.load);
}

function tickHealth() {
  if (showing('health')) single('health', others.health.load);
}

function startTimers() {
  setInterval(tickList, 2000);
  setInterval(tickStats, 10000);
  setInterval(tickHealth, 5000);
  document.addEventListener('visibilitychange', () => {
    tickList();
    tickHealth();
  });
}

// --- Wiring ---------------------------------------------------------------

function wire() {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', () => signOut());
  $('nav').addEventListener('click', onNav);
  window.addEventListener('hashchange', onHashChange);
  $('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    loadMessages();
  });
  $('clear-filters').addEventListener('click', clearFilters);
  $('refresh').addEventListener('click', () => load('messages'));
  $('live').addEventListener('change', tickList);
  $('more').addEventListener('click', moreMessages);
  $('messages').addEventListener('click', onMessagesClick);
  $('timeline-close').addEventListener('click', closeTimeline);
  $('timeline').addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeTimeline();
  });
}

function init() {
  chart = chartPanel({
    fetchStats: api.getStats,
    onLoaded: () => clearProblem('stats'),
    onError: (error) => showProblem(error, 'stats'),
  });
  others = {
    'dead-letters': V.deadLettersView(),
    contacts: V.contactsView(),
    templates: V.templatesView(),
    health: V.healthView(),
  };
  wire();
  setUnauthorizedHandler(() => signOut('Your API key was refused (401). Sign in again.'));
  startTimers();
  if (session.get()) start();
  else showSignedIn(false);
}

init();
