// The web page against a running daemon with a large database: page load,
// first results after typing, each page of infinite scroll, failed requests
// and console errors (BENCHMARKS.md, "Daemon").
//   node benches/browser/page-at-scale.mjs URL [SCREENSHOT]
// playwright-core comes from crates/imgdb-daemon/tests/browser/run.sh's
// install under target/browser-test (run that once first).
import { createRequire } from 'node:module';
const require = createRequire(new URL('../../target/browser-test/', import.meta.url));
const { chromium } = require('playwright-core');
const url = process.argv[2];
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless','--no-sandbox','--disable-gpu','--disable-quic','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
const failed = []; const errors = [];
page.on('requestfailed', r => failed.push(r.url()));
page.on('response', r => { if (r.status() >= 400) failed.push(r.status() + ' ' + r.url()); });
page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
let t = Date.now();
await page.goto(url, { waitUntil: 'load' });
await page.waitForSelector('[data-testid=status-images]');
console.log('page load', Date.now() - t, 'ms');
t = Date.now();
await page.fill('[data-testid=search-input]', 'a red circle');
await page.waitForFunction(() => document.querySelectorAll('[data-testid=results] [data-id]').length > 0);
console.log('first results after typing', Date.now() - t, 'ms (200 ms debounce included)');
for (let i = 0; i < 5; i++) {
  t = Date.now();
  const before = await page.locator('[data-testid=results] [data-id]').count();
  await page.mouse.wheel(0, 20000);
  await page.waitForFunction(n => document.querySelectorAll('[data-testid=results] [data-id]').length > n, before, { timeout: 10000 });
  console.log('scroll page', i + 2, ':', await page.locator('[data-testid=results] [data-id]').count(), 'results in', Date.now() - t, 'ms');
}
await page.mouse.wheel(0, -1000000);
await page.waitForTimeout(800);
await page.screenshot({ path: process.argv[3] || 'target/bench-daemon/page-at-scale.png' });
const status = await page.locator('[data-testid=status-images]').innerText();
console.log('status shows', status, 'images; failed requests:', failed.length, failed.slice(0,3), 'console errors:', errors.length, errors.slice(0,3));
await browser.close();
