// Lighthouse's accessibility and best-practices audits of the page, in the same headless Chromium as the tests.
import { launch as launchChrome } from 'chrome-launcher';
import lighthouse from 'lighthouse';

/// Runs Lighthouse on `url` (desktop form factor); returns each category's score (0–100) and the failed audits.
export async function audit(chromePath, url) {
  const chrome = await launchChrome({
    chromePath,
    chromeFlags: ['--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
  try {
    const result = await lighthouse(url, {
      port: chrome.port,
      output: 'json',
      logLevel: 'error',
      onlyCategories: ['accessibility', 'best-practices'],
      formFactor: 'desktop',
      screenEmulation: { mobile: false, width: 1400, height: 900, deviceScaleFactor: 1, disabled: false },
      // The page's first load evaluates the model: give it time to settle before the audits look.
      maxWaitForLoad: 120_000,
    });
    const lhr = result.lhr;
    const scores = Object.fromEntries(Object.entries(lhr.categories).map(([k, c]) => [k, Math.round(c.score * 100)]));
    const failed = Object.values(lhr.audits)
      .filter((a) => a.score !== null && a.score < 1 && a.scoreDisplayMode !== 'informative' && a.scoreDisplayMode !== 'manual')
      .map((a) => `${a.id}: ${a.title}`);
    return { scores, failed, report: result.report };
  } finally {
    await chrome.kill();
  }
}
