// The LLooM page: a writer's tool. The story in a textarea (kept in
// localStorage); "Suggest" streams the tree of likely continuations from
// POST /api/loom (docs/story-api.md, "The LLooM") and draws it as it grows;
// the suggestions come best first, to accept (optionally edited) and go on.
// With two or more models loaded, "Mix" streams text the models write
// together (POST /api/mix), every token coloured by the model credited.

import { el, readableOn } from './util.js';
import { request, ApiError } from './api.js';
import { postStream } from './loom-sse.js';
import { LoomTree } from './loom-tree.js';

const STORY_KEY = 'simularity.loom.story';
const SETTINGS_KEY = 'simularity.loom.settings';
const MIX_KEY = 'simularity.loom.mix';
const DEFAULTS = { depth: 12, max: 25, cutoff: 0.2, multiplier: 1.0, split: 3, autostop: true, logprob: false };
const MODEL_COLORS = ['#7cc4ff', '#f0b860', '#c49bff', '#7ee2a8'];

const $ = (id) => document.getElementById(id);
const store = {
  get(k, d) { try { const v = localStorage.getItem(k); return v == null ? d : JSON.parse(v); } catch { return d; } },
  set(k, v) { try { localStorage.setItem(k, JSON.stringify(v)); } catch { /* private mode */ } },
};

const ui = {
  story: $('story'), suggest: $('btn-suggest'), again: $('btn-again'), stop: $('btn-stop'), status: $('status'),
  settings: $('settings-form'), list: $('sugg-list'), empty: $('sugg-empty'), meta: $('sugg-meta'),
  tree: $('tree'), treeMeta: $('tree-meta'), download: $('btn-download'),
  banner: $('banner'), bannerText: $('banner-text'),
  mixNote: $('mix-note'), mixBody: $('mix-body'), mixForm: $('mix-form'), mixBtn: $('btn-mix'),
  mixAccept: $('btn-mix-accept'), mixLegend: $('mix-legend'), mixOut: $('mix-out'), mixMeta: $('mix-meta'),
};

let current = null;        // {ctrl: AbortController, kind: 'loom' | 'mix'}
let lastBody = null;       // the last /api/loom request ("suggest again")
let suggestions = [];
let models = [];
let mixText = '';

// ------------------------------------------------------------ messages
function showError(msg) {
  ui.bannerText.textContent = msg;
  ui.banner.hidden = false;
}
function clearError() { ui.banner.hidden = true; }
$('banner-close').addEventListener('click', clearError);
function setStatus(s) { ui.status.textContent = s; }

function describe(e) {
  if (e instanceof ApiError) return e.status ? `${e.message} (HTTP ${e.status})` : e.message;
  return (e && e.message) || String(e);
}

// ------------------------------------------------------------ the story
ui.story.value = store.get(STORY_KEY, '');
let saveTimer = 0;
ui.story.addEventListener('input', () => {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(() => store.set(STORY_KEY, ui.story.value), 250);
  markStale();
});
function setStory(text) {
  ui.story.value = text;
  store.set(STORY_KEY, text);
  ui.story.scrollTop = ui.story.scrollHeight;
}
// The text the model saw followed by the suggestion: the server drops one
// trailing space of the prompt, and a suggestion carries its own leading one.
function appendToStory(s) {
  let t = ui.story.value;
  if (t.endsWith(' ') && !t.endsWith('  ') && /^\s/.test(s)) t = t.slice(0, -1);
  setStory(t + s);
}

// ------------------------------------------------------------ settings
function readSettings() {
  const f = ui.settings.elements;
  const num = (name) => {
    const v = Number(f[name].value);
    return Number.isFinite(v) && f[name].value !== '' ? v : DEFAULTS[name];
  };
  return {
    depth: Math.round(num('depth')), max: Math.round(num('max')), cutoff: num('cutoff'), multiplier: num('multiplier'),
    split: Math.round(num('split')), autostop: f.autostop.checked, logprob: f.logprob.checked,
  };
}
function writeSettings(s) {
  const f = ui.settings.elements;
  for (const k of ['depth', 'max', 'cutoff', 'multiplier', 'split']) f[k].value = s[k];
  f.autostop.checked = !!s.autostop;
  f.logprob.checked = !!s.logprob;
}
writeSettings({ ...DEFAULTS, ...store.get(SETTINGS_KEY, {}) });
ui.settings.addEventListener('input', () => store.set(SETTINGS_KEY, readSettings()));
ui.settings.addEventListener('submit', (e) => e.preventDefault());
$('btn-defaults').addEventListener('click', () => { writeSettings(DEFAULTS); store.set(SETTINGS_KEY, DEFAULTS); });

// ------------------------------------------------------------ busy state
function setBusy(kind) {
  const busy = !!kind;
  ui.suggest.disabled = busy;
  ui.again.disabled = busy || !lastBody;
  ui.stop.disabled = !busy;
  ui.mixBtn.disabled = busy;
  for (const b of ui.list.querySelectorAll('button')) b.disabled = busy;
  document.body.classList.toggle('is-busy', busy);
  ui.tree.setAttribute('aria-busy', kind === 'loom' ? 'true' : 'false');
  ui.mixOut.setAttribute('aria-busy', kind === 'mix' ? 'true' : 'false');
}
function stop() {
  if (current) current.ctrl.abort();
}
ui.stop.addEventListener('click', stop);

// ------------------------------------------------------------ the tree
const tree = new LoomTree(ui.tree, {
  onLeafClick: (id) => {
    const i = suggestions.findIndex((s) => s.node === id);
    if (i >= 0) { const b = ui.list.querySelector(`li[data-index="${i}"] .sugg-text`); if (b) b.focus(); }
  },
  onHover: (id) => {
    if (id < 0) { tree.highlight(selectedNode()); return; }
    tree.highlight(id);
    for (const li of ui.list.children) li.classList.toggle('hover', suggestions[+li.dataset.index].node === id);
  },
});
function selectedNode() {
  const li = ui.list.querySelector('li.selected');
  return li ? suggestions[+li.dataset.index].node : -1;
}

ui.download.addEventListener('click', () => {
  if (!tree.svg) return;
  const blob = new Blob([tree.serialize()], { type: 'image/svg+xml' });
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: `lloom-tree-${new Date().toISOString().replace(/[:.]/g, '-')}.svg` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 2000);
});

// ------------------------------------------------------------ suggest
async function suggest(body) {
  if (current) return;
  clearError();
  if (!body) {
    const text = ui.story.value;
    if (!text.trim()) { showError('Write a few words first: the LLooM continues your text.'); ui.story.focus(); return; }
    body = { text, ...readSettings() };
  }
  lastBody = body;
  const ctrl = new AbortController();
  current = { ctrl, kind: 'loom' };
  suggestions = [];
  ui.list.replaceChildren();
  ui.empty.hidden = false;
  ui.empty.textContent = 'Growing the tree…';
  ui.meta.textContent = '';
  ui.download.disabled = true;
  tree.reset(body.text);
  let depth = 0, open = 0, done = null, failed = null;
  const t0 = performance.now();
  setBusy('loom');
  setStatus('Growing the tree…');
  try {
    await postStream('/api/loom', body, (name, d) => {
      if (name === 'node') {
        tree.add(d);
        ui.treeMeta.textContent = `${tree.size} node${tree.size === 1 ? '' : 's'}`;
      } else if (name === 'depth') {
        depth = d.depth; open = d.open;
        setStatus(`Depth ${depth}: ${open} branch${open === 1 ? '' : 'es'} open, ${tree.size} nodes`);
      } else if (name === 'done') {
        done = d;
      } else if (name === 'error') {
        failed = d.message || 'The tree failed.';
      }
    }, ctrl.signal);
    tree.flush();
    if (failed) throw new Error(failed);
    if (!done) throw new Error('The stream ended before the tree was done.');
    showSuggestions(done);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    setStatus(`${done.suggestions.length} suggestion${done.suggestions.length === 1 ? '' : 's'} in ${secs} s`);
    ui.treeMeta.textContent = `${done.nodes} nodes · ${done.decodes} decodes · ${Math.round(done.ms)} ms${done.truncated ? ' · truncated' : ''}`;
  } catch (e) {
    tree.flush();
    if (e && e.name === 'AbortError') {
      setStatus(`Stopped (${tree.size} nodes)`);
      ui.empty.textContent = 'Stopped before the tree was done.';
    } else {
      showError(describe(e));
      setStatus('');
      ui.empty.textContent = 'No suggestions.';
    }
  } finally {
    current = null;
    ui.download.disabled = tree.size === 0;
    setBusy(null);
  }
}

function showSuggestions(d) {
  suggestions = d.suggestions || [];
  ui.list.replaceChildren();
  ui.empty.hidden = suggestions.length > 0;
  ui.empty.textContent = 'The tree has no suggestions: try a lower cutoff or more depth.';
  const scores = suggestions.map((s) => s.score);
  const best = Math.max(...scores), worst = Math.min(...scores);
  // Probability scores are positive sums; log-prob scores are negative: bar = relative to the best.
  const rel = (s) => (best > 0 ? s / best : best === worst ? 1 : 1 - (s - best) / (worst - best || 1) * 0.9);
  ui.meta.textContent = suggestions.length ? `· ${suggestions.length}, best first` : '';
  suggestions.forEach((s, i) => {
    const r = Math.max(0.02, Math.min(1, rel(s.score)));
    const li = el('li', { class: 'sugg', 'data-index': i, 'data-node': s.node },
      el('button', { type: 'button', class: 'sugg-text', title: 'Accept: append to the story' + (i < 9 ? ` (Alt+${i + 1})` : ''), 'aria-label': `Accept suggestion ${i + 1}: ${s.text} (score ${s.score.toFixed(2)})` },
        el('span', { class: 'sugg-n', 'aria-hidden': 'true' }, `${i + 1}`),
        el('span', { class: 'sugg-words' }, s.text.replace(/\n/g, '⏎'))),
      el('span', { class: 'sugg-bar', role: 'meter', 'aria-label': 'Score relative to the best', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(r * 100) },
        el('span', { class: 'sugg-fill', style: `width:${(r * 100).toFixed(1)}%` })),
      el('span', { class: 'sugg-score', title: lastBody && lastBody.logprob ? 'sum of log-probabilities' : 'sum of probabilities' }, s.score.toFixed(2)),
      el('span', { class: 'sugg-acts' },
        el('button', { type: 'button', class: 'btn small-btn sugg-continue', title: 'Accept and suggest again' }, 'Continue'),
        el('button', { type: 'button', class: 'btn small-btn sugg-edit', title: 'Edit before accepting', 'aria-label': `Edit suggestion ${i + 1}` }, '✎')));
    li.querySelector('.sugg-text').addEventListener('click', () => accept(i, false));
    li.querySelector('.sugg-continue').addEventListener('click', () => accept(i, true));
    li.querySelector('.sugg-edit').addEventListener('click', () => editSuggestion(li, i));
    const on = () => { for (const o of ui.list.children) o.classList.toggle('selected', o === li); tree.highlight(s.node); tree.reveal(s.node); };
    li.addEventListener('mouseenter', () => tree.highlight(s.node));
    li.addEventListener('mouseleave', () => tree.highlight(selectedNode()));
    li.addEventListener('focusin', on);
    ui.list.append(li);
  });
  if (suggestions.length) {
    ui.list.firstChild.classList.add('selected');
    tree.highlight(suggestions[0].node);
    tree.reveal(suggestions[0].node);
  }
}

function markStale() {
  if (suggestions.length && lastBody && ui.story.value !== lastBody.text) ui.list.classList.add('stale');
  else ui.list.classList.remove('stale');
}

function accept(i, andSuggest, text) {
  const s = suggestions[i];
  if (!s || current) return;
  appendToStory(text != null ? text : s.text);
  suggestions = [];
  ui.list.replaceChildren();
  ui.list.classList.remove('stale');
  ui.empty.hidden = false;
  ui.empty.textContent = 'Accepted. Suggest again to go on.';
  ui.meta.textContent = '';
  tree.highlight(-1);
  setStatus('Accepted');
  if (andSuggest) suggest();
  else ui.story.focus({ preventScroll: true });
}

function editSuggestion(li, i) {
  if (li.querySelector('.sugg-editor')) return;
  const input = el('input', { type: 'text', class: 'sugg-input', 'aria-label': `Edit suggestion ${i + 1}` });
  input.value = suggestions[i].text;
  const ok = el('button', { type: 'button', class: 'btn small-btn primary' }, 'Accept');
  const go = el('button', { type: 'button', class: 'btn small-btn' }, 'Continue');
  const cancel = el('button', { type: 'button', class: 'btn small-btn' }, 'Cancel');
  const box = el('div', { class: 'sugg-editor' }, input, ok, go, cancel,
    el('span', { class: 'hint muted small' }, 'Enter accepts · Ctrl+Enter continues · Esc cancels'));
  const close = () => { box.remove(); li.querySelector('.sugg-edit').focus(); };
  ok.addEventListener('click', () => accept(i, false, input.value));
  go.addEventListener('click', () => accept(i, true, input.value));
  cancel.addEventListener('click', close);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); e.stopPropagation(); accept(i, e.ctrlKey || e.metaKey, input.value); }
    else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); close(); }
  });
  li.append(box);
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

ui.suggest.addEventListener('click', () => suggest());
ui.again.addEventListener('click', () => { if (lastBody) suggest(lastBody); });

// ------------------------------------------------------------ keyboard
document.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !e.target.closest('.sugg-editor')) {
    e.preventDefault();
    suggest();
  } else if (e.key === 'Escape' && current) {
    e.preventDefault();
    stop();
  } else if (e.altKey && /^[1-9]$/.test(e.key) && !current) {
    const i = +e.key - 1;
    if (suggestions[i]) { e.preventDefault(); accept(i, false); }
  }
});
const help = $('loom-help'), helpBtn = $('btn-help');
helpBtn.addEventListener('click', () => {
  help.hidden = !help.hidden;
  helpBtn.setAttribute('aria-expanded', String(!help.hidden));
});

// ------------------------------------------------------------ mixing
function modelColor(i) { return readableOn(MODEL_COLORS[i % MODEL_COLORS.length], '#161b26'); }

async function loadModels() {
  try {
    const r = await request('GET', '/api/loom/models');
    models = (r && r.models) || [];
  } catch (e) {
    ui.mixNote.textContent = 'The models could not be listed.';
    showError(describe(e));
    return;
  }
  ui.mixMeta.textContent = models.map((m) => m.name).join(' · ');
  if (models.length < 2) {
    ui.mixNote.textContent = `Mixing needs two or more models; this server has ${models.length}. Start it with --mix-model FILE (up to 3 times).`;
    ui.mixBody.hidden = true;
    return;
  }
  ui.mixNote.hidden = true;
  ui.mixBody.hidden = false;
  ui.mixLegend.replaceChildren(...models.map((m) => el('li', { 'data-model': m.index },
    el('span', { class: 'swatch', style: `background:${modelColor(m.index)}`, 'aria-hidden': 'true' }),
    el('span', { style: `color:${modelColor(m.index)}` }, `${m.index + 1}. ${m.name}`))));
  const saved = store.get(MIX_KEY, {});
  const f = ui.mixForm.elements;
  for (const k of ['mode', 'turn', 'n']) if (saved[k] != null) f[k].value = saved[k];
}

function readMix() {
  const f = ui.mixForm.elements;
  const int = (v, d) => (Number.isFinite(+v) && v !== '' ? Math.round(+v) : d);
  return { mode: f.mode.value, turn: int(f.turn.value, 1), n: int(f.n.value, 32) };
}
ui.mixForm.addEventListener('input', () => store.set(MIX_KEY, readMix()));

function tokenTitle(d) {
  const lines = [`“${d.text}” by ${models[d.model] ? models[d.model].name : `model ${d.model + 1}`}`];
  (d.probs || []).forEach((p, i) => lines.push(`${i + 1}. ${models[i] ? models[i].name : 'model'}: ${(p * 100).toFixed(1)}%`));
  if (d.disagree) lines.push('the models disagreed here');
  return lines.join('\n');
}

async function mix() {
  if (current) return;
  clearError();
  const text = ui.story.value;
  if (!text.trim()) { showError('Write a few words first: the models continue your text.'); ui.story.focus(); return; }
  const body = { text, ...readMix() };
  const ctrl = new AbortController();
  current = { ctrl, kind: 'mix' };
  mixText = '';
  ui.mixAccept.disabled = true;
  ui.mixOut.replaceChildren();
  let done = null, failed = null, n = 0, disagree = 0;
  setBusy('mix');
  setStatus('Mixing…');
  try {
    await postStream('/api/mix', body, (name, d) => {
      if (name === 'token') {
        n += 1;
        if (d.disagree) disagree += 1;
        mixText += d.text;
        const span = el('span', {
          class: d.disagree ? 'tok disagree' : 'tok', 'data-model': d.model, 'data-index': d.index,
          title: tokenTitle(d), style: `color:${modelColor(d.model)}`,
          // Disagreements are reachable from the keyboard; focus shows the probabilities.
          tabindex: d.disagree ? 0 : null, 'data-tip': d.disagree ? tokenTitle(d) : null,
        }, d.text);
        ui.mixOut.append(span);
      } else if (name === 'done') done = d;
      else if (name === 'error') failed = d.message || 'The mix failed.';
    }, ctrl.signal);
    if (failed) throw new Error(failed);
    if (!done) throw new Error('The stream ended before the mix was done.');
    if (typeof done.text === 'string') mixText = done.text;
    setStatus(`Mixed ${n} tokens in ${Math.round(done.ms)} ms${disagree ? `, ${disagree} disagreement${disagree === 1 ? '' : 's'}` : ''}`);
  } catch (e) {
    if (e && e.name === 'AbortError') setStatus(`Mix stopped after ${n} tokens`);
    else { showError(describe(e)); setStatus(''); }
  } finally {
    current = null;
    ui.mixAccept.disabled = !mixText;
    setBusy(null);
  }
}
ui.mixForm.addEventListener('submit', (e) => { e.preventDefault(); mix(); });
ui.mixAccept.addEventListener('click', () => {
  if (!mixText || current) return;
  appendToStory(mixText);
  mixText = '';
  ui.mixOut.replaceChildren();
  ui.mixAccept.disabled = true;
  setStatus('Mixed text accepted');
  markStale();
});

setBusy(null);
loadModels();
if (!ui.story.value) ui.story.focus();
