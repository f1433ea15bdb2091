// Server-Sent Events over fetch: the LLooM endpoints are POSTs, which
// EventSource cannot make. postStream() sends JSON and calls onEvent(name,
// data) for every `event:`/`data:` block of the answer as it arrives.

import { getKey, ApiError } from './api.js';

// Splits a growing text buffer into SSE blocks; returns the unfinished tail.
export function parseBlocks(buf, onBlock) {
  buf = buf.replace(/\r\n?/g, '\n');
  let i;
  while ((i = buf.indexOf('\n\n')) >= 0) {
    const block = buf.slice(0, i);
    buf = buf.slice(i + 2);
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      let value = c < 0 ? '' : line.slice(c + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length) onBlock(name, data.join('\n'));
  }
  return buf;
}

// Resolves when the stream ends; rejects with ApiError (network, HTTP status
// with the API's message) or an AbortError when signal aborts.
export async function postStream(path, body, onEvent, signal) {
  const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let res;
  try {
    res = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body), signal });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError('The server cannot be reached. Is simularity serve running?', 0, 'network');
  }
  if (!res.ok) {
    let msg = `${path} failed (${res.status} ${res.statusText})`;
    try {
      const j = JSON.parse(await res.text());
      if (j && j.error && j.error.message) msg = j.error.message;
    } catch { /* not JSON */ }
    if (res.status === 401) msg = `${msg} — enter the API key in the player first (it is shared with this page).`;
    throw new ApiError(msg, res.status, 'http');
  }
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const emit = (name, raw) => {
    let data;
    try { data = JSON.parse(raw); } catch { return; }
    onEvent(name, data);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf = parseBlocks(buf + dec.decode(value, { stream: true }), emit);
    }
    buf = parseBlocks(buf + dec.decode() + '\n\n', emit);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    if (signal && signal.aborted) { const a = new Error('aborted'); a.name = 'AbortError'; throw a; }
    throw new ApiError('The connection to the server was lost.', 0, 'network');
  }
}
