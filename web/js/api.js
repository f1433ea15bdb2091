// The native story API (docs/story-api.md): JSON requests with the API key,
// errors as ApiError, and one reconnecting event stream per story.

const KEY_STORE = 'simularity.apiKey';

export class ApiError extends Error {
  constructor(message, status, kind) {
    super(message);
    this.status = status;   // HTTP status, 0 when the server could not be reached
    this.kind = kind;       // 'network' | 'http'
  }
}

export function getKey() {
  try { return localStorage.getItem(KEY_STORE) || ''; } catch { return ''; }
}
export function setKey(k) {
  try { k ? localStorage.setItem(KEY_STORE, k) : localStorage.removeItem(KEY_STORE); } catch { /* private mode */ }
}

// Called on a 401: resolves with a key to retry with (or rejects).
let askKey = null;
export function onKeyNeeded(fn) { askKey = fn; }

export const locale = (() => {
  const l = (navigator.languages && navigator.languages[0]) || navigator.language || 'en-US';
  return l;
})();

export async function request(method, path, body, retried = false) {
  const headers = { Accept: 'application/json' };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError('The server cannot be reached. Is simularity serve running?', 0, 'network');
  }
  if (res.status === 401 && askKey && !retried) {
    await askKey(key ? 'That key was refused. Enter another key.' : '');
    return request(method, path, body, true);
  }
  if (res.status === 204) return null;
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const msg = data && data.error && data.error.message ? data.error.message
      : `${method} ${path} failed (${res.status} ${res.statusText})`;
    throw new ApiError(res.status === 409 ? `The story is busy: ${msg}` : msg, res.status, 'http');
  }
  return data;
}

export const api = {
  scenarios: () => request('GET', `/api/scenarios?locale=${encodeURIComponent(locale)}`),
  scenario: (id) => request('GET', `/api/scenarios/${encodeURIComponent(id)}?locale=${encodeURIComponent(locale)}`),
  stories: () => request('GET', '/api/stories'),
  story: (id) => request('GET', `/api/stories/${id}`),
  create: (scenario, episode, title) => request('POST', '/api/stories', { scenario, episode, ...(title ? { title } : {}) }),
  remove: (id) => request('DELETE', `/api/stories/${id}`),
  tree: (id) => request('GET', `/api/stories/${id}/tree`),
  advance: (id, sampling) => request('POST', `/api/stories/${id}/advance`, { sampling }),
  say: (id, text) => request('POST', `/api/stories/${id}/say`, { text }),
  regenerate: (id, sampling) => request('POST', `/api/stories/${id}/regenerate`, { sampling }),
  choose: (id, update) => request('POST', `/api/stories/${id}/choose`, { update }),
  edit: (id, update, text) => request('POST', `/api/stories/${id}/edit`, { update, text }),
  rewind: (id, update) => request('POST', `/api/stories/${id}/rewind`, { update }),
  thumbs: (id, update, value) => request('POST', `/api/stories/${id}/thumbs`, { update, value }),
  save: (id, name, thumbnail) => request('POST', `/api/stories/${id}/save`, { name, ...(thumbnail ? { thumbnail } : {}) }),
  load: (id, save) => request('POST', `/api/stories/${id}/load`, { save }),
  fork: (id, title) => request('POST', `/api/stories/${id}/fork`, title ? { title } : {}),
};

// A thumbnail URL the <img> can load (with ?key= when a key is set).
export function withKey(url) {
  const key = getKey();
  if (!key || !url) return url;
  return url + (url.includes('?') ? '&' : '?') + 'key=' + encodeURIComponent(key);
}

// One story's events. EventSource reconnects by itself after a dropped
// connection; when it gives up (CLOSED: an HTTP error such as 401/404 or a
// refused connection) this reopens it with a growing delay.
export class StoryEvents {
  constructor(storyId, handlers, status) {
    this.id = storyId;
    this.handlers = handlers;  // {event name: fn(data)}
    this.status = status;      // fn('open' | 'reconnecting' | 'closed')
    this.delay = 1000;
    this.closed = false;
    this.timer = 0;
    this.open();
  }

  open() {
    if (this.closed) return;
    const key = getKey();
    const url = `/api/stories/${this.id}/events` + (key ? `?key=${encodeURIComponent(key)}` : '');
    const es = new EventSource(url);
    this.es = es;
    es.onopen = () => { this.delay = 1000; this.status('open'); };
    es.onerror = () => {
      if (this.closed) return;
      this.status('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.open(), this.delay);
        this.delay = Math.min(this.delay * 2, 15000);
      }
    };
    for (const name of Object.keys(this.handlers)) {
      es.addEventListener(name, (ev) => {
        // The SSE 'error' event of the API carries data; a connection error does not.
        if (!ev.data) return;
        let data;
        try { data = JSON.parse(ev.data); } catch { return; }
        this.handlers[name](data);
      });
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
  }
}
