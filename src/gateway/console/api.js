// api.js: the console's one way to talk to the gateway.
//
// - The API key lives only in sessionStorage under 'herald.apiKey' (never
//   localStorage, a cookie or the URL) and goes out as the `x-api-key` header.
// - Every failure (network, timeout, non-2xx) becomes an ApiProblem carrying
//   the RFC 9457 fields (title, detail, code, errors), so callers never see a
//   raw exception or an unparsed body.
// - A 401 on a signed-in call runs the handler app.js registers (back to the
//   sign-in form); the sign-in check itself passes its key explicitly and
//   handles its own 401.
// - Problems reach the operator through showProblem (#alert, role="alert",
//   title, detail, code and field errors) and results through notify
//   (#notice, aria-live="polite").

const KEY_NAME = 'herald.apiKey';
const TIMEOUT_MS = 15000;

/** An API error as RFC 9457 describes it; status 0 when nothing answered. */
export class ApiProblem extends Error {
  constructor(status, doc = {}) {
    const title = doc.title ? String(doc.title) : status ? `HTTP ${status}` : 'Network error';
    super(doc.detail ? `${title}: ${doc.detail}` : title);
    this.name = 'ApiProblem';
    this.status = status;
    this.title = title;
    this.detail = doc.detail == null ? '' : String(doc.detail);
    this.code = doc.code == null ? '' : String(doc.code);
    this.errors = Array.isArray(doc.errors) ? doc.errors : [];
  }
}

/** The signed-in key, kept for this tab only. */
export const session = {
  get() {
    try {
      return sessionStorage.getItem(KEY_NAME);
    } catch {
      return null;
    }
  },
  set(key) {
    sessionStorage.setItem(KEY_NAME, key);
  },
  clear() {
    try {
      sessionStorage.removeItem(KEY_NAME);
    } catch {
      // Storage unavailable: there is nothing to clear.
    }
  },
};

let unauthorized = () => {};

/** Registers what to do when the gateway refuses the stored key (401). */
export function setUnauthorizedHandler(handler) {
  unauthorized = handler;
}

/** The body as JSON (problem documents included), null when empty. */
async function readBody(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  const type = response.headers.get('content-type') || '';
  if (!type.includes('json')) return { detail: text.slice(0, 300) };
  try {
    return JSON.parse(text);
  } catch {
    return { detail: 'The gateway answered with JSON that could not be read.' };
  }
}

/** The headers of one call: the key (unless `auth` is false) and JSON. */
function headersFor(key, auth, hasBody) {
  const headers = { accept: 'application/json, application/problem+json' };
  if (auth) headers['x-api-key'] = key;
  if (hasBody) headers['content-type'] = 'application/json';
  return headers;
}

/**
 * One call. `key` overrides the stored key (the sign-in check); `auth: false`
 * sends none; `accept` lists non-2xx statuses whose body is still the answer
 * (/health's 503). Resolves to the parsed body; rejects with an ApiProblem.
 */
export async function request(method, path, { body, key, auth = true, accept = [] } = {}) {
  const useKey = key ?? session.get();
  if (auth && !useKey) {
    const problem = new ApiProblem(401, { title: 'Not signed in' });
    unauthorized(problem);
    throw problem;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: headersFor(useKey, auth, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (error) {
    const timedOut = error && error.name === 'TimeoutError';
    throw new ApiProblem(0, {
      title: 'The gateway could not be reached',
      detail: timedOut ? `No answer within ${TIMEOUT_MS / 1000} s.` : String(error?.message ?? error),
    });
  }
  const data = await readBody(response).catch(() => null);
  if (response.ok || accept.includes(response.status)) return data;
  const problem = new ApiProblem(response.status, data && typeof data === 'object' ? data : {});
  if (response.status === 401 && auth && key === undefined) unauthorized(problem);
  throw problem;
}

/** `path?query` with the parameters that have a value. */
function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** A path segment: `+` becomes %2B, so E.164 numbers survive. */
const seg = (value) => encodeURIComponent(String(value));

/** Every gateway call the console makes. */
export const api = {
  /** The sign-in check: 401 means the key is refused. */
  checkKey: (key) => request('GET', '/api/v1/messages?limit=1', { key }),

  listMessages: (filters, cursor) =>
    request('GET', withQuery('/api/v1/messages', { ...filters, cursor })),
  getMessage: (id) => request('GET', `/api/v1/messages/${seg(id)}`),
  getStats: (since, until, granularity) =>
    request('GET', withQuery('/api/v1/stats', { since, until, granularity })),

  listDeadLetters: (limit = 100) => request('GET', withQuery('/api/v1/dead-letters', { limit })),
  redriveDeadLetter: (id) => request('POST', `/api/v1/dead-letters/${seg(id)}/redrive`),
  deleteDeadLetter: (id) => request('DELETE', `/api/v1/dead-letters/${seg(id)}`),

  getContact: (number, from) => request('GET', withQuery(`/api/v1/contacts/${seg(number)}`, { from })),
  getOptOut: (number) => request('GET', `/api/v1/opt-outs/${seg(number)}`),
  putOptOut: (number, channels) =>
    request('PUT', `/api/v1/opt-outs/${seg(number)}`, { body: { channels } }),
  deleteOptOut: (number) => request('DELETE', `/api/v1/opt-outs/${seg(number)}`),

  listTemplates: () => request('GET', '/api/v1/templates'),

  /** Readiness needs no key; its 503 is an answer, not an error. */
  getHealth: () => request('GET', '/health', { auth: false, accept: [503] }),
};

// --- Showing problems and results ---------------------------------------

/** Says what an action did in #notice (polite; re-announced even if equal). */
export function notify(text) {
  const notice = document.getElementById('notice');
  notice.textContent = '';
  setTimeout(() => { notice.textContent = text; }, 30);
}

/** A problem as DOM: title, detail, code and each field error. */
export function problemNode(problem) {
  const box = document.createElement('div');
  box.className = 'problem';
  const title = box.appendChild(document.createElement('strong'));
  title.textContent = problem.title;
  if (problem.detail) box.append(` ${problem.detail}`);
  if (problem.code) box.append(` (${problem.code})`);
  if (problem.errors?.length) {
    const list = box.appendChild(document.createElement('ul'));
    for (const e of problem.errors.slice(0, 20)) {
      list.appendChild(document.createElement('li')).textContent = `${e?.field ?? ''}: ${e?.message ?? ''}`;
    }
  }
  return box;
}

let alertSource = null;
let alertText = '';

/**
 * Shows a problem in #alert. `source` names who failed, so its next success
 * clears it (clearProblem(source)); a timer failing the same way again is
 * not announced again. A 401 is the sign-in form's to show.
 */
export function showProblem(error, source = 'action') {
  const problem = error instanceof ApiProblem
    ? error
    : new ApiProblem(0, { title: 'Something went wrong', detail: String(error?.message ?? error) });
  if (problem.status === 401) return;
  const node = problemNode(problem);
  alertSource = source;
  if (node.textContent === alertText) return;
  alertText = node.textContent;
  const dismiss = node.appendChild(document.createElement('button'));
  dismiss.type = 'button';
  dismiss.className = 'dismiss secondary';
  dismiss.textContent = 'Dismiss';
  dismiss.addEventListener('click', () => clearProblem());
  document.getElementById('alert').replaceChildren(node);
}

/** Clears #alert: any problem, or only `source`'s. */
export function clearProblem(source) {
  if (source && alertSource !== source) return;
  document.getElementById('alert').replaceChildren();
  alertSource = null;
  alertText = '';
}

/** Runs `fn`: its problem goes to #alert under `source`, its success clears that. */
export async function reporting(source, fn) {
  try {
    const result = await fn();
    clearProblem(source);
    return result;
  } catch (error) {
    showProblem(error, source);
    return undefined;
  }
}
