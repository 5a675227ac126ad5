// Measures the web app's speed on a served bundle in headless Chromium on the software WebGPU adapter: first
// accuracy after navigation, a deletion that needs one new prefix node, the same deletion with every node memoised,
// the longest main-thread task, the bytes transferred, and retraining one offline shard in the page's worker.
// `cargo xtask demo --measure` runs it on the default demo bundle with BASE_URL and CHROMIUM set; OUT, when set,
// names a JSON file for the figures.
import { writeFileSync } from 'node:fs';
import {
  accuracyAfter, launch, longestTask, onePerSlice, recordBodies, requireEnv, settled, timeDeletion, timeRetrain,
  transferred, watchClicks, watchLongTasks,
} from './page.mjs';

const { BASE_URL, CHROMIUM } = requireEnv(['BASE_URL', 'CHROMIUM'], 'cargo xtask demo --measure');
const { OUT } = process.env;

const browser = await launch(CHROMIUM, true);
const context = await browser.newContext({ viewport: { width: 1280, height: 1600 } });
const page = await context.newPage();
await watchLongTasks(page);
await watchClicks(page);
page.on('console', (m) => { if (m.text().startsWith('s3t ')) console.log(`  ${m.text()}`); });
const bodies = recordBodies(page);
const figures = {};

const started = Date.now();
await page.goto(BASE_URL);
figures.first_accuracy_ms = (await accuracyAfter(page, 0), Date.now() - started);
figures.backend = await page.getByTestId('backend').innerText();
await settled(page, 0);
// The first load's responses (the retrain later fetches the worker and its data).
const firstLoad = bodies.length;

// The first sample of the grid: a deletion that needs new prefix nodes (nothing shorter is evaluated yet).
await page.getByTestId('filter-class').selectOption('');
const sample = page.locator('[data-testid^="sample-"]').first();
await timeDeletion(page, figures, sample, 'new_node');
await settled(page, 1);

// Reset, then the same deletion: every node it needs is memoised.
await page.getByTestId('reset').click();
await accuracyAfter(page, 0);
await settled(page, 0);
await timeDeletion(page, figures, sample, 'memoised');
figures.longest_task_ms = await longestTask(page);

// Shard 0 offline (one deletion in each of its slices), then retrained in the page's worker.
await page.getByTestId('reset').click();
await accuracyAfter(page, 0);
await settled(page, 0);
const manifest = await (await fetch(new URL('bundle/manifest.json', BASE_URL))).json();
const ids = await onePerSlice(page, 0, manifest.partition.slices);
figures.retrain_deleted_ids = ids;
for (const [n, id] of ids.entries()) {
  await page.getByTestId(`sample-${id}`).click();
  await accuracyAfter(page, n + 1);
}
await settled(page, ids.length);
const retrain = await timeRetrain(page, 0);
figures.retrain_first_node_ms = retrain.first_node_ms;
figures.retrain_shard_ms = retrain.shard_ms;
figures.retrain_longest_task_ms = retrain.longest_task_ms;
await context.close();
await browser.close();
Object.assign(figures, transferred(bodies.slice(0, firstLoad)));
const all = transferred(bodies);
figures.transferred_gzip_bytes_with_retrain = all.transferred_gzip_bytes;

// The web app's speed goals, against the figures measured inside the page.
const goals = [
  ['first accuracy after navigation', figures.first_accuracy_ms, 5000, 'ms'],
  ['deletion that needs one new node, click to frame', figures.delete_click_to_accuracy_in_page_ms_new_node, 1000, 'ms'],
  ['deletion whose nodes are memoised, click to frame', figures.delete_click_to_accuracy_in_page_ms_memoised, 100, 'ms'],
  ['longest main-thread task', figures.longest_task_ms, 200, 'ms'],
  ['retraining one offline shard in the worker: first node', figures.retrain_first_node_ms, 10_000, 'ms'],
  ['retraining one offline shard in the worker: whole shard', figures.retrain_shard_ms, 60_000, 'ms'],
  ['longest main-thread task during the retrain', figures.retrain_longest_task_ms, 200, 'ms'],
  ['first load transferred, gzipped', figures.transferred_gzip_bytes, 8_000_000, 'bytes'],
];
console.log(JSON.stringify(figures, null, 2));
for (const [what, value, limit, unit] of goals) {
  console.log(`${value <= limit ? 'meets' : 'MISSES'} ${what}: ${value} ${unit} (goal ${limit} ${unit})`);
}
if (OUT) writeFileSync(OUT, JSON.stringify(figures, null, 2));
