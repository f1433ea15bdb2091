// End-to-end test of the LLooM page (make e2e, after the player's test):
// starts `simularity serve` with stories260K twice (the model and a mix
// model), drives Debian's chromium through playwright-core, and checks the
// page against direct calls of POST /api/loom and /api/mix. Screenshots go
// to build/e2e/loom-*.png. Prints "e2e-loom: N passed, M failed".

import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ROOT, MODEL, CHROMIUM, OUT, STEP_TIMEOUT, assert, poll, begin } from './harness.mjs';

const run = await begin({ tag: 'e2e-loom', prefix: 'loom', stale: /^loom-.*\.(png|svg)$/, what: 'the LLooM browser test' });
const { chromium, tmp, step } = run;
const MIX_MODEL = resolve(ROOT, process.env.E2E_MIX_MODEL || MODEL);
const TAG = 'e2e-loom';
run.screenshotOptions = { fullPage: true };

let server, browser, page, base;
const consoleErrors = [];
let expectErrors = false;   // a step that makes the browser log a failed request on purpose
const eq = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// A direct POST that reads the whole SSE answer: [{event, data}].
async function sse(path, body) {
  const r = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`POST ${path}: ${r.status} ${await r.text()}`);
  const text = (await r.text()).replace(/\r\n?/g, '\n');
  const events = [];
  for (const block of text.split('\n\n')) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length) events.push({ event, data: JSON.parse(data.join('\n')) });
  }
  return events;
}

const idle = () => page.waitForFunction(() => !document.body.classList.contains('is-busy'), null, { timeout: STEP_TIMEOUT });
const story = () => page.inputValue('#story');
async function setSettings(s) {
  if (!(await page.locator('#settings').evaluate((d) => d.open))) await page.click('#settings summary');
  for (const [k, v] of Object.entries(s)) {
    const input = page.locator(`#settings-form [name=${k}]`);
    if (typeof v === 'boolean') await input.setChecked(v);
    else await input.fill(String(v));
  }
}
const suggestionTexts = () => page.$$eval('#sugg-list .sugg-words', (ns) => ns.map((n) => n.textContent));

const TEXT = 'Lily saw a';
const PARAMS = { depth: 6, max: 12, cutoff: 0.1, multiplier: 1, split: 3, autostop: true, logprob: false };

// ------------------------------------------------------------ the run
let setupError = null;
try {
  const args = ['-m', MODEL, '--mix-model', MIX_MODEL, '--scenarios', join(ROOT, 'scenarios'), '--db', join(tmp, 'stories.db')];
  if (process.env.E2E_WEB_DIR) args.push('--web-dir', resolve(process.env.E2E_WEB_DIR));   // iterate without rebuilding
  server = run.server = await run.startServer(args);
  base = server.base.replace(/\/$/, '');
  console.log(`${TAG}: server at ${base}, chromium ${CHROMIUM}, screenshots in build/e2e/loom-*.png`);
  browser = run.browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, acceptDownloads: true });
  page = run.page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' && !expectErrors) consoleErrors.push(`console: ${m.text()} (${(m.location() || {}).url || ''})`); });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));

  let direct;   // the direct /api/loom answer for TEXT and PARAMS

  await step('the page loads and lists the models', async () => {
    await page.goto(base + '/web/loom.html');
    await page.locator('#mix-body').waitFor({ state: 'visible', timeout: 15000 });
    const legend = await page.$$eval('#mix-legend li', (ls) => ls.map((l) => l.getAttribute('data-model')));
    assert(eq(legend, ['0', '1']), `legend: ${JSON.stringify(legend)}`);
    const models = await (await fetch(base + '/api/loom/models')).json();
    assert(models.models.length === 2, `GET /api/loom/models: ${JSON.stringify(models)}`);
  });

  await step('the player links to the LLooM', async () => {
    await page.goto(base + '/');
    const link = page.locator('a[href="/web/loom.html"]');
    await link.first().waitFor({ timeout: 10000 });
    await link.first().click();
    await page.waitForURL('**/web/loom.html');
    await page.locator('#mix-body').waitFor({ state: 'visible', timeout: 15000 });
  });

  await step('suggest: the suggestions match a direct POST /api/loom', async () => {
    direct = await sse('/api/loom', { text: TEXT, ...PARAMS });
    const done = direct.find((e) => e.event === 'done');
    assert(done && done.data.suggestions.length > 1, `direct answer: ${JSON.stringify(direct.slice(-1))}`);
    await page.fill('#story', TEXT);
    await setSettings(PARAMS);
    await page.click('#btn-suggest');
    await idle();
    await page.locator('#sugg-list li').first().waitFor();
    const texts = await suggestionTexts();
    const want = done.data.suggestions.map((s) => s.text);
    assert(eq(texts, want), `page: ${JSON.stringify(texts)}\n       api:  ${JSON.stringify(want)}`);
    const scores = await page.$$eval('#sugg-list .sugg-score', (ns) => ns.map((n) => n.textContent));
    assert(eq(scores, done.data.suggestions.map((s) => s.score.toFixed(2))), `scores ${scores}`);
    const widths = await page.$$eval('#sugg-list .sugg-fill', (ns) => ns.map((n) => parseFloat(n.style.width)));
    assert(widths[0] === 100 && widths.every((w, i) => i === 0 || w <= widths[i - 1] + 1e-9), `bars ${widths}`);
  });

  await step('the SVG has one node per node event, leaves highlighted', async () => {
    const nodes = direct.filter((e) => e.event === 'node');
    const n = await page.locator('#tree svg g.node').count();
    assert((await page.textContent('#tree-meta')).startsWith(`${nodes.length} node`), `tree meta: ${await page.textContent('#tree-meta')}`);
    assert(n === nodes.length, `${n} <g class=node>, ${nodes.length} node events`);
    const leaves = await page.locator('#tree svg g.node.leaf').count();
    assert(leaves === nodes.filter((e) => e.data.leaf).length, `${leaves} leaves`);
    const edges = await page.locator('#tree svg path.edge').count();
    assert(edges === nodes.length, `${edges} edges`);
    // The best suggestion's path is highlighted: one node per token.
    const done = direct.find((e) => e.event === 'done').data;
    const onPath = await page.locator('#tree svg g.node.on-path').count();
    assert(onPath === done.suggestions[0].tokens.length, `${onPath} nodes on the path, ${done.suggestions[0].tokens.length} tokens`);
    // Hovering another suggestion highlights its path.
    await page.hover('#sugg-list li:nth-child(2) .sugg-text');
    const leaf = await page.locator('#tree svg g.node.leaf.on-path').getAttribute('data-id');
    assert(+leaf === done.suggestions[1].node, `hovered leaf ${leaf}, want ${done.suggestions[1].node}`);
  });

  await step('download the SVG', async () => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#btn-download')]);
    const file = join(OUT, 'loom-tree.svg');
    await dl.saveAs(file);
    const svg = readFileSync(file, 'utf8');
    assert(/^(<\?xml[^>]*>\s*)?<svg[\s>]/.test(svg), `not an SVG: ${svg.slice(0, 80)}`);
    assert(svg.includes('xmlns="http://www.w3.org/2000/svg"') && svg.includes('<style'), 'not standalone');
    const n = (svg.match(/<g class="node[ "]/g) || []).length;
    assert(n === direct.filter((e) => e.event === 'node').length, `${n} nodes in the file`);
    assert(dl.suggestedFilename().endsWith('.svg'), dl.suggestedFilename());
  });

  await step('accept a suggestion: the story grows by it and is kept', async () => {
    const before = await story();
    const s = (await suggestionTexts())[1];
    await page.click('#sugg-list li:nth-child(2) .sugg-text');
    const after = await story();
    assert(after === before + s, `story ${JSON.stringify(after)}, want ${JSON.stringify(before + s)}`);
    assert(await page.locator('#sugg-list li').count() === 0, 'the suggestions stay');
    await page.reload();
    await page.locator('#mix-body').waitFor({ state: 'visible', timeout: 15000 });
    assert(await story() === after, 'the story was not kept in localStorage');
    const depth = await page.inputValue('#settings-form [name=depth]');
    assert(depth === String(PARAMS.depth), `settings not kept: depth ${depth}`);
  });

  await step('Ctrl+Enter suggests; edit a suggestion and continue', async () => {
    await page.focus('#story');
    const before = await story();
    const want = (await sse('/api/loom', { text: before, ...PARAMS })).find((e) => e.event === 'done').data.suggestions.map((s) => s.text);
    await page.keyboard.press('Control+Enter');
    await page.locator('#sugg-list li').first().waitFor();
    await idle();
    assert(eq(await suggestionTexts(), want), 'Ctrl+Enter suggestions differ from the API');
    await page.click('#sugg-list li:nth-child(1) .sugg-edit');
    const input = page.locator('#sugg-list .sugg-input');
    await input.fill(' and a cat');
    await input.press('Control+Enter');   // accept the edited text and suggest again
    await poll(async () => (await story()) === before + ' and a cat', 'the edited text was not appended');
    await page.locator('#sugg-list li').first().waitFor();
    await idle();
    const again = (await sse('/api/loom', { text: before + ' and a cat', ...PARAMS })).find((e) => e.event === 'done').data.suggestions.map((s) => s.text);
    assert(eq(await suggestionTexts(), again), 'the continued round differs from the API');
    // "Suggest again" repeats the same request.
    await page.click('#btn-again');
    await idle();
    assert(eq(await suggestionTexts(), again), 'suggest again differs');
  });

  await step('a 400 from the API is shown', async () => {
    expectErrors = true;   // chromium logs the 400 response
    await setSettings({ cutoff: 5 });
    await page.click('#btn-suggest');
    await page.locator('#banner').waitFor({ state: 'visible' });
    const msg = await page.textContent('#banner-text');
    assert(/cutoff/.test(msg) && /400/.test(msg), `banner: ${msg}`);
    await page.click('#banner-close');
    expectErrors = false;
    await page.click('#btn-defaults');
    assert(await page.inputValue('#settings-form [name=cutoff]') === '0.2', 'defaults not restored');
    await setSettings(PARAMS);
  });

  await step('an unreachable server is shown', async () => {
    expectErrors = true;
    await page.route('**/api/loom', (r) => r.abort('connectionrefused'));
    await page.click('#btn-suggest');
    await page.locator('#banner').waitFor({ state: 'visible' });
    const msg = await page.textContent('#banner-text');
    assert(/cannot be reached/.test(msg), `banner: ${msg}`);
    await page.unroute('**/api/loom');
    await idle();
    await page.click('#banner-close');
    expectErrors = false;
  });

  await step('an error event is shown', async () => {
    const body = 'event: node\ndata: {"id":0,"parent":-1,"depth":1,"token":5,"text":" a","prob":0.5,"score":0.5,"leaf":false}\n\n'
      + 'event: error\ndata: {"message":"the context is full"}\n\n';
    await page.route('**/api/loom', (r) => r.fulfill({ status: 200, headers: { 'Content-Type': 'text/event-stream' }, body }));
    await page.click('#btn-suggest');
    await page.locator('#banner').waitFor({ state: 'visible' });
    await page.unroute('**/api/loom');
    await idle();
    const msg = await page.textContent('#banner-text');
    assert(msg.includes('the context is full'), `banner: ${msg}`);
    assert(await page.locator('#tree svg g.node').count() === 1, 'the partial tree is not drawn');
    await page.click('#banner-close');
  });

  await step('mix in reference mode: tokens coloured by model', async () => {
    const text = await story();
    const done = (await sse('/api/mix', { text, mode: 'reference', turn: 1, n: 16 })).find((e) => e.event === 'done').data;
    await page.selectOption('#mix-form [name=mode]', 'reference');
    await page.fill('#mix-form [name=n]', '16');
    await page.click('#btn-mix');
    await idle();
    const toks = await page.$$eval('#mix-out .tok', (ns) => ns.map((n) => ({ m: n.getAttribute('data-model'), t: n.textContent, c: getComputedStyle(n).color, title: n.title })));
    assert(toks.length === 16, `${toks.length} tokens`);
    assert(toks.every((t) => t.m === '0'), `reference mode credits model 0: ${toks.map((t) => t.m)}`);
    assert(toks.map((t) => t.t).join('') === done.text, `mixed ${JSON.stringify(toks.map((t) => t.t).join(''))}, api ${JSON.stringify(done.text)}`);
    const legend = await page.$eval('#mix-legend li[data-model="0"] .swatch', (s) => getComputedStyle(s).backgroundColor);
    assert(toks.every((t) => t.c === legend), `colour ${toks[0].c} vs legend ${legend}`);
    assert(toks.every((t) => /stories260K/.test(t.title) && /%/.test(t.title)), `tooltip: ${toks[0].title}`);
    await page.click('#btn-mix-accept');
    assert(await story() === text + done.text, 'the mixed text was not appended');
  });

  // Two copies of one model never disagree: a recorded-style stream shows how disagreements look.
  await step('mix disagreements are underlined with every model\'s probability', async () => {
    const ev = (name, d) => `event: ${name}\ndata: ${JSON.stringify(d)}\n\n`;
    const body = ev('token', { index: 0, text: ' The', model: 0, probs: [0.5, 0.25], disagree: false })
      + ev('token', { index: 1, text: ' dog', model: 0, probs: [0.4, 0.1], disagree: true })
      + ev('token', { index: 2, text: ' ran', model: 1, probs: [0.3, 0.6], disagree: false })
      + ev('done', { text: ' The dog ran', tokens: 3, ms: 1 });
    await page.route('**/api/mix', (r) => r.fulfill({ status: 200, headers: { 'Content-Type': 'text/event-stream' }, body }));
    await page.click('#btn-mix');
    await idle();
    await page.unroute('**/api/mix');
    const toks = await page.$$eval('#mix-out .tok', (ns) => ns.map((n) => ({ m: n.dataset.model, d: n.classList.contains('disagree'), title: n.title, line: getComputedStyle(n).textDecorationLine, c: getComputedStyle(n).color })));
    assert(eq(toks.map((t) => [t.m, t.d]), [['0', false], ['0', true], ['1', false]]), JSON.stringify(toks));
    assert(toks[1].line.includes('underline') && !toks[0].line.includes('underline'), `decoration ${toks[1].line}`);
    assert(/40\.0%/.test(toks[1].title) && /10\.0%/.test(toks[1].title), `tooltip ${toks[1].title}`);
    assert(toks[0].c !== toks[2].c, 'both models have the same colour');
    await page.focus('#mix-out .tok.disagree');   // keyboard: the tooltip shows on focus
    const tip = await page.$eval('#mix-out .tok.disagree', (n) => getComputedStyle(n, '::after').content);
    assert(/40\.0%/.test(tip), `focus tooltip ${tip}`);
  });

  await step('mix round-robin credits both models; Stop aborts', async () => {
    await page.selectOption('#mix-form [name=mode]', 'round-robin');
    await page.fill('#mix-form [name=turn]', '2');
    await page.fill('#mix-form [name=n]', '8');
    await page.click('#btn-mix');
    await idle();
    const ms = await page.$$eval('#mix-out .tok', (ns) => ns.map((n) => n.getAttribute('data-model')).join(''));
    assert(ms === '00110011', `round-robin credits ${ms}`);
    await page.fill('#mix-form [name=n]', '512');
    await page.fill('#mix-form [name=turn]', '1');
    await page.click('#btn-mix');
    await poll(async () => (await page.locator('#mix-out .tok').count()) >= 3, 'no tokens streamed');
    await page.keyboard.press('Escape');
    await idle();
    const n = await page.locator('#mix-out .tok').count();
    assert(n < 512, `${n} tokens: Stop did not stop`);
    assert(/stopped/i.test(await page.textContent('#status')), `status: ${await page.textContent('#status')}`);
    assert(await page.locator('#banner').isHidden(), 'an error was shown for Stop');
    // The server is free again: a new tree is answered.
    const r = await sse('/api/loom', { text: TEXT, depth: 2 });
    assert(r.some((e) => e.event === 'done'), 'the server did not recover');
    await page.fill('#mix-form [name=n]', '16');
  });

  await step('responsive: no horizontal overflow on a phone', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.click('#btn-suggest');
    await idle();
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(over <= 1, `the page is ${over}px wider than the screen`);
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  await step('no console errors', async () => {
    assert(consoleErrors.length === 0, consoleErrors.join('\n'));
  });
} catch (e) {
  setupError = e;
}
await run.finish(setupError);
