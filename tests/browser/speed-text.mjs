// Measures the web app's speed on the reviews demo (a text bundle) in headless Chromium on the CPU backend (no
// WebGPU): first accuracy after navigation, a deletion that needs new prefix nodes, the same deletion with every
// node memoised, the longest main-thread task and the bytes of the first load. `cargo xtask demo --measure` runs it
// with BASE_URL (the page at `?data=reviews`) and CHROMIUM set; OUT, when set, names a JSON file for the figures.
import { writeFileSync } from 'node:fs';
import {
  accuracyAfter, classify, launch, longestTask, recordBodies, requireEnv, settled, timeDeletion, transferred, watchClicks,
  watchLongTasks,
} from './page.mjs';

const { BASE_URL, CHROMIUM } = requireEnv(['BASE_URL', 'CHROMIUM'], 'cargo xtask demo --measure');
const { OUT } = process.env;

const browser = await launch(CHROMIUM, false);
const context = await browser.newContext({ viewport: { width: 1280, height: 1600 } });
const page = await context.newPage();
await watchLongTasks(page);
await watchClicks(page);
page.on('console', (m) => { if (m.text().startsWith('s3t ')) console.log(`  ${m.text()}`); });
const bodies = recordBodies(page);
const figures = {};

const started = Date.now();
await page.goto(BASE_URL);
const first = await accuracyAfter(page, 0);
figures.first_accuracy_ms = Date.now() - started;
figures.first_accuracy = first.value;
figures.backend = await page.getByTestId('backend').innerText();
await settled(page, 0);
const firstLoad = bodies.length;

// The first review of the list: a deletion that needs new prefix nodes.
const sample = page.locator('[data-testid^="sample-"]').first();
const shard = (await sample.locator('.meta').innerText()).match(/shard (\d+)/)[1];
await timeDeletion(page, figures, sample, 'new_node');
await settled(page, 1);
// What retraining that shard in the page would take, as the page tells the visitor before it starts.
await page.getByTestId(`retrain-button-${shard}`).click();
const ask = page.getByTestId(`retrain-ask-${shard}`);
await ask.waitFor();
figures.retrain_estimate_s = Number(await ask.getAttribute('data-seconds'));
figures.retrain_estimate_nodes = Number(await ask.getAttribute('data-nodes'));
figures.retrain_estimate_samples = Number(await ask.getAttribute('data-samples'));
await page.getByTestId(`retrain-dismiss-${shard}`).click();
await page.getByTestId('reset').click();
await accuracyAfter(page, 0);
await settled(page, 0);
await timeDeletion(page, figures, sample, 'memoised');
figures.longest_task_ms = await longestTask(page);

// Try your own sentence: the first loads the rest of the encoder and the tokenizer; the next is the answer alone.
const tasksBefore = await page.evaluate(() => window.__longTasks.length);
const bodiesBefore = bodies.length;
const t = Date.now();
await classify(page, 'a gripping, funny and beautifully acted film');
figures.sentence_first_ms = Date.now() - t;
const second = await classify(page, 'dull, slow and far too long');
figures.sentence_ms = Number(await second.getAttribute('data-millis'));
figures.sentence_label = await second.getAttribute('data-label');
figures.sentence_longest_task_ms = await page.evaluate((n) => Math.max(0, ...window.__longTasks.slice(n)), tasksBefore);
// What the first sentence loads: the embedding and the layers below the boundary, and the tokenizer.
figures.sentence_load = transferred(bodies.slice(bodiesBefore));
await context.close();
await browser.close();
Object.assign(figures, transferred(bodies.slice(0, firstLoad)));

const goals = [
  ['first accuracy after navigation (CPU backend)', figures.first_accuracy_ms, 5000, 'ms'],
  ['deletion that needs a new node, click to frame', figures.delete_click_to_accuracy_in_page_ms_new_node, 1000, 'ms'],
  ['longest main-thread task', figures.longest_task_ms, 200, 'ms'],
  ['first load transferred, gzipped', figures.transferred_gzip_bytes, 20_000_000, 'bytes'],
  ['a sentence of your own, the encoder loaded', figures.sentence_ms, 2000, 'ms'],
];
console.log(JSON.stringify(figures, null, 2));
for (const [what, value, limit, unit] of goals) {
  console.log(`${value <= limit ? 'meets' : 'MISSES'} ${what}: ${value} ${unit} (goal ${limit} ${unit})`);
}
if (OUT) writeFileSync(OUT, JSON.stringify(figures, null, 2));
