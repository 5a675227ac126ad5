// What the browser tests (`run.mjs`) and the demo's speed measurement (`speed.mjs`) do with a page of the S3T web app.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';

export const TIMEOUT = 120_000;

/// Records the page's long main-thread tasks (> 50 ms), so the tests can report the longest freeze.
export async function watchLongTasks(page) {
  await page.addInitScript(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push(Math.round(e.duration));
    }).observe({ type: 'longtask', buffered: true });
  });
}

export const longestTask = (page) => page.evaluate(() => Math.max(0, ...window.__longTasks));

/// Times, inside the page, each click until the next frame after the accuracy element changes its `data-deleted`
/// (the click's event time to the first frame that can show the new figure), without the test harness's own
/// latency (its click round trip and polling).
export async function watchClicks(page) {
  await page.addInitScript(() => {
    window.__click = null;
    window.__clickToAccuracy = null;
    addEventListener('click', (e) => { window.__click = e.timeStamp; window.__clickToAccuracy = null; }, true);
    new MutationObserver((records) => {
      const changed = records.some((r) => r.target.dataset && r.target.dataset.testid === 'accuracy');
      if (!changed || window.__click === null) return;
      const clicked = window.__click;
      window.__click = null;
      requestAnimationFrame(() => { window.__clickToAccuracy = performance.now() - clicked; });
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-deleted'] });
  });
}

/// The in-page click-to-accuracy time of the last click (see `watchClicks`).
export async function clickToAccuracy(page) {
  await page.waitForFunction(() => window.__clickToAccuracy !== null, null, { timeout: TIMEOUT });
  return Math.round(await page.evaluate(() => window.__clickToAccuracy));
}

/// The environment variables `names`, each required (`how` says how to run the script that needs them).
export function requireEnv(names, how) {
  const env = Object.fromEntries(names.map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(env)) if (!v) throw new Error(`${k} is not set (run through \`${how}\`)`);
  return env;
}

/// Clicks `sample` (deleting it; the page then has one deletion) and records in `figures`, under `label`, the
/// harness's and the page's click-to-accuracy times (see `watchClicks`).
export async function timeDeletion(page, figures, sample, label) {
  const started = Date.now();
  await sample.click();
  const shown = await accuracyAfter(page, 1);
  figures[`delete_to_accuracy_ms_${label}`] = Date.now() - started;
  figures[`delete_click_to_accuracy_in_page_ms_${label}`] = await clickToAccuracy(page);
  figures[`delete_to_accuracy_page_ms_${label}`] = shown.millis;
}

/// Headless Chromium, with WebGPU on the software adapter (SwiftShader) when `webgpu` is set.
export async function launch(executablePath, webgpu) {
  const args = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-dev-shm-usage'];
  if (webgpu) args.push('--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader');
  return chromium.launch({ executablePath, headless: true, args });
}

/// Waits until the page shows an accuracy for `deleted` deletions; returns its value.
export async function accuracyAfter(page, deleted) {
  const el = page.getByTestId('accuracy');
  await page.waitForFunction((n) => {
    const e = document.querySelector('[data-testid="accuracy"]');
    return e && e.dataset.deleted === String(n) && e.dataset.value !== undefined;
  }, deleted, { timeout: TIMEOUT });
  return { value: Number(await el.getAttribute('data-value')), millis: Number(await el.getAttribute('data-millis')) };
}

/// Waits until the page also shows SISA's accuracy for `deleted` deletions (it follows S3T's), so the page is idle.
export async function settled(page, deleted) {
  await page.waitForFunction((n) => {
    const e = document.querySelector('[data-testid="sisa-accuracy"]');
    return e && e.dataset.deleted === String(n);
  }, deleted, { timeout: TIMEOUT });
}

/// Collects every response body, the wasm module included: Chromium compiles it while streaming, and then the
/// protocol has no body to give, so it is fetched again here.
export function recordBodies(page) {
  const bodies = [];
  page.on('response', async (r) => {
    try {
      bodies.push(await r.body());
    } catch {
      try { bodies.push(Buffer.from(await (await fetch(r.url())).arrayBuffer())); } catch { /* redirects */ }
    }
  });
  return bodies;
}

/// Bytes transferred, as served and gzipped (level 9). Call it after the timings: compressing slows the page.
export function transferred(bodies) {
  return {
    transferred_bytes: bodies.reduce((n, b) => n + b.length, 0),
    transferred_gzip_bytes: bodies.reduce((n, b) => n + gzipSync(b, { level: 9 }).length, 0),
  };
}

/// Serves `/MOUNT/…` (default `bundle`: the image model; `reviews`: the review model) of every page in `context`
/// from `dir` instead of the test server's bundle (a second bundle without a second server). A file that does not
/// exist is a 404. Returns the paths asked for (`requested`) and those that were not there (`missing`), so a test
/// can check which files the page fetched.
export async function serveBundle(context, dir, mount = 'bundle') {
  const requested = [];
  const missing = [];
  await context.route(`**/${mount}/**`, async (route) => {
    const rel = decodeURIComponent(new URL(route.request().url()).pathname).replace(`/${mount}/`, '');
    requested.push(rel);
    const file = join(dir, rel);
    const inside = rel.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
    if (!inside || !existsSync(file) || !statSync(file).isFile()) {
      missing.push(rel);
      await route.fulfill({ status: 404, body: 'not found' });
      return;
    }
    const type = rel.endsWith('.json') ? 'application/json' : 'application/octet-stream';
    await route.fulfill({ status: 200, body: readFileSync(file), contentType: type, headers: { 'Cache-Control': 'no-store' } });
  });
  return { requested, missing };
}

/// Ids on the grid of `shard`, one for each of its slices, read from the samples' labels; the grid stays filtered
/// to that shard, so they can be clicked.
export async function onePerSlice(page, shard, slices) {
  await page.getByTestId('filter-shard').selectOption(String(shard));
  const labels = await page.$$eval('[data-testid^="sample-"]', (els) => els.map((e) => e.getAttribute('aria-label')));
  const bySlice = new Map();
  const assert = (ok, what) => { if (!ok) throw new Error(what); };
  for (const label of labels) {
    const m = label.match(/^sample (\d+), .*, shard (\d+), slice (\d+)$/);
    if (m && Number(m[2]) === shard && !bySlice.has(m[3])) bySlice.set(m[3], Number(m[1]));
  }
  assert(bySlice.size === slices, `shard ${shard}: slices on the first page ${[...bySlice.keys()]}`);
  return [...bySlice.values()];
}

/// Waits until the accuracy shown is the one of the session's current state (a retrain changes it, not the
/// deletion count).
export async function currentAccuracy(page) {
  await page.waitForFunction(() => {
    const a = document.querySelector('[data-testid="accuracy"]');
    const live = document.querySelector('[data-testid="live-shards"]');
    return a && live && a.dataset.changes === live.dataset.changes && a.dataset.value !== '';
  }, null, { timeout: TIMEOUT });
  return Number(await page.getByTestId('accuracy').getAttribute('data-value'));
}

/// Starts collecting the long tasks from now on (those during a retrain) in `window.__retrainTasks`.
export async function watchRetrainTasks(page) {
  await page.evaluate(() => {
    window.__retrainTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__retrainTasks.push(Math.round(e.duration));
    }).observe({ type: 'longtask' });
  });
}

/// Retrains shard `shard` from its button: the time to the first retrained node and to the retrained shard (ms),
/// and the longest main-thread task meanwhile.
export async function timeRetrain(page, shard) {
  await watchRetrainTasks(page);
  const started = Date.now();
  await page.getByTestId(`retrain-button-${shard}`).click();
  await page.waitForFunction((s) => {
    const p = document.querySelector(`[data-testid="retrain-progress-${s}"]`);
    return p && Number(p.dataset.nodesDone) > 0;
  }, shard, { timeout: TIMEOUT * 5 });
  const firstNode = Date.now() - started;
  await page.getByTestId(`retrained-${shard}`).waitFor({ timeout: TIMEOUT * 10 });
  return {
    first_node_ms: firstNode,
    shard_ms: Date.now() - started,
    longest_task_ms: await page.evaluate(() => Math.max(0, ...window.__retrainTasks)),
  };
}

/// Classifies `text` with "try your own sentence" and returns the answer's element once it answers for the state
/// shown now (an answer is recomputed after each deletion or retrain).
export async function classify(page, text, timeout = TIMEOUT * 5) {
  await page.getByTestId('sentence-input').fill(text);
  await page.getByTestId('sentence-submit').click();
  await page.waitForFunction((t) => {
    const a = document.querySelector('[data-testid="sentence-answer"]');
    const live = document.querySelector('[data-testid="live-shards"]');
    return a && live && a.textContent.includes(t) && a.dataset.changes === live.dataset.changes;
  }, text, { timeout });
  return page.getByTestId('sentence-answer');
}
