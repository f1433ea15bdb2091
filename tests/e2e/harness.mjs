// harness.mjs — what the browser tests (player.mjs, loom.mjs) share: the
// checks before starting (the model, Debian's chromium, playwright-core),
// `simularity serve` on a free port, steps with a time limit and a
// screenshot each, and the summary line "TAG: N passed, M failed".

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, createWriteStream, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const MODEL = resolve(ROOT, process.env.E2E_MODEL || '../shared/models/stories260K.gguf');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const OUT = join(ROOT, 'build/e2e');
export const STEP_TIMEOUT = 60000;

export function assert(cond, msg) { if (!cond) throw new Error(msg); }

// Until fn() returns true (or `what` fails, with fn's last answer or error).
export async function poll(fn, what, ms = 20000, every = 100) {
  const t0 = Date.now();
  let last;
  for (;;) {
    try { last = await fn(); if (last === true) return; } catch (e) { last = e.message; }
    if (Date.now() - t0 > ms) throw new Error(`${what}${last && last !== false ? `: ${last}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// A test run: `tag` names it in the summary, `prefix` its files in build/e2e
// (old ones matching `stale` are removed). Exits the process (0) when the model
// is absent and (1) when chromium or playwright-core is missing.
export async function begin({ tag, prefix, stale, what }) {
  const stop = (line, failed) => {
    console.log(`${tag}: ${line}`);
    console.log(`${tag}: 0 passed, ${failed} failed${failed ? '' : ' (skipped)'}`);
    process.exit(failed ? 1 : 0);
  };
  if (!existsSync(MODEL)) stop(`SKIPPED — the model ${MODEL} is absent (put stories260K.gguf there to run ${what})`, 0);
  if (!existsSync(CHROMIUM)) stop(`FAILED — no browser at ${CHROMIUM} (apt-get install chromium; make deps does)`, 1);
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch {
    stop('FAILED — playwright-core is not installed (npm ci)', 1);
  }
  mkdirSync(OUT, { recursive: true });
  for (const f of readdirSync(OUT)) if (stale.test(f)) rmSync(join(OUT, f));
  const run = {
    tag, chromium, results: [], shot: 0, page: null, server: null, browser: null,
    tmp: mkdtempSync(join(tmpdir(), `simularity-${prefix}-`)),
    screenshotOptions: {},
    onFail: () => {},
  };
  // `simularity serve ARGS --port 0`, its output in build/e2e/PREFIX-server.log;
  // resolves with the process, its base URL in .base.
  run.startServer = (args) => new Promise((res, rej) => {
    const bin = process.env.SIM_BIN ? resolve(process.env.SIM_BIN) : join(ROOT, 'simularity');
    const srv = spawn(bin, ['serve', ...args, '--port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const log = createWriteStream(join(OUT, `${prefix}-server.log`));
    let buf = '';
    const timer = setTimeout(() => rej(new Error(`the server did not start in 30 s:\n${buf}`)), 30000);
    srv.stdout.pipe(log);
    srv.stderr.on('data', (d) => {
      log.write(d);
      buf += d;
      const m = buf.match(/listening on (http:\/\/[^\s]+)/);
      if (m && !srv.base) { srv.base = m[1]; clearTimeout(timer); res(srv); }
    });
    srv.on('exit', (code) => { clearTimeout(timer); if (!srv.base) rej(new Error(`the server exited (${code}):\n${buf}`)); });
  });
  run.screenshot = async (name) => {
    run.shot += 1;
    await run.page.screenshot({ path: join(OUT, `${prefix}-${String(run.shot).padStart(2, '0')}-${name}.png`), ...run.screenshotOptions });
  };
  run.step = async (name, fn) => {
    const t0 = Date.now();
    try {
      await Promise.race([fn(), new Promise((_, rej) => setTimeout(() => rej(new Error('timed out')), STEP_TIMEOUT))]);
      run.results.push({ name, ok: true });
      console.log(`  ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      run.results.push({ name, ok: false });
      console.log(`  FAIL ${name}: ${e && e.message ? e.message.split('\n').slice(0, 8).join('\n       ') : e}`);
      run.onFail();
    }
    try { await run.screenshot(name.replace(/[^a-z0-9]+/gi, '-').toLowerCase()); } catch { /* page gone */ }
  };
  // After the steps (or a setup error e): close everything, print the summary, exit.
  run.finish = async (e) => {
    if (e) {
      run.results.push({ name: 'setup', ok: false });
      console.log(`  FAIL setup: ${e && e.stack ? e.stack : e}`);
    }
    if (run.browser) await run.browser.close().catch(() => {});
    if (run.server) {
      run.server.kill('SIGTERM');
      await new Promise((r) => { run.server.on('exit', r); setTimeout(r, 5000); });
    }
    rmSync(run.tmp, { recursive: true, force: true });
    const passed = run.results.filter((r) => r.ok).length;
    const failed = run.results.length - passed;
    console.log(`${tag}: ${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  };
  return run;
}
