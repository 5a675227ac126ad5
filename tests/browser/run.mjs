// Headless-Chromium tests of the S3T web app. `cargo xtask test` builds the app and a small bundle, serves them on
// 127.0.0.1 and runs this file with BASE_URL, BUNDLE_DIR, TRAINER, CHROMIUM and ARTIFACTS set.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  accuracyAfter, classify, clickToAccuracy, currentAccuracy, launch, longestTask, onePerSlice, recordBodies, serveBundle,
  settled, TIMEOUT, transferred, watchClicks, watchLongTasks, watchRetrainTasks,
} from './page.mjs';
import { audit } from './audit.mjs';

const {
  BASE_URL, BUNDLE_DIR, WEBGPU_BASE_URL, WEBGPU_BUNDLE_DIR, TEXT_BASE_URL, TEXT_BUNDLE_DIR, TRAINER, CHROMIUM, ARTIFACTS,
} = process.env;
for (const [k, v] of Object.entries({
  BASE_URL, BUNDLE_DIR, WEBGPU_BASE_URL, WEBGPU_BUNDLE_DIR, TEXT_BASE_URL, TEXT_BUNDLE_DIR, TRAINER, CHROMIUM, ARTIFACTS,
})) {
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

/// A copy of the test bundle (or `source`) without a ledger, in a temporary directory removed at the end.
const copies = [];
function copyBundle(source = BUNDLE_DIR) {
  const dir = mkdtempSync(join(tmpdir(), 's3t-browser-'));
  copies.push(dir);
  const copy = join(dir, 'bundle');
  cpSync(source, copy, { recursive: true });
  rmSync(join(copy, 'deletions.ledger'), { force: true });
  return { dir, copy };
}

const evalBundle = (dir) =>
  JSON.parse(execFileSync(TRAINER, ['eval', dir, '--json', '--device', 'cpu', '--test-limit', '500']).toString());

/// The trainer's view of `ids` deleted on top of a bundle's own ledger (on a copy).
function trainerOn(bundle, ids) {
  const dir = mkdtempSync(join(tmpdir(), 's3t-browser-'));
  const copy = join(dir, 'bundle');
  cpSync(bundle, copy, { recursive: true });
  const deleted = JSON.parse(execFileSync(TRAINER, ['delete', copy, '--ids', ids.join(','), '--json']).toString());
  const evaluation = evalBundle(copy);
  rmSync(dir, { recursive: true, force: true });
  return { deleted, evaluation };
}

/// Samples the ledger bundle's ledger deleted (all on the grid's first page).
const LEDGER_IDS = [3, 5, 11];
let ledgerCopy = null;

/// A copy of the test bundle with `LEDGER_IDS` deleted by the trainer (ledger written, files of the components
/// that saw them removed, the page's data purged and exported again), made once.
function ledgerBundle() {
  if (ledgerCopy) return ledgerCopy;
  const { copy } = copyBundle();
  const deleted = JSON.parse(execFileSync(TRAINER, ['delete', copy, '--ids', LEDGER_IDS.join(','), '--json']).toString());
  execFileSync(TRAINER, ['export', copy, '--format', 'web', '--out', copy]);
  ledgerCopy = { copy, deleted, evaluation: evalBundle(copy) };
  return ledgerCopy;
}

/// The page shows sample `id` as deleted (`kind`: `ledger` or `session`), without drawing its pixels.
async function assertDeleted(page, id, kind) {
  const sample = page.getByTestId(`sample-${id}`);
  assert.equal(await sample.getAttribute('data-deleted'), kind, `sample ${id}`);
  assert.equal(await sample.locator('canvas').count(), 0, `sample ${id} is drawn`);
  assert.ok(await sample.isDisabled(), `sample ${id} can be deleted again`);
}

const storedState = (page) => page.evaluate(() => localStorage.getItem('s3t-lab.session'));

async function cellStates(page) {
  return page.$$eval('[data-testid^="cell-"]', (cells) =>
    Object.fromEntries(cells.map((c) => [c.dataset.testid, c.dataset.active === 'true'])));
}

const manifest = JSON.parse(readFileSync(join(BUNDLE_DIR, 'manifest.json'), 'utf8'));
const slices = manifest.partition.slices;
/// The tag a saved state carries: the first 12 hex digits of the backbone's sha256.
const TAG = manifest.backbone.weights.sha256.slice(0, 12);

/// Expected cell states from the trainer's events (the shared route reducer's output) for a bundle's manifest.
function expectedCells(events, m = manifest) {
  const L = m.partition.slices;
  const active = m.sequences.map((seqs) => seqs.map(() => L));
  for (const e of events) if (e.event === 'deactivated') active[e.shard][e.sequence] = e.from;
  const cells = {};
  active.forEach((seqs, s) => seqs.forEach((a, b) => {
    for (let g = 1; g <= L; g++) cells[`cell-${s}-${b}-${g}`] = g <= a;
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

await test('a stale or invalid link is ignored with a note and never overwrites the saved deletions', async () => {
  const context = await cpu.newContext();
  const page = await context.newPage();
  await page.goto(BASE_URL);
  await accuracyAfter(page, 0);
  await page.getByTestId('sample-7').click();
  await accuracyAfter(page, 1);
  const saved = await storedState(page);
  assert.equal(saved, `b=${TAG}&deleted=7`);
  await page.close();
  // Another bundle's link, text that is no saved state, and an id the bundle does not have.
  for (const link of ['#b=000000000000&deleted=1,2', '#garbage', `#b=${TAG}&deleted=99999999`]) {
    const other = await context.newPage();
    await other.goto(`${BASE_URL}${link}`);
    await accuracyAfter(other, 0);
    assert.match(await other.getByTestId('note').innerText(), /ignored/, link);
    assert.equal(await storedState(other), saved, link);
    assert.equal(await other.evaluate(() => location.hash), link);
    await other.reload();
    await accuracyAfter(other, 0);
    assert.match(await other.getByTestId('note').innerText(), /ignored/, link);
    // Reset changes nothing here, so nothing is saved either.
    await other.getByTestId('reset').click();
    await other.waitForTimeout(300);
    assert.equal(await storedState(other), saved, link);
    assert.equal(await other.evaluate(() => location.hash), link);
    await other.close();
  }
  // The saved deletions are intact: a page without a link restores them.
  const back = await context.newPage();
  await back.goto(BASE_URL);
  await accuracyAfter(back, 1);
  assert.equal(await back.getByTestId('deleted-count').innerText(), '1');
  await back.close();
  // After a rejected link, the visitor's own change is what gets saved.
  const after = await context.newPage();
  await after.goto(`${BASE_URL}#garbage`);
  await accuracyAfter(after, 0);
  await after.getByTestId('sample-9').click();
  await accuracyAfter(after, 1);
  assert.equal(await storedState(after), `b=${TAG}&deleted=9`);
  assert.equal(await after.evaluate(() => location.hash), `#b=${TAG}&deleted=9`);
  await context.close();
});

await test('a bundle with deletions in its ledger opens with them deleted, purged and unservable; accuracy equals trainer eval', async () => {
  const ledger = ledgerBundle();
  assert.ok(ledger.deleted.removed_files.length > 0, 'the deletions removed no weight file');
  const context = await cpu.newContext({ viewport: { width: 1280, height: 1600 } });
  const served = await serveBundle(context, ledger.copy);
  const page = await context.newPage();
  await page.goto(BASE_URL);
  const first = await accuracyAfter(page, 0);
  metrics.ledger_page_accuracy = first.value;
  metrics.ledger_trainer_accuracy = ledger.evaluation.accuracy;
  metrics.ledger_removed_files = ledger.deleted.removed_files.length;
  assert.ok(Math.abs(first.value - ledger.evaluation.accuracy) <= 0.001,
    `page ${first.value} vs trainer ${ledger.evaluation.accuracy}`);
  await settled(page, 0);
  assert.equal(await page.getByTestId('eval-error').count(), 0);
  assert.equal(await page.getByTestId('ledger-count').innerText(), String(LEDGER_IDS.length));
  assert.equal(await page.getByTestId('deleted-count').innerText(), '0');
  for (const id of LEDGER_IDS) await assertDeleted(page, id, 'ledger');
  assert.deepEqual(await cellStates(page), expectedCells(ledger.deleted.events));
  // Every live shard's vote on the inspected test image is shown once the page is idle.
  const live = await page.$$eval('article[data-testid^="shard-"]',
    (shards) => shards.filter((s) => s.dataset.offline === 'false').map((s) => s.dataset.testid.slice('shard-'.length)));
  assert.ok(live.length > 0);
  for (const shard of live) assert.match(await page.getByTestId(`vote-${shard}`).innerText(), /\(\d+%\)/, `shard ${shard}`);
  // Only the backbone and the components the guard allows were fetched: none of the files the deletion removed.
  assert.deepEqual(served.missing, []);
  for (const file of ledger.deleted.removed_files) assert.ok(!served.requested.includes(file), `fetched ${file}`);
  await page.screenshot({ path: join(ARTIFACTS, 'ledger.png'), fullPage: true });
  await context.close();
});

await test('Reset clears the visitor\'s deletions only; a link cannot undo the ledger', async () => {
  const ledger = ledgerBundle();
  const context = await cpu.newContext();
  await serveBundle(context, ledger.copy);
  const page = await context.newPage();
  await page.goto(BASE_URL);
  await accuracyAfter(page, 0);
  await settled(page, 0);
  await page.getByTestId('sample-7').click();
  const after = await accuracyAfter(page, 1);
  await assertDeleted(page, 7, 'session');
  const expected = trainerOn(ledger.copy, [7]).evaluation;
  metrics.ledger_plus_one_page_accuracy = after.value;
  metrics.ledger_plus_one_trainer_accuracy = expected.accuracy;
  assert.ok(Math.abs(after.value - expected.accuracy) <= 0.001, `page ${after.value} vs trainer ${expected.accuracy}`);
  await settled(page, 1);
  await page.getByTestId('reset').click();
  const reset = await accuracyAfter(page, 0);
  assert.ok(Math.abs(reset.value - ledger.evaluation.accuracy) <= 0.001,
    `page ${reset.value} vs trainer ${ledger.evaluation.accuracy}`);
  assert.equal(await page.getByTestId('deleted-count').innerText(), '0');
  for (const id of LEDGER_IDS) await assertDeleted(page, id, 'ledger');
  assert.equal(await page.getByTestId('sample-7').getAttribute('data-deleted'), '');
  assert.equal(await page.getByTestId('sample-7').locator('canvas').count(), 1);
  assert.deepEqual(await cellStates(page), expectedCells(ledger.deleted.events));
  // A link that lists ledger ids: they are deleted already; the visitor's deletions are the others.
  const linked = await context.newPage();
  await linked.goto(`${BASE_URL}#b=${TAG}&deleted=${LEDGER_IDS[0]},7`);
  await accuracyAfter(linked, 1);
  assert.equal(await linked.getByTestId('deleted-count').innerText(), '1');
  for (const id of LEDGER_IDS) await assertDeleted(linked, id, 'ledger');
  await assertDeleted(linked, 7, 'session');
  assert.equal(await linked.evaluate(() => location.hash), `#b=${TAG}&deleted=7`);
  await context.close();
});

await test('a bundle built without SISA opens: no SISA line, and deletions still work', async () => {
  const { copy } = copyBundle();
  const path = join(copy, 'manifest.json');
  const edited = JSON.parse(readFileSync(path, 'utf8'));
  // Its SISA weights are gone too: the page must not ask for them.
  for (const entry of edited.sisa.flat()) rmSync(join(copy, entry.weights.path), { force: true });
  edited.sisa = [];
  writeFileSync(path, JSON.stringify(edited, null, 2));
  const context = await cpu.newContext();
  const served = await serveBundle(context, copy);
  const page = await context.newPage();
  await page.goto(BASE_URL);
  const first = await accuracyAfter(page, 0);
  const expected = trainerAfter([]).evaluation;
  assert.ok(Math.abs(first.value - expected.accuracy) <= 0.001, `page ${first.value} vs trainer ${expected.accuracy}`);
  assert.equal(await page.getByTestId('sisa-accuracy').count(), 0);
  await page.getByTestId('sample-7').click();
  const after = await accuracyAfter(page, 1);
  const one = trainerAfter([7]).evaluation;
  metrics.no_sisa_page_accuracy = [first.value, after.value];
  metrics.no_sisa_trainer_accuracy = [expected.accuracy, one.accuracy];
  assert.ok(Math.abs(after.value - one.accuracy) <= 0.001, `page ${after.value} vs trainer ${one.accuracy}`);
  await page.waitForTimeout(500);
  assert.equal(await page.getByTestId('eval-error').count(), 0);
  assert.deepEqual(served.missing, ['deletions.ledger']);
  await context.close();
});

await test('a corrupt or unreadable ledger, and unpurged data of deleted samples, show the error screen', async () => {
  const cases = [
    ['**/bundle/deletions.ledger', { status: 200, body: 'this is not a deletion ledger at all' }, /not an S3T ledger/],
    ['**/bundle/deletions.ledger', { status: 500, body: 'server error' }, /HTTP 500/],
  ];
  for (const [pattern, reply, message] of cases) {
    const context = await cpu.newContext();
    const page = await context.newPage();
    await page.route(pattern, (route) => route.fulfill(reply));
    await page.goto(BASE_URL);
    await page.getByTestId('error').waitFor({ timeout: TIMEOUT });
    assert.match(await page.getByTestId('error-message').innerText(), message);
    await context.close();
  }
  // The ledger bundle served with the split as it was before the deletions: the deleted samples are still there.
  const ledger = ledgerBundle();
  const context = await cpu.newContext();
  await serveBundle(context, ledger.copy);
  const page = await context.newPage();
  await page.route('**/bundle/data/deletable-*-ubyte.gz', async (route) => {
    const name = new URL(route.request().url()).pathname.split('/').pop();
    await route.fulfill({ status: 200, body: readFileSync(join(BUNDLE_DIR, 'data', name)) });
  });
  await page.goto(BASE_URL);
  await page.getByTestId('error').waitFor({ timeout: TIMEOUT });
  assert.match(await page.getByTestId('error-message').innerText(), /was deleted but its pixels or label are still stored/);
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
  // The deleted sample under the model its shard serves now (never its pixels).
  await page.getByTestId('probe').waitFor({ timeout: TIMEOUT });
  assert.match(await page.getByTestId('probe').innerText(), /^Sample 7 .*(gives the true class \d+%|is offline)/);
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

await test('an offline shard retrains in a worker while the page serves; the result matches trainer retrain', async () => {
  const context = await cpu.newContext({ viewport: { width: 1280, height: 1600 } });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.text().startsWith('s3t worker timing')) console.log(`  ${m.text()}`); });
  const requested = [];
  page.on('request', (r) => requested.push(r.url()));
  await page.goto(BASE_URL);
  await accuracyAfter(page, 0);
  await settled(page, 0);
  // The worker's code is not part of the page's first load.
  assert.deepEqual(requested.filter((u) => u.includes('s3t-worker')), []);
  const ids = await onePerSlice(page, 0, slices);
  for (const [n, id] of ids.entries()) {
    await page.getByTestId(`sample-${id}`).click();
    await accuracyAfter(page, n + 1);
  }
  await settled(page, ids.length);
  assert.equal(await page.getByTestId('shard-0').getAttribute('data-offline'), 'true');
  await watchRetrainTasks(page);
  const t0 = Date.now();
  await page.getByTestId('retrain-button-0').click();
  await page.waitForFunction(() => {
    const p = document.querySelector('[data-testid="retrain-progress-0"]');
    return p && Number(p.dataset.nodesDone) > 0;
  }, null, { timeout: TIMEOUT });
  metrics.retrain_first_node_ms = Date.now() - t0;
  assert.ok(requested.some((u) => u.includes('s3t-worker')), 'the worker was not loaded');
  metrics.retrain_backend = await page.getByTestId('retrain-progress-0').getAttribute('data-backend');
  assert.match(metrics.retrain_backend, /^CPU/);
  // The page keeps serving: a deletion in another shard while the worker trains.
  const other = (await onePerSlice(page, 1, slices))[0];
  const t1 = Date.now();
  await page.getByTestId(`sample-${other}`).click();
  await accuracyAfter(page, ids.length + 1);
  metrics.retrain_delete_during_ms = Date.now() - t1;
  const retrainedOnPage = page.getByTestId('retrained-0');
  await retrainedOnPage.waitFor({ timeout: TIMEOUT * 3 });
  metrics.retrain_shard_ms = Date.now() - t0;
  metrics.retrain_worker_seconds = Number(await retrainedOnPage.getAttribute('data-seconds'));
  metrics.retrain_longest_task_ms = await page.evaluate(() => Math.max(0, ...window.__retrainTasks));
  assert.equal(await page.getByTestId('shard-0').getAttribute('data-offline'), 'false');
  const accuracy = await currentAccuracy(page);
  assert.equal(await page.getByTestId('retrain-marker').count(), 1);
  await page.screenshot({ path: join(ARTIFACTS, 'retrained.png'), fullPage: true });
  // The trainer on the same bundle and deletions.
  const { copy } = copyBundle();
  const all = [...ids, other];
  execFileSync(TRAINER, ['delete', copy, '--ids', all.join(','), '--json']);
  execFileSync(TRAINER, ['retrain', copy, '--shard', '0', '--device', 'cpu', '--quiet']);
  const trainer = evalBundle(copy);
  const retrainedManifest = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8'));
  const nodes = retrainedManifest.nodes[0];
  const weights = (await retrainedOnPage.getAttribute('data-weights')).split(',');
  const lineage = (await retrainedOnPage.getAttribute('data-lineage')).split(',');
  assert.deepEqual(lineage, nodes.map((e) => e.lineage.map((l) => l.sha256).join('+')));
  metrics.retrain_identical_weight_files = weights.filter((w, i) => w === nodes[i].weights.sha256).length;
  metrics.retrain_nodes = nodes.length;
  metrics.retrain_page_accuracy = accuracy;
  metrics.retrain_trainer_accuracy = trainer.accuracy;
  assert.ok(Math.abs(accuracy - trainer.accuracy) <= 0.005, `page ${accuracy} vs trainer ${trainer.accuracy}`);
  if (metrics.retrain_identical_weight_files === nodes.length) {
    assert.ok(Math.abs(accuracy - trainer.accuracy) <= 0.001, `bit-identical nodes, page ${accuracy} vs ${trainer.accuracy}`);
  }
  assert.ok(metrics.retrain_longest_task_ms <= 200, `longest main-thread task ${metrics.retrain_longest_task_ms} ms`);
  // One more deletion in shard 0, after its retrain: it switches groups of the new nodes off.
  await page.getByTestId('filter-shard').selectOption('0');
  const labels = await page.$$eval('[data-testid^="sample-"]', (els) => els.map((e) => e.getAttribute('aria-label')));
  const later = Number(labels.find((l) => !l.includes(', deleted')).match(/^sample (\d+),/)[1]);
  await page.getByTestId(`sample-${later}`).click();
  await accuracyAfter(page, ids.length + 2);
  const final = await currentAccuracy(page);
  const finalCells = await cellStates(page);
  // The retrained state persists: a reload serves the stored nodes again (checked, no worker), the same accuracy.
  assert.match(await page.evaluate(() => location.hash), new RegExp(`&retrained=0@${ids.length + 1}$`));
  const before = requested.length;
  await page.reload();
  await accuracyAfter(page, ids.length + 2);
  const reloaded = await currentAccuracy(page);
  metrics.retrain_reloaded_accuracy = reloaded;
  assert.equal(reloaded, final);
  assert.deepEqual(await cellStates(page), finalCells);
  assert.ok(!requested.slice(before).some((u) => u.includes('s3t-worker')), 'the reload retrained');
  // A shared link: the receiving page has no stored weights, so it retrains shard 0 itself, at its place among the
  // deletions (before the last one), and ends in the same state.
  const linkContext = await cpu.newContext();
  const linked = await linkContext.newPage();
  await linked.goto(page.url());
  await linked.getByTestId('retrained-0').waitFor({ timeout: TIMEOUT * 3 });
  const linkedAccuracy = await currentAccuracy(linked);
  metrics.retrain_link_accuracy = linkedAccuracy;
  assert.equal(linkedAccuracy, final);
  assert.deepEqual(await cellStates(linked), finalCells);
  await linkContext.close();
  // Reset returns to the bundle's own nodes.
  await page.getByTestId('reset').click();
  await accuracyAfter(page, 0);
  const reset = await currentAccuracy(page);
  assert.ok(Math.abs(reset - trainerAfter([]).evaluation.accuracy) <= 0.001, `after reset ${reset}`);
  await context.close();
});


await test('with ?train=gpu the worker retrains on WebGPU: the lineage of trainer retrain, its accuracy within 0.5 points', async () => {
  // The software adapter trains slowly, but it runs the code path a visitor's GPU runs; a bundle of small shards
  // and L = 2 keeps the retrain short. Without the query the worker passes a software adapter over for the CPU
  // (the queue test below).
  const context = await webgpu.newContext({ viewport: { width: 1280, height: 1600 } });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.text().startsWith('s3t worker timing')) console.log(`  ${m.text()}`); });
  await page.goto(`${WEBGPU_BASE_URL}?train=gpu`);
  await accuracyAfter(page, 0);
  await settled(page, 0);
  const ids = await onePerSlice(page, 0, 2);
  for (const [n, id] of ids.entries()) {
    await page.getByTestId(`sample-${id}`).click();
    await accuracyAfter(page, n + 1);
  }
  await settled(page, ids.length);
  const t0 = Date.now();
  await page.getByTestId('retrain-button-0').click();
  const progress = page.getByTestId('retrain-progress-0');
  await page.waitForFunction(() => {
    const p = document.querySelector('[data-testid="retrain-progress-0"]');
    return p && p.dataset.backend;
  }, null, { timeout: TIMEOUT });
  metrics.retrain_gpu_backend = await progress.getAttribute('data-backend');
  assert.match(metrics.retrain_gpu_backend, /^WebGPU/);
  const retrainedOnPage = page.getByTestId('retrained-0');
  await retrainedOnPage.waitFor({ timeout: TIMEOUT * 5 });
  metrics.retrain_gpu_shard_ms = Date.now() - t0;
  assert.equal(await page.getByTestId('shard-0').getAttribute('data-offline'), 'false');
  const accuracy = await currentAccuracy(page);
  const { copy } = copyBundle(WEBGPU_BUNDLE_DIR);
  execFileSync(TRAINER, ['delete', copy, '--ids', ids.join(','), '--json']);
  execFileSync(TRAINER, ['retrain', copy, '--shard', '0', '--device', 'cpu', '--quiet']);
  const trainer = evalBundle(copy);
  const nodes = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8')).nodes[0];
  const lineage = (await retrainedOnPage.getAttribute('data-lineage')).split(',');
  assert.deepEqual(lineage, nodes.map((e) => e.lineage.map((l) => l.sha256).join('+')));
  const weights = (await retrainedOnPage.getAttribute('data-weights')).split(',');
  metrics.retrain_gpu_identical_weight_files = weights.filter((w, i) => w === nodes[i].weights.sha256).length;
  metrics.retrain_gpu_page_accuracy = accuracy;
  metrics.retrain_gpu_trainer_accuracy = trainer.accuracy;
  assert.ok(Math.abs(accuracy - trainer.accuracy) <= 0.005, `page (WebGPU) ${accuracy} vs trainer ${trainer.accuracy}`);
  await context.close();
});

await test('retrains queue one after another and cancel, the shard then still offline; a software adapter is passed over for the CPU', async () => {
  // On the browser with WebGPU (SwiftShader): without `?train=` the worker trains on the CPU, saying why.
  const context = await webgpu.newContext({ viewport: { width: 1280, height: 1600 } });
  const page = await context.newPage();
  await page.goto(BASE_URL);
  await accuracyAfter(page, 0);
  const ids = await onePerSlice(page, 0, slices);
  for (const [n, id] of ids.entries()) {
    await page.getByTestId(`sample-${id}`).click();
    await accuracyAfter(page, n + 1);
  }
  await page.getByTestId(`sample-${(await onePerSlice(page, 1, slices))[0]}`).click();
  await accuracyAfter(page, ids.length + 1);
  assert.equal(await page.getByTestId('shard-0').getAttribute('data-offline'), 'true');
  // Shard 1 serves a shortened prefix: it may be retrained to full depth on demand, queued behind shard 0.
  await page.getByTestId('retrain-button-0').click();
  await page.getByTestId('retrain-button-1').click();
  await page.getByTestId('retrain-progress-0').waitFor({ timeout: TIMEOUT });
  assert.match(await page.getByTestId('retrain-1').innerText(), /queued/);
  await page.getByTestId('retrain-cancel-1').click();
  await page.getByTestId('retrain-button-1').waitFor({ timeout: TIMEOUT });
  await page.getByTestId('retrain-cancel-0').click();
  await page.getByTestId('retrain-button-0').waitFor({ timeout: TIMEOUT });
  assert.equal(await page.getByTestId('retrain-progress-0').count(), 0);
  assert.equal(await page.getByTestId('shard-0').getAttribute('data-offline'), 'true');
  // A retrain after a cancel starts a fresh worker and still finishes.
  await page.getByTestId('retrain-button-0').click();
  await page.waitForFunction(() => {
    const p = document.querySelector('[data-testid="retrain-progress-0"]');
    return p && p.dataset.backend;
  }, null, { timeout: TIMEOUT });
  metrics.retrain_auto_backend_software_adapter = await page.getByTestId('retrain-progress-0').getAttribute('data-backend');
  assert.match(metrics.retrain_auto_backend_software_adapter, /^CPU.*software/);
  await page.getByTestId('retrained-0').waitFor({ timeout: TIMEOUT * 3 });
  assert.equal(await page.getByTestId('shard-0').getAttribute('data-offline'), 'false');
  await context.close();
});

await test('a text bundle: reviews listed and searchable; a deletion deactivates the predicted cells and purges the review; accuracy equals trainer eval; reload keeps it', async () => {
  const textManifest = JSON.parse(readFileSync(join(TEXT_BUNDLE_DIR, 'manifest.json'), 'utf8'));
  const index = JSON.parse(readFileSync(join(TEXT_BUNDLE_DIR, 'data/text.json'), 'utf8'));
  const evalText = (dir) => JSON.parse(execFileSync(TRAINER,
    ['eval', dir, '--json', '--device', 'cpu', '--test-limit', String(index.test)]).toString());
  const context = await cpu.newContext({ viewport: { width: 1280, height: 1600 } });
  const page = await context.newPage();
  await watchLongTasks(page);
  const bodies = recordBodies(page);
  const started = Date.now();
  await page.goto(TEXT_BASE_URL);
  const first = await accuracyAfter(page, 0);
  metrics.text_first_accuracy_ms = Date.now() - started;
  metrics.text_transferred = transferred(bodies);
  assert.equal(await page.getByTestId('backend').innerText(), 'CPU');
  const expected = evalText(TEXT_BUNDLE_DIR);
  assert.ok(Math.abs(first.value - expected.accuracy) <= 1e-9, `page ${first.value} vs trainer ${expected.accuracy}`);
  // The training reviews, with their text and where they live.
  const sample = page.getByTestId('sample-7');
  const review = await sample.locator('.review').innerText();
  assert.ok(review.endsWith('and so on'), `review 7 reads ${JSON.stringify(review)}`);
  assert.match(await sample.locator('.meta').innerText(), /shard \d+ · slice \d+/);
  // Search narrows the list to the reviews that contain the words.
  await page.getByTestId('filter-text').fill('boring');
  const shown = await page.$$eval('[data-testid^="sample-"] .review', (els) => els.map((e) => e.textContent));
  assert.ok(shown.length > 0 && shown.every((t) => t.includes('boring')), JSON.stringify(shown));
  await page.getByTestId('filter-text').fill('');
  // A deletion: the predicted cells switch off, the review's text is gone from the page, the accuracy is the trainer's.
  await page.getByTestId('sample-7').click();
  const after = await accuracyAfter(page, 1);
  const { copy } = copyBundle(TEXT_BUNDLE_DIR);
  const deleted = JSON.parse(execFileSync(TRAINER, ['delete', copy, '--ids', '7', '--json']).toString());
  assert.deepEqual(await cellStates(page), expectedCells(deleted.events, textManifest));
  const trainer = evalText(copy);
  assert.ok(Math.abs(after.value - trainer.accuracy) <= 1e-9, `page ${after.value} vs trainer ${trainer.accuracy}`);
  assert.equal(await page.getByTestId('sample-7').getAttribute('data-deleted'), 'session');
  assert.ok(!(await page.getByTestId('sample-7').innerText()).includes(review), 'the deleted review is still shown');
  assert.ok((await page.getByTestId('inspect-text').innerText()).length > 0, 'the inspector shows a test review');
  metrics.text_longest_task_ms = await longestTask(page);
  await page.screenshot({ path: join(ARTIFACTS, 'text.png'), fullPage: true });
  // The deletion survives a reload.
  await page.reload();
  await accuracyAfter(page, 1);
  assert.equal(await page.getByTestId('deleted-count').innerText(), '1');
  assert.equal(await page.getByTestId('sample-7').getAttribute('data-deleted'), 'session');
  // The switch: this server has both models; the image model keeps its own (empty) state, and back again the
  // review's deletion is still there.
  assert.equal(await page.getByTestId('switch-reviews').getAttribute('aria-current'), 'page');
  await page.getByTestId('switch-images').click();
  await accuracyAfter(page, 0);
  assert.equal(await page.getByTestId('deleted-count').innerText(), '0');
  assert.ok(await page.getByTestId('sample-7').locator('canvas').count() === 1, 'the image model shows images');
  await page.getByTestId('switch-reviews').click();
  await accuracyAfter(page, 1);
  assert.equal(await page.getByTestId('sample-7').getAttribute('data-deleted'), 'session');
  await context.close();
});

await test('a text bundle with deletions in its ledger opens with those reviews purged and their components unfetched; accuracy equals trainer eval; a link carries a deletion', async () => {
  const textManifest = JSON.parse(readFileSync(join(TEXT_BUNDLE_DIR, 'manifest.json'), 'utf8'));
  const { copy } = copyBundle(TEXT_BUNDLE_DIR);
  const ids = [3, 5];
  const deleted = JSON.parse(execFileSync(TRAINER, ['delete', copy, '--ids', ids.join(','), '--json']).toString());
  assert.ok(deleted.removed_files.length > 0, 'the deletions removed no weight file');
  const index = JSON.parse(readFileSync(join(copy, 'data/text.json'), 'utf8'));
  const evaluation = JSON.parse(execFileSync(TRAINER,
    ['eval', copy, '--json', '--device', 'cpu', '--test-limit', String(index.test)]).toString());
  const context = await cpu.newContext({ viewport: { width: 1280, height: 1600 } });
  const served = await serveBundle(context, copy, 'reviews');
  const page = await context.newPage();
  await page.goto(TEXT_BASE_URL);
  const first = await accuracyAfter(page, 0);
  assert.ok(Math.abs(first.value - evaluation.accuracy) <= 1e-9, `page ${first.value} vs trainer ${evaluation.accuracy}`);
  assert.equal(await page.getByTestId('ledger-count').innerText(), String(ids.length));
  for (const id of ids) {
    const sample = page.getByTestId(`sample-${id}`);
    assert.equal(await sample.getAttribute('data-deleted'), 'ledger', `review ${id}`);
    assert.match(await sample.locator('.review').innerText(), /its text is gone/, `review ${id}`);
  }
  assert.deepEqual(await cellStates(page), expectedCells(deleted.events, textManifest));
  assert.deepEqual(served.missing, []);
  for (const file of deleted.removed_files) assert.ok(!served.requested.includes(file), `fetched ${file}`);
  // A deletion of the visitor's, carried by the page's link into a fresh browser.
  await page.getByTestId('sample-7').click();
  await accuracyAfter(page, 1);
  const link = page.url();
  await context.close();
  const other = await cpu.newContext({ viewport: { width: 1280, height: 1600 } });
  await serveBundle(other, copy, 'reviews');
  const opened = await other.newPage();
  await opened.goto(link);
  await accuracyAfter(opened, 1);
  assert.equal(await opened.getByTestId('deleted-count').innerText(), '1');
  assert.equal(await opened.getByTestId('sample-7').getAttribute('data-deleted'), 'session');
  assert.equal(await opened.getByTestId('sample-3').getAttribute('data-deleted'), 'ledger');
  await other.close();
});

/// One review per slice of `shard` on the list's first page (a text row names its shard and slice in `.meta`).
async function reviewPerSlice(page, shard, slices) {
  await page.getByTestId('filter-shard').selectOption(String(shard));
  const rows = await page.$$eval('[data-testid^="sample-"]', (els) => els.map((e) => [e.dataset.testid, e.querySelector('.meta')?.textContent ?? '']));
  const bySlice = new Map();
  for (const [id, meta] of rows) {
    const m = meta.match(/shard (\d+) · slice (\d+)/);
    if (m && Number(m[1]) === shard && !bySlice.has(m[2])) bySlice.set(m[2], Number(id.replace('sample-', '')));
  }
  assert.equal(bySlice.size, slices, `shard ${shard}: slices on the first page ${[...bySlice.keys()]}`);
  await page.getByTestId('filter-shard').selectOption('');
  return [...bySlice.values()];
}


/// `trainer predict`'s answer on `text` for a bundle directory.
const predictText = (dir, text) =>
  JSON.parse(execFileSync(TRAINER, ['predict', dir, '--text', text, '--device', 'cpu', '--json']).toString()).predictions[0];

/// Compares the page's answer with `trainer predict`'s: the same label from every shard and the ensemble, and
/// probabilities within `tolerance` (wasm's matrix products round apart from the native CPU's fused multiply-adds by
/// an ulp or two; the largest difference is recorded in `metric`).
async function assertAnswer(page, answer, cli, metric, tolerance = 1e-5) {
  const probabilities = JSON.parse(await answer.getAttribute('data-probabilities'));
  assert.equal(probabilities.length, cli.probabilities.length);
  const diff = Math.max(...probabilities.map((p, i) => Math.abs(p - cli.probabilities[i])));
  metrics[metric] = Math.max(metrics[metric] ?? 0, diff);
  assert.ok(diff <= tolerance, `page ${probabilities} vs trainer ${cli.probabilities}`);
  assert.equal(await answer.getAttribute('data-label'), cli.label);
  for (const vote of cli.shards) {
    assert.equal(await page.getByTestId(`sentence-vote-${vote.shard}`).getAttribute('data-label'), vote.label, `shard ${vote.shard}`);
  }
  assert.equal(await page.locator('[data-testid^="sentence-vote-"]').count(), cli.shards.length, 'the shards that vote');
}

await test('a text bundle: your own sentence gets trainer predict\'s answer before and after deletions; a text shard retrains in the worker, after its estimate, with trainer retrain\'s lineage and accuracy; cancel stops it', async () => {
  const textManifest = JSON.parse(readFileSync(join(TEXT_BUNDLE_DIR, 'manifest.json'), 'utf8'));
  const textSlices = textManifest.partition.slices;
  const context = await cpu.newContext({ viewport: { width: 1280, height: 1600 } });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.text().startsWith('s3t worker timing') || m.text().includes('timing: whole') || m.text().includes('timing: sentence')) console.log(`  ${m.text()}`); });
  const requested = [];
  page.on('request', (r) => requested.push(r.url()));
  await page.goto(TEXT_BASE_URL);
  await accuracyAfter(page, 0);
  await settled(page, 0);
  // The rest of the encoder is not part of the first load.
  assert.deepEqual(requested.filter((u) => u.includes('encoder-below') || u.includes('tokenizer.json')), []);
  const sentence = 'a great and fun film';
  const t0 = Date.now();
  const answer = await classify(page, sentence);
  metrics.sentence_first_ms = Date.now() - t0;
  assert.ok(requested.some((u) => u.includes('encoder-below')), 'the rest of the encoder was not loaded');
  await assertAnswer(page, answer, predictText(TEXT_BUNDLE_DIR, sentence), 'sentence_max_difference');
  // A second sentence, the encoder loaded: the answer's own time.
  const again = await classify(page, 'dull and far too long');
  metrics.sentence_ms = Number(await again.getAttribute('data-millis'));
  assert.ok(metrics.sentence_ms <= 2000, `a sentence took ${metrics.sentence_ms} ms`);
  // Shard 0 offline: the answer is given again by the shards that remain, and is the trainer's after the same deletions.
  const ids = await reviewPerSlice(page, 0, textSlices);
  for (const [n, id] of ids.entries()) {
    await page.getByTestId(`sample-${id}`).click();
    await accuracyAfter(page, n + 1);
  }
  await settled(page, ids.length);
  assert.equal(await page.getByTestId('shard-0').getAttribute('data-offline'), 'true');
  const { copy } = copyBundle(TEXT_BUNDLE_DIR);
  execFileSync(TRAINER, ['delete', copy, '--ids', ids.join(','), '--json']);
  const after = await classify(page, sentence);
  await assertAnswer(page, after, predictText(copy, sentence), 'sentence_max_difference');
  assert.equal(await page.getByTestId('sentence-vote-0').count(), 0, 'an offline shard voted');
  // Retraining asks first, with its estimate and what SISA would retrain; "Not now" leaves the shard as it is.
  await page.getByTestId('retrain-button-0').click();
  const ask = page.getByTestId('retrain-ask-0');
  await ask.waitFor({ timeout: TIMEOUT });
  metrics.text_retrain_estimate_s = Number(await ask.getAttribute('data-seconds'));
  assert.ok(metrics.text_retrain_estimate_s > 0, 'no estimate');
  assert.match(await ask.innerText(), /SISA would retrain \d+ of this shard's \d+ checkpoints/);
  await page.getByTestId('retrain-dismiss-0').click();
  assert.equal(await ask.count(), 0);
  // Started, then cancelled: the worker stops and the shard stays offline.
  await page.getByTestId('retrain-button-0').click();
  await page.getByTestId('retrain-start-0').click();
  await page.getByTestId('retrain-progress-0').waitFor({ timeout: TIMEOUT });
  await page.getByTestId('retrain-cancel-0').click();
  assert.equal(await page.getByTestId('retrain-progress-0').count(), 0);
  assert.equal(await page.getByTestId('retrained-0').count(), 0);
  assert.equal(await page.getByTestId('shard-0').getAttribute('data-offline'), 'true');
  // Started again and finished: the nodes of trainer retrain on the same deletions (its lineage; its weights up to
  // the rounding of wasm's arithmetic, counted in text_retrain_identical_weight_files).
  const t1 = Date.now();
  await page.getByTestId('retrain-button-0').click();
  await page.getByTestId('retrain-start-0').click();
  const retrained = page.getByTestId('retrained-0');
  await retrained.waitFor({ timeout: TIMEOUT * 6 });
  metrics.text_retrain_ms = Date.now() - t1;
  metrics.text_retrain_worker_seconds = Number(await retrained.getAttribute('data-seconds'));
  assert.equal(await page.getByTestId('shard-0').getAttribute('data-offline'), 'false');
  execFileSync(TRAINER, ['retrain', copy, '--shard', '0', '--device', 'cpu', '--quiet']);
  const nodes = JSON.parse(readFileSync(join(copy, 'manifest.json'), 'utf8')).nodes[0];
  assert.deepEqual((await retrained.getAttribute('data-lineage')).split(','), nodes.map((e) => e.lineage.map((l) => l.sha256).join('+')));
  const weights = (await retrained.getAttribute('data-weights')).split(',');
  metrics.text_retrain_identical_weight_files = weights.filter((w, i) => w === nodes[i].weights.sha256).length;
  metrics.text_retrain_nodes = nodes.length;
  const index = JSON.parse(readFileSync(join(copy, 'data/text.json'), 'utf8'));
  const trainerAccuracy = JSON.parse(execFileSync(TRAINER,
    ['eval', copy, '--json', '--device', 'cpu', '--test-limit', String(index.test)]).toString()).accuracy;
  const pageAccuracy = await currentAccuracy(page);
  assert.ok(Math.abs(pageAccuracy - trainerAccuracy) <= 0.005, `page ${pageAccuracy} vs trainer ${trainerAccuracy}`);
  // The sentence again: shard 0 votes with its retrained nodes, as trainer predict does after `trainer retrain`.
  const last = await classify(page, sentence);
  await assertAnswer(page, last, predictText(copy, sentence), 'sentence_retrained_max_difference', 0.05);
  await page.screenshot({ path: join(ARTIFACTS, 'text-sentence.png'), fullPage: true });
  await context.close();
});

await test('usable at 390 px and at 1400 px: nothing wider than the screen, every control reachable by keyboard', async () => {
  for (const width of [1400, 390]) {
    const context = await cpu.newContext({ viewport: { width, height: 900 } });
    const page = await context.newPage();
    await page.goto(BASE_URL);
    await accuracyAfter(page, 0);
    await settled(page, 0);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${width} px: the page is ${overflow} px wider than the screen`);
    await page.screenshot({ path: join(ARTIFACTS, `width-${width}.png`), fullPage: true });
    if (width === 1400) {
      // Tab through the page: every enabled control must take the focus once.
      const controls = await page.$$eval('button:not([disabled]), select, input, [tabindex="0"]', (els) => els.length);
      const seen = new Set();
      for (let i = 0; i < controls + 5; i++) {
        await page.keyboard.press('Tab');
        const id = await page.evaluate(() => {
          const e = document.activeElement;
          if (!e || e === document.body) return null;
          if (!e.dataset.tabId) e.dataset.tabId = String(Math.random());
          return e.dataset.tabId;
        });
        if (id) seen.add(id);
      }
      metrics.keyboard_controls = controls;
      metrics.keyboard_reached = seen.size;
      assert.ok(seen.size >= controls, `reached ${seen.size} of ${controls} controls by keyboard`);
    }
    await context.close();
  }
});

await test('Lighthouse: accessibility and best practices at least 95, on the image and the review model', async () => {
  const { scores, failed, report } = await audit(CHROMIUM, BASE_URL);
  writeFileSync(join(ARTIFACTS, 'lighthouse.json'), report);
  metrics.lighthouse = scores;
  metrics.lighthouse_failed_audits = failed;
  assert.ok(scores.accessibility >= 95, `accessibility ${scores.accessibility}: ${failed.join('; ')}`);
  assert.ok(scores['best-practices'] >= 95, `best practices ${scores['best-practices']}: ${failed.join('; ')}`);
  // The review model's page (a list of reviews instead of thumbnails, the switch between the models).
  const text = await audit(CHROMIUM, TEXT_BASE_URL);
  writeFileSync(join(ARTIFACTS, 'lighthouse-text.json'), text.report);
  metrics.lighthouse_text = text.scores;
  metrics.lighthouse_text_failed_audits = text.failed;
  assert.ok(text.scores.accessibility >= 95, `reviews: accessibility ${text.scores.accessibility}: ${text.failed.join('; ')}`);
  assert.ok(text.scores['best-practices'] >= 95, `reviews: best practices ${text.scores['best-practices']}: ${text.failed.join('; ')}`);
});
await cpu.close();
await webgpu.close();
for (const dir of copies) rmSync(dir, { recursive: true, force: true });

writeFileSync(join(ARTIFACTS, 'metrics.json'), JSON.stringify({ metrics, results }, null, 2));
console.log(JSON.stringify(metrics, null, 2));
const failed = results.filter((r) => !r.ok);
if (failed.length) {
  console.log(`${failed.length} of ${results.length} browser tests failed`);
  process.exit(1);
}
console.log(`all ${results.length} browser tests passed`);
