// The README's screenshot of the demo: the image page after three deletions, once every score is
// computed. `cargo xtask demo --screenshot` runs it with BASE_URL and CHROMIUM set, and OUT naming the PNG.
import { accuracyAfter, launch, requireEnv, settled } from './page.mjs';

const { BASE_URL, CHROMIUM, OUT } = requireEnv(['BASE_URL', 'CHROMIUM', 'OUT'], 'cargo xtask demo --screenshot');

const browser = await launch(CHROMIUM, false);
const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, deviceScaleFactor: 1 });
const page = await context.newPage();
await page.goto(BASE_URL);
await accuracyAfter(page, 0);
await settled(page, 0);
// Deletions that switch adapter groups off in a shard: the picture the page is about.
const samples = page.locator('[data-testid^="sample-"]');
for (let n = 1; n <= 3; n += 1) {
  await samples.nth(n * 7).click();
  await accuracyAfter(page, n);
  await settled(page, n);
}
await page.evaluate(() => window.scrollTo(0, 0));
await page.screenshot({ path: OUT });
await browser.close();
console.log(`wrote ${OUT}`);
