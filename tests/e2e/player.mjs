// End-to-end test of the browser player (make e2e): starts `simularity
// serve` on the demo scenario with stories260K, drives Debian's chromium
// through playwright-core, and checks the page against the story API.
// Screenshots of every step go to build/e2e/player-NN-step.png, the
// server's log to build/e2e/player-server.log. Prints "e2e: N passed, M failed".

import { join } from 'node:path';
import { ROOT, MODEL, CHROMIUM, STEP_TIMEOUT, assert, poll, begin } from './harness.mjs';

const run = await begin({ tag: 'e2e', prefix: 'player', stale: /^player-.*\.png$/, what: 'the browser tests' });
const { chromium, tmp, step, screenshot } = run;

let server, browser;
const consoleErrors = [];
let page, base, storyId = 0;
const inflight = new Map();   // request -> start time (printed when a step fails)
run.onFail = () => {
  for (const [r, t] of inflight) if (!r.url().includes('/events')) console.log(`       pending for ${Date.now() - t} ms: ${r.method()} ${r.url()}`);
};

async function apiGet(path) {
  const r = await fetch(base + path);
  if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}
const story = () => apiGet(`/api/stories/${storyId}`);
const head = (s) => s.path[s.path.length - 1];

// The player is idle: no operation running, the line fully shown.
async function idle() {
  await page.waitForFunction(() => {
    const d = document.getElementById('dialogue');
    return d && d.getAttribute('aria-busy') !== 'true' && !document.querySelector('#line.typing');
  }, null, { timeout: STEP_TIMEOUT });
}

// The line on screen is the API's head line (text, speaker, n/m).
async function lineMatches(s) {
  const h = head(s);
  await poll(async () => {
    const ui = await page.evaluate(() => ({
      text: document.querySelector('#line .text').textContent,
      update: document.getElementById('line').dataset.update,
      name: document.getElementById('nameplate').hidden ? '' : document.getElementById('nameplate').textContent,
      variants: document.getElementById('variants').hidden ? '' : document.getElementById('variant-text').textContent,
    }));
    if (ui.text !== h.text) return `the line shows ${JSON.stringify(ui.text)}, the API's head is ${JSON.stringify(h.text)}`;
    if (ui.update !== String(h.id)) return `the line is update ${ui.update}, the API's head is ${h.id}`;
    const want = h.variants > 1 ? `${h.variant}/${h.variants}` : '';
    if (ui.variants !== want) return `variants show ${JSON.stringify(ui.variants)}, want ${JSON.stringify(want)}`;
    return true;
  }, 'the dialogue does not show the head line');
}

// The stage in the DOM is the stage the API reports: the background of its
// scene, and each character's body, outfit and expression layers (loaded), in order.
let manifest, assetBase;
async function stageMatches(s) {
  const st = s.stage;
  const url = (a) => assetBase + a.path.split('/').map(encodeURIComponent).join('/');
  const want = {
    bg: url(manifest.scenes.find((x) => x.id === st.scene).background),
    sprites: st.characters.map((c) => {
      const ch = manifest.characters.find((x) => x.id === c.character);
      const body = ch.bodies.find((b) => b.id === c.body) || ch.bodies[0];
      const o = ch.outfits.find((x) => x.id === c.outfit);
      const e = ch.expressions.find((x) => x.id === c.expression);
      return { character: c.character, body: url(body.image), outfit: url(o.layers[body.id]), expression: url(e.layers[body.id]) };
    }),
  };
  await poll(async () => {
    const ui = await page.evaluate(() => {
      const live = (sel, root = document) => [...root.querySelectorAll(sel)].filter((e) => !e.dataset.leaving);
      const bgs = live('#bg-layer img.bg');
      const sprites = live('#sprites .sprite[data-character]')
        .map((el) => ({ el, x: parseFloat(el.style.getPropertyValue('--x')) }))
        .sort((a, b) => a.x - b.x)
        .map(({ el }) => {
          const layer = (k) => live(`img.layer.${k}`, el).map((i) => ({ src: i.dataset.src, ok: i.complete && i.naturalWidth > 0, r: i.getBoundingClientRect() }));
          return { character: el.dataset.character, body: layer('body'), outfit: layer('outfit'), expression: layer('expression'),
            visible: getComputedStyle(el).opacity > 0.95, h: el.getBoundingClientRect().height };
        });
      const stageH = document.getElementById('stage').getBoundingClientRect().height;
      return { bg: bgs.map((b) => ({ src: b.dataset.src, ok: b.complete && b.naturalWidth > 0, op: +getComputedStyle(b).opacity })), sprites, stageH };
    });
    if (ui.bg.length !== 1) return `${ui.bg.length} backgrounds shown`;
    if (ui.bg[0].src !== want.bg) return `background ${ui.bg[0].src}, the API's scene has ${want.bg}`;
    if (!ui.bg[0].ok || ui.bg[0].op < 0.95) return 'the background image is not loaded and shown';
    if (ui.sprites.length !== want.sprites.length) return `${ui.sprites.length} sprites, the API has ${want.sprites.length} characters on stage`;
    for (let i = 0; i < want.sprites.length; i++) {
      const u = ui.sprites[i], w = want.sprites[i];
      if (u.character !== w.character) return `sprite ${i} is ${u.character}, the API has ${w.character}`;
      for (const k of ['body', 'outfit', 'expression']) {
        if (u[k].length !== 1) return `${w.character}: ${u[k].length} ${k} layers`;
        if (u[k][0].src !== w[k]) return `${w.character}: ${k} ${u[k][0].src}, want ${w[k]}`;
        if (!u[k][0].ok) return `${w.character}: the ${k} image did not load`;
      }
      if (!u.visible) return `${w.character} is not fully shown yet`;
      if (u.h < ui.stageH * 0.5) return `${w.character} is ${u.h}px tall on a ${ui.stageH}px stage`;
      const b = u.body[0].r, e = u.expression[0].r;
      if (e.left < b.left - 1 || e.right > b.right + 1 || e.top < b.top - 1 || e.bottom > b.bottom + 1) return `${w.character}: the expression layer is outside the body`;
    }
    return true;
  }, 'the stage does not match the API');
}

async function pressAndWait(action, changed, what) {
  const before = await story();
  await action();
  let after;
  await poll(async () => {
    after = await story();
    if (after.busy) return 'busy';
    return changed(before, after) ? true : 'no change yet';
  }, what, STEP_TIMEOUT - 5000);
  await idle();
  return after;
}

// ------------------------------------------------------------ the run
let setupError = null;
try {
  server = run.server = await run.startServer(['-m', MODEL, '--scenarios', join(ROOT, 'scenarios'), '--db', join(tmp, 'stories.db'),
    '-c', '8192', '--story-ctx', '8192']);
  base = server.base.replace(/\/$/, '');
  console.log(`e2e: server at ${base}, chromium ${CHROMIUM}, screenshots in build/e2e/`);
  browser = run.browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // Instant text keeps the run short; the stream still arrives in text events.
  await context.addInitScript(() => {
    if (!localStorage.getItem('simularity.settings')) localStorage.setItem('simularity.settings', JSON.stringify({ text_speed: 200 }));
  });
  page = run.page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`console: ${m.text()} (${(m.location() || {}).url || ''})`); });
  page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
  page.on('request', (r) => inflight.set(r, Date.now()));
  page.on('requestfinished', (r) => inflight.delete(r));
  page.on('requestfailed', (r) => inflight.delete(r));
  page.on('requestfailed', (r) => { if (!r.url().includes('/events')) consoleErrors.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`); });

  await step('library lists the demo scenario', async () => {
    await page.goto(base + '/');
    const card = page.locator('.scenario-card[data-scenario="lighthouse-night"]');
    await card.waitFor({ timeout: 15000 });
    await poll(() => card.locator('.cover img').evaluate((i) => i.complete && i.naturalWidth > 0), 'the cover did not load');
    const text = await card.innerText();
    assert(text.includes("The Lighthouse Keeper's Night"), 'the card has no title');
    assert(text.includes('A storm, a late boat'), 'the card has no teaser');
  });

  await step('start the demo scenario', async () => {
    await page.locator('.scenario-card[data-scenario="lighthouse-night"] .start-btn').click();
    await page.waitForURL(/#\/story\/\d+$/, { timeout: 15000 });
    storyId = +page.url().match(/story\/(\d+)/)[1];
    const s = await story();
    assert(s.scenario === 'lighthouse-night', `the story's scenario is ${s.scenario}`);
    assert(s.path.length > 0, 'no opening lines');
    const det = await apiGet('/api/scenarios/lighthouse-night');
    manifest = det.manifest;
    assetBase = det.assetBase;
    await idle();
    await lineMatches(s);
    await stageMatches(s);
    // The scene's ambience loops once the page had a gesture (the click).
    const want = manifest.scenes.find((x) => x.id === s.stage.scene).ambience.map((a) => assetBase + a.path);
    await poll(async () => {
      const playing = (await page.locator('#stage').getAttribute('data-ambience') || '').split(' ').filter(Boolean);
      return want.every((w) => playing.includes(w)) ? true : `playing ${JSON.stringify(playing)}, want ${JSON.stringify(want)}`;
    }, 'the ambience is not playing', 10000);
  });

  for (let i = 1; i <= 3; i++) {
    await step(`advance line ${i}`, async () => {
      const useKey = i === 2;
      // Watch the line: while the model writes it shows the streamed text.
      await page.evaluate(() => {
        window.__streamed = [];
        const line = document.getElementById('line');
        new MutationObserver(() => {
          if (line.dataset.update === 'live') window.__streamed.push(line.querySelector('.text').textContent);
        }).observe(line, { subtree: true, childList: true, characterData: true, attributes: true });
      });
      const s = await pressAndWait(
        async () => {
          if (useKey) { await page.locator('#stage').focus().catch(() => {}); await page.keyboard.press('Enter'); }
          else await page.locator('#btn-advance').click();
        },
        (b, a) => a.path.length > b.path.length, 'no new line was stored');
      assert(head(s).source !== 'script' || s.path.length, 'the head is not a model line');
      await lineMatches(s);
      await stageMatches(s);
      const streamed = await page.evaluate(() => window.__streamed);
      assert(streamed.length > 1 && head(s).text.startsWith(streamed[Math.floor(streamed.length / 2)]),
        `the line did not stream in (${streamed.length} partial texts seen)`);
      const speed = await page.locator('#speed-text').innerText();
      assert(/tok\/s/.test(speed), `no generation speed shown (${speed})`);
      const ctx = await page.locator('#ctx-text').innerText();
      assert(ctx.endsWith(String(s.context.size)) || ctx.includes('k'), `context gauge shows ${ctx}, size ${s.context.size}`);
    });
  }

  let regenerated;
  await step('regenerate (R) makes variant 2/2', async () => {
    await page.locator('#btn-advance').focus();
    regenerated = await pressAndWait(() => page.keyboard.press('r'),
      (b, a) => head(a).variants > head(b).variants, 'no new variant');
    assert(head(regenerated).variant === head(regenerated).variants, 'the new variant is not shown');
    await lineMatches(regenerated);
    await stageMatches(regenerated);
  });

  await step('switch variants (← and the › button)', async () => {
    const h = head(regenerated);
    let s = await pressAndWait(() => page.keyboard.press('ArrowLeft'),
      (b, a) => head(a).variant === h.variant - 1, 'ArrowLeft did not choose the previous variant');
    assert(head(s).id !== h.id, 'the same update is shown');
    await lineMatches(s);
    await stageMatches(s);
    await screenshot('variant-previous');
    s = await pressAndWait(() => page.locator('#btn-next').click(),
      (b, a) => head(a).variant === h.variant, 'the next button did not choose the next variant');
    assert(head(s).id === h.id, 'the regenerated line is not back');
    await lineMatches(s);
  });

  const EDITED = 'Edda lifts the lantern: "Mind the third step, Inspector."';
  await step('edit the line inline', async () => {
    await page.locator('#btn-edit').click();
    const ta = page.locator('#edit-text');
    await ta.waitFor();
    await ta.fill(EDITED);
    await screenshot('editing');
    const s = await pressAndWait(() => ta.press('Enter'), (b, a) => head(a).text === EDITED, 'the edit was not stored');
    assert(head(s).edit_of > 0, 'the edit does not point at the original');
    assert(await page.locator('#line-edit').isHidden(), 'the editor is still open');
    await lineMatches(s);
  });

  await step('branch view shows the whole tree', async () => {
    await page.keyboard.press('b');
    await page.locator('#panel-tree .t-node').first().waitFor();
    const tree = await apiGet(`/api/stories/${storyId}/tree`);
    const n = await page.locator('#panel-tree .t-node').count();
    assert(n === tree.updates.length, `${n} nodes shown, the tree has ${tree.updates.length} updates`);
    assert(await page.locator(`#panel-tree .t-node.head[data-update="${tree.head}"]`).count() === 1, 'the head is not marked');
    await screenshot('branches');
    // Pick a line of another branch: the story follows it.
    const other = page.locator('#panel-tree .t-node:not(.on-path)').first();
    const otherId = +(await other.getAttribute('data-update'));
    const s = await pressAndWait(() => other.click(), (b, a) => a.path.some((u) => u.id === otherId), 'choosing a branch did not follow it');
    await poll(async () => (await page.locator(`#panel-tree .t-node.on-path[data-update="${otherId}"]`).count()) === 1, 'the branch view does not show the new path');
    await page.keyboard.press('Escape');
    await lineMatches(s);
    await stageMatches(s);
    await poll(() => page.locator('#panel-tree').isHidden(), 'Esc did not close the branch view');
  });

  let rewoundTo;
  await step('history: rewind to an earlier line', async () => {
    await page.keyboard.press('h');
    const items = page.locator('#history-list .h-item');
    await items.first().waitFor();
    const before = await story();
    assert(await items.count() === before.path.length, `history has ${await items.count()} lines, the path ${before.path.length}`);
    await screenshot('history');
    const target = before.path[before.path.length - 3];
    rewoundTo = target.id;
    const s = await pressAndWait(() => page.locator(`#history-list .h-item[data-update="${target.id}"] button`, { hasText: 'Rewind here' }).click(),
      (b, a) => head(a).id === target.id, 'the story was not rewound');
    await page.keyboard.press('Escape');
    await poll(() => page.locator('#panel-history').isHidden(), 'Esc did not close the history');
    await lineMatches(s);
    await stageMatches(s);
  });

  await step('save with a thumbnail', async () => {
    await page.keyboard.press('s');
    await page.locator('#save-name').fill('e2e checkpoint');
    const s = await pressAndWait(() => page.locator('#save-form button[type=submit]').click(),
      (b, a) => a.saves.length > b.saves.length, 'no save was stored');
    const sv = s.saves[s.saves.length - 1];
    assert(sv.name === 'e2e checkpoint' && sv.update === rewoundTo, `save ${JSON.stringify(sv)}`);
    assert(sv.thumbnail, 'the save has no thumbnail');
    const r = await fetch(base + sv.thumbnail);
    assert(r.ok && (r.headers.get('content-type') || '').includes('image/png'), `the thumbnail is ${r.status} ${r.headers.get('content-type')}`);
    const png = Buffer.from(await r.arrayBuffer());
    assert(png.length > 2000, `the thumbnail is only ${png.length} bytes (the stage was not drawn)`);
    await poll(() => page.locator(`#saves-list .save-item[data-save="${sv.id}"] img`).evaluate((i) => i.complete && i.naturalWidth > 0), 'the thumbnail is not shown');
    await screenshot('saves');
    await page.keyboard.press('Escape');
  });

  await step('reload the page and resume', async () => {
    await page.reload();
    await page.locator('#player').waitFor();
    await idle();
    const s = await story();
    assert(head(s).id === rewoundTo, 'the story moved');
    await lineMatches(s);
    await stageMatches(s);
    // ... and continue from there.
    const s2 = await pressAndWait(() => page.locator('#btn-advance').click(), (b, a) => a.path.length > b.path.length, 'no line after resuming');
    await lineMatches(s2);
    await stageMatches(s2);
  });

  await step('load the save', async () => {
    await page.locator('#btn-saves').click();
    const load = page.locator('#saves-list .save-item button', { hasText: 'Load' }).first();
    await load.waitFor();
    const s = await pressAndWait(() => load.click(), (b, a) => head(a).id === rewoundTo, 'the save was not loaded');
    await poll(() => page.locator('#panel-saves').isHidden(), 'the saves panel stayed open');
    await lineMatches(s);
    await stageMatches(s);
  });

  await step('thumbs up a line in the history', async () => {
    await page.keyboard.press('h');
    const h = head(await story());
    const up = page.locator(`#history-list .h-item[data-update="${h.id}"] button[aria-label="Good line"]`);
    await up.waitFor();
    await pressAndWait(() => up.click(), (b, a) => head(a).thumbs === 1, 'the thumbs were not stored');
    await poll(async () => (await up.getAttribute('aria-pressed')) === 'true', 'the button is not pressed');
    await page.keyboard.press('Escape');
  });

  await step('fork: continue in a copy', async () => {
    const src = await story();
    await page.locator('#btn-saves').click();
    await page.locator('#btn-fork').click();
    await page.waitForURL((u) => /#\/story\/\d+$/.test(u.hash) && !u.hash.endsWith(`/${storyId}`), { timeout: 15000 });
    const copyId = +page.url().match(/story\/(\d+)/)[1];
    const copy = await apiGet(`/api/stories/${copyId}`);
    assert(copy.path.map((u) => u.text).join('\n') === src.path.map((u) => u.text).join('\n'), 'the copy has another branch');
    await idle();
    await lineMatches(copy);
    await stageMatches(copy);
    await page.goto(`${base}/#/story/${storyId}`);
    await page.locator('#player').waitFor();
    await idle();
    await lineMatches(await story());
  });

  await step('help overlay and keyboard focus', async () => {
    await page.locator('#btn-advance').focus();
    await page.keyboard.press('?');
    await page.locator('#panel-help').waitFor();
    await screenshot('help');
    await page.keyboard.press('Escape');
    await poll(() => page.locator('#panel-help').isHidden(), 'Esc did not close the help');
    await page.keyboard.press('/');
    assert(await page.evaluate(() => document.activeElement.id) === 'say-input', '/ did not focus the input');
    await page.keyboard.press('Escape');
  });

  await step('phone width', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(800);
    const s = await story();
    await stageMatches(s);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 0, `the page is ${overflow}px wider than the phone`);
    const box = await page.locator('#btn-advance').boundingBox();
    assert(box && box.y + box.height <= 844, 'the advance button is off screen');
    await screenshot('phone');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await step('library lists the story to continue', async () => {
    await page.goto(base + '/#/');
    const item = page.locator(`#story-list .story-item[data-story="${storyId}"]`);
    await item.waitFor({ timeout: 10000 });
    await screenshot('library-continue');
    await item.locator('a.btn', { hasText: 'Continue' }).click();
    await page.waitForURL(new RegExp(`#/story/${storyId}$`));
    await idle();
    const s = await story();
    await lineMatches(s);
    await stageMatches(s);
  });

  await step('delete a story from the library', async () => {
    const r = await fetch(base + '/api/stories', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ scenario: 'lighthouse-night', title: 'to delete' }) });
    assert(r.status === 201, `POST /api/stories: ${r.status}`);
    const doomed = (await r.json()).id;
    await page.goto(base + '/#/');
    const item = page.locator(`#story-list .story-item[data-story="${doomed}"]`);
    await item.waitFor({ timeout: 10000 });
    const del = item.locator('button', { hasText: 'Delete' });
    await del.click();
    await poll(async () => (await del.innerText()).includes('Really'), 'no confirmation asked');
    await del.click();
    await item.waitFor({ state: 'detached' });
    const g = await fetch(`${base}/api/stories/${doomed}`);
    assert(g.status === 404, `the deleted story answers ${g.status}`);
    assert(await page.locator(`#story-list .story-item[data-story="${storyId}"]`).count() === 1, 'the other story is gone too');
  });

  await step('no console errors', async () => {
    assert(consoleErrors.length === 0, consoleErrors.join('\n'));
  });
} catch (e) {
  setupError = e;
}
await run.finish(setupError);
