// Headless-Chromium tests of the S3T web app. `cargo xtask test` builds the app and a small bundle, serves them on
// 127.0.0.1 and runs this file with BASE_URL, BUNDLE_DIR, TRAINER, CHROMIUM and ARTIFACTS set.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  accuracyAfter, clickToAccuracy, launch, longestTask, recordBodies, settled, TIMEOUT, transferred, watchClicks,
  watchLongTasks,
} from './page.mjs';

const { BASE_URL, BUNDLE_DIR, TRAINER, CHROMIUM, ARTIFACTS } = process.env;
for (const [k, v] of Object.entries({ BASE_URL, BUNDLE_DIR, TRAINER, CHROMIUM, ARTIFACTS })) {
  if (!v) throw new Error(`${k} is not set (run through \`cargo xtask test\`)`);
}
mkdirSync(ARTIFACTS, { recursive: true });
const metrics = {};

/// The trainer's view of the same deletions, on a copy of the bundle: served components and ensemble accuracy.
function trainerAfter(ids) {
  const dir = mkdtempSync(join(tmpdir(), 's3t-browser-'));
  const copy = join(dir, 'bundle');
  cpSync(BUNDLE_DIR, copy, { recursive: true });
  rmSync(join(copy, 'deletions.ledger'), { force: true });
  const deleted = ids.length
    ? JSON.parse(execFileSync(TRAINER, ['delete', copy, '--ids', ids.join(','), '--json']).toString())
    : { events: [] };
  const evaluation = JSON.parse(execFileSync(TRAINER, ['eval', copy, '--json', '--device', 'cpu', '--test-limit', '500']).toString());
  rmSync(dir, { recursive: true, force: true });
  return { deleted, evaluation };
}

async function cellStates(page) {
  return page.$$eval('[data-testid^="cell-"]', (cells) =>
    Object.fromEntries(cells.map((c) => [c.dataset.testid, c.dataset.active === 'true'])));
}

const manifest = JSON.parse(readFileSync(join(BUNDLE_DIR, 'manifest.json'), 'utf8'));
const slices = manifest.partition.slices;

/// Expected cell states from the trainer's events (the shared route reducer's output).
function expectedCells(events) {
  const active = manifest.sequences.map((seqs) => seqs.map(() => slices));
  for (const e of events) if (e.event === 'deactivated') active[e.shard][e.sequence] = e.from;
  const cells = {};
  active.forEach((seqs, s) => seqs.forEach((a, b) => {
    for (let g = 1; g <= slices; g++) cells[`cell-${s}-${b}-${g}`] = g <= a;
  }));
  return cells;
}

const results = [];
async function test(name, body) {
  // ONLY=substring runs the matching tests alone (for debugging).
  if (process.env.ONLY && !name.includes(process.env.ONLY)) return;
  const started = Date.now();
  try {
    await body();
    results.push({ name, ok: true, ms: Date.now() - started });
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    results.push({ name, ok: false, error: String(e && e.stack || e) });
    console.log(`FAIL ${name}\n${e && e.stack || e}`);
  }
}

// WebGPU runs on the software adapter here (slow), so the backend-independent checks run on the CPU backend.
const webgpu = await launch(CHROMIUM, true);
const cpu = await launch(CHROMIUM, false);

await test('loads on WebGPU, shows accuracy, saves a screenshot', async () => {
  const context = await webgpu.newContext({ viewport: { width: 1280, height: 1600 } });
  const page = await context.newPage();
  await watchLongTasks(page);
  page.on('console', (m) => { if (m.text().startsWith('s3t timing')) console.log(`  webgpu ${m.text()}`); });
  const bodies = recordBodies(page);
  const started = Date.now();
  await page.goto(BASE_URL);
  const first = await accuracyAfter(page, 0);
  metrics.first_accuracy_ms = Date.now() - started;
  assert.equal(await page.getByTestId('backend').innerText(), 'WebGPU');
  assert.ok(first.value > 0.3 && first.value <= 1, `accuracy ${first.value}`);
  const expected = trainerAfter([]).evaluation; // no deletions: the bundle as built
  await settled(page, 0);
  metrics.webgpu_longest_task_ms = await longestTask(page);
  Object.assign(metrics, transferred(bodies));
  await page.screenshot({ path: join(ARTIFACTS, 'main.png'), fullPage: true });
  assert.ok(Math.abs(first.value - expected.accuracy) <= 0.001, `page ${first.value} vs trainer ${expected.accuracy}`);
  await context.close();
});

await test('a deletion deactivates exactly the predicted cells; accuracy equals trainer eval; state survives reload and link', async () => {
  const context = await webgpu.newContext({ viewport: { width: 1280, height: 1600 } });
  const page = await context.newPage();
  await watchClicks(page);
  await page.goto(BASE_URL);
  await accuracyAfter(page, 0);
  await settled(page, 0);
  const id = 7;
  await page.getByTestId('filter-class').selectOption(''); // all classes
  const t0 = Date.now();
  await page.getByTestId(`sample-${id}`).click();
  const after = await accuracyAfter(page, 1);
  metrics.delete_to_accuracy_ms_new_node = Date.now() - t0;
  metrics.delete_click_to_accuracy_in_page_ms_new_node = await clickToAccuracy(page);
  metrics.delete_to_accuracy_page_ms_new_node = after.millis;
  const { deleted, evaluation } = trainerAfter([id]);
  assert.deepEqual(await cellStates(page), expectedCells(deleted.events));
  assert.ok(Math.abs(after.value - evaluation.accuracy) <= 0.001, `page ${after.value} vs trainer ${evaluation.accuracy}`);
  // Reset, then the same deletion again: every node it needs is memoised now.
  await settled(page, 1);
  const t1 = Date.now();
  await page.getByTestId('reset').click();
  await accuracyAfter(page, 0);
  metrics.reset_to_accuracy_ms = Date.now() - t1;
  await settled(page, 0);
  const t2 = Date.now();
  await page.getByTestId(`sample-${id}`).click();
  const memo = await accuracyAfter(page, 1);
  metrics.delete_to_accuracy_ms_memoised = Date.now() - t2;
  metrics.delete_click_to_accuracy_in_page_ms_memoised = await clickToAccuracy(page);
  metrics.delete_to_accuracy_page_ms_memoised = memo.millis;
  // Reload: local storage and the URL keep the state.
  await page.reload();
  await accuracyAfter(page, 1);
  assert.equal(await page.getByTestId('deleted-count').innerText(), '1');
  assert.deepEqual(await cellStates(page), expectedCells(deleted.events));
  // A copied link opens the same state in a fresh browser profile.
  const url = page.url();
  assert.match(url, /deleted=7/);
  const other = await webgpu.newContext();
  const fresh = await other.newPage();
  await fresh.goto(url);
  await accuracyAfter(fresh, 1);
  assert.deepEqual(await cellStates(fresh), expectedCells(deleted.events));
  await other.close();
  await context.close();
});

await test('an invalid or stale link is ignored with a visible note', async () => {
  const context = await cpu.newContext();
  const page = await context.newPage();
  await page.goto(`${BASE_URL}#b=000000000000&deleted=1,2`);
  await accuracyAfter(page, 0);
  assert.match(await page.getByTestId('note').innerText(), /ignored/);
  await page.goto(`${BASE_URL}#garbage`);
  await page.reload();
  await accuracyAfter(page, 0);
  assert.match(await page.getByTestId('note').innerText(), /ignored/);
  await context.close();
});

await test('a corrupted bundle shows the error screen', async () => {
  const context = await cpu.newContext();
  const page = await context.newPage();
  await page.route('**/bundle/weights/backbone.safetensors', async (route) => {
    const response = await route.fetch();
    const body = Buffer.from(await response.body());
    body[body.length - 1] ^= 0xff;
    await route.fulfill({ response, body });
  });
  await page.goto(BASE_URL);
  await page.getByTestId('error').waitFor({ timeout: TIMEOUT });
  assert.match(await page.getByTestId('error-message').innerText(), /checksum mismatch/);
  await context.close();
});

await test('without WebGPU the CPU backend runs and still works, also through quick successive deletions', async () => {
  const context = await cpu.newContext();
  const page = await context.newPage();
  await watchLongTasks(page);
  await watchClicks(page);
  page.on('console', (m) => { if (m.text().startsWith('s3t timing')) console.log(`  cpu ${m.text()}`); });
  const started = Date.now();
  await page.goto(BASE_URL);
  const first = await accuracyAfter(page, 0);
  metrics.cpu_first_accuracy_ms = Date.now() - started;
  assert.equal(await page.getByTestId('backend').innerText(), 'CPU');
  const expected = trainerAfter([]).evaluation;
  assert.ok(Math.abs(first.value - expected.accuracy) <= 0.001, `page ${first.value} vs trainer ${expected.accuracy}`);
  await settled(page, 0);
  const t0 = Date.now();
  await page.getByTestId('sample-7').click();
  const after = await accuracyAfter(page, 1);
  metrics.cpu_delete_to_accuracy_ms_new_node = Date.now() - t0;
  metrics.cpu_delete_click_to_accuracy_in_page_ms_new_node = await clickToAccuracy(page);
  await settled(page, 1);
  metrics.cpu_longest_task_ms = await longestTask(page);
  const { evaluation } = trainerAfter([7]);
  assert.ok(Math.abs(after.value - evaluation.accuracy) <= 0.001, `page ${after.value} vs trainer ${evaluation.accuracy}`);
  // Two deletions in quick succession: the second supersedes the first's evaluation, and the page ends on both.
  await page.getByTestId('sample-8').click();
  await page.getByTestId('sample-9').click();
  const last = await accuracyAfter(page, 3);
  await settled(page, 3);
  assert.equal(await page.getByTestId('deleted-count').innerText(), '3');
  const both = trainerAfter([7, 8, 9]).evaluation;
  assert.ok(Math.abs(last.value - both.accuracy) <= 0.001, `page ${last.value} vs trainer ${both.accuracy}`);
  await context.close();
});
await cpu.close();
await webgpu.close();

writeFileSync(join(ARTIFACTS, 'metrics.json'), JSON.stringify({ metrics, results }, null, 2));
console.log(JSON.stringify(metrics, null, 2));
const failed = results.filter((r) => !r.ok);
if (failed.length) {
  console.log(`${failed.length} of ${results.length} browser tests failed`);
  process.exit(1);
}
console.log(`all ${results.length} browser tests passed`);
