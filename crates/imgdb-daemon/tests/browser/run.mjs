// The daemon's web page in a real browser (Debian's headless Chromium,
// driven by playwright-core; no browser download).
//
//   node run.mjs http://127.0.0.1:PORT     (or IMGDB_URL=...)
//   SCREENSHOTS=DIR   where the screenshots go (default ./screenshots)
//   IMGDB_TOKEN=...   when the daemon wants a bearer token
//   CHROMIUM=PATH     the browser (default /usr/bin/chromium)
//
// Expects a daemon that has indexed the shapes of fixtures/eval/shapes,
// copied as <class>_<n>.<ext> (run.sh does this), so that file names say
// what the tiny test model sees. Exits 1 with a message on the first
// failed assertion, after a screenshot of the page as it was.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const base = (process.argv[2] || process.env.IMGDB_URL || '').replace(/\/+$/, '');
if (!base) {
  console.error('usage: node run.mjs BASE_URL   (or IMGDB_URL=BASE_URL node run.mjs)');
  process.exit(2);
}
const shots = path.resolve(process.env.SCREENSHOTS || './screenshots');
const token = process.env.IMGDB_TOKEN || '';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 20000;
const PAGE = 40; // app.js's page size

fs.mkdirSync(shots, { recursive: true });

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message);
}
const log = (...args) => console.log('browser test:', ...args);

/** The API directly (the test's own view, to compare the page with). */
async function api(p, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = 'Bearer ' + token;
  const res = await fetch(base + p, { ...options, headers }).catch((err) => {
    throw new Failure(`cannot reach the daemon at ${base}: ${err.cause ? err.cause.message : err.message}`);
  });
  if (!res.ok) throw new Failure(`${options.method || 'GET'} ${p} answered ${res.status}: ${await res.text()}`);
  return res;
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgdb-chromium-'));
const problems = []; // failed requests, console errors, page errors
let context;
let page;

async function shot(name) {
  const file = path.join(shots, name);
  await page.screenshot({ path: file, fullPage: false });
  log('screenshot', file);
}

/**
 * Waits until the current query's results settle and match `want`
 * ({min: at least this many, firstName: text in the first file name,
 * firstId: the first result's id}), and returns them.
 */
async function results(want, what) {
  try {
    const handle = await page.waitForFunction(({ query, min = 1, firstName, firstId }) => {
      const grid = document.querySelector('[data-testid="results"]');
      if (grid.dataset.state === 'loading' || (query !== undefined && grid.dataset.query !== query)) return false;
      const list = [...document.querySelectorAll('[data-testid="result"]')].map((li) => ({
        id: Number(li.dataset.id),
        name: li.dataset.name,
        rank: Number(li.dataset.rank),
        score: li.querySelector('[data-testid="score"]').textContent,
      }));
      if (list.length < min) return false;
      if (firstName !== undefined && !list[0].name.includes(firstName)) return false;
      if (firstId !== undefined && list[0].id !== firstId) return false;
      return list;
    }, want, { timeout: STEP_MS, polling: 100 });
    return await handle.jsonValue();
  } catch (err) {
    const now = await page.evaluate(() => [...document.querySelectorAll('[data-testid="result"]')]
      .slice(0, 5).map((li) => `${li.dataset.name} (id ${li.dataset.id})`));
    const error = await page.locator('[data-testid="error"]').textContent();
    throw new Failure(`${what} did not appear within ${STEP_MS} ms; first results now: ${JSON.stringify(now)}; `
      + `error shown: ${JSON.stringify(error.trim())}`);
  }
}

const scoreOf = (r) => Number.parseFloat(r.score);
const digits = (text) => Number((text || '').replace(/[^0-9]/g, ''));

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
    colorScheme: 'light',
  });
  page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  if (token) {
    await page.addInitScript((t) => sessionStorage.setItem('imgdb.token', t), token);
  }
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    // The page aborts stale queries on purpose (AbortController), and the
    // browser cancels what it no longer needs: neither is a failure.
    const reason = req.failure() ? req.failure().errorText : '?';
    if (reason !== 'net::ERR_ABORTED') problems.push(`request failed: ${req.method()} ${req.url()}: ${reason}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`);
  });

  const status = await (await api('/v1/status')).json();
  check(status.images > 0, `the daemon has indexed nothing (status: ${JSON.stringify(status)})`);
  log(`daemon at ${base}: ${status.images} images, ${status.queued} queued`);

  // ---- the page and its status
  await page.goto(base + '/', { waitUntil: 'load' });
  const policy = (await (await fetch(base + '/', { headers: token ? { Authorization: 'Bearer ' + token } : {} }))
    .headers.get('content-security-policy')) || '';
  check(policy.includes("script-src 'self'"), `the page has no 'self' Content-Security-Policy: ${policy}`);
  await page.waitForFunction(
    (n) => Number(document.querySelector('[data-testid="status-images"]').textContent.replace(/[^0-9]/g, '')) === n,
    status.images, { timeout: STEP_MS },
  ).catch(async () => {
    const shown = await page.locator('[data-testid="status-images"]').textContent();
    throw new Failure(`the status shows ${JSON.stringify(shown)} images, the daemon says ${status.images}`);
  });
  const indexedShown = digits(await page.locator('[data-testid="status-indexed"]').textContent());
  const indexedNow = (await (await api('/v1/status')).json()).indexed;
  check(indexedShown === indexedNow, `the status shows ${indexedShown} indexed, the daemon says ${indexedNow}`);
  const queuedShown = digits(await page.locator('[data-testid="status-queued"]').textContent());
  check(queuedShown === 0, `the status shows ${queuedShown} queued after indexing finished`);
  const roots = await page.locator('[data-testid="root"]').count();
  check(roots >= 1, 'no watched folder is shown');
  log(`status ok: ${status.images} images, ${indexedShown} indexed, ${roots} root(s)`);

  // ---- text search, typed (debounced, stale answers dropped)
  const input = page.getByTestId('search-input');
  await input.click();
  await input.pressSequentially('a red circle', { delay: 40 });
  const text = await results({ query: 'text:a red circle', firstName: 'circle' }, 'results for "a red circle"');
  const top = text.slice(0, Math.min(3, text.length));
  check(top.every((r) => r.name.includes('circle')),
    `the first results for "a red circle" are not all circles: ${top.map((r) => r.name).join(', ')}`);
  check(text.every((r, i) => r.rank === i + 1), 'ranks are not 1, 2, 3, … in page order');
  for (let i = 1; i < text.length; i++) {
    check(scoreOf(text[i]) <= scoreOf(text[i - 1]) + 1e-9, `scores are not descending at rank ${i + 1}`);
  }
  log(`text search ok: ${top.map((r) => `${r.name} ${r.score}`).join(', ')}`);
  // Let the visible thumbnails arrive before the picture is taken.
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="result"] img')]
    .filter((img) => img.getBoundingClientRect().top < window.innerHeight)
    .every((img) => img.complete && img.naturalWidth > 0), null, { timeout: STEP_MS })
    .catch(() => { throw new Failure('the first thumbnails did not load'); });
  await shot('results.png');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot('results-dark.png');
  await page.emulateMedia({ colorScheme: 'light' });

  // ---- infinite scroll: the next page arrives at the bottom, and only then
  if (status.images > PAGE) {
    check(text.length === PAGE, `the first page has ${text.length} results, not ${PAGE}`);
    await page.locator('[data-testid="result"]').last().scrollIntoViewIfNeeded();
    await page.mouse.wheel(0, 20000);
    const more = await results({ min: PAGE + 1 }, 'the second page');
    const ids = new Set(more.map((r) => r.id));
    check(ids.size === more.length, 'a result is shown twice after loading more');
    check(more[PAGE].rank === PAGE + 1, `the first result of page 2 has rank ${more[PAGE].rank}`);
    log(`infinite scroll ok: ${more.length} results`);
    await page.evaluate(() => window.scrollTo(0, 0));
  }

  // ---- filters: a format nothing has gives the empty state
  await page.locator('#filters > summary').click();
  await page.getByTestId('filter-format').selectOption('gif');
  await page.waitForFunction(() => {
    const empty = document.querySelector('[data-testid="empty"]');
    return !empty.hidden && empty.dataset.state === 'no-results'
      && document.querySelectorAll('[data-testid="result"]').length === 0;
  }, null, { timeout: STEP_MS }).catch(() => { throw new Failure('a format filter with no match did not show "no results"'); });
  await page.getByTestId('filter-format').selectOption('');
  await results({ firstName: 'circle' }, 'results after clearing the filter');
  await page.locator('#filters > summary').click();
  log('filters ok');

  // ---- the larger view, then "more like this"
  const pick = text[Math.min(4, text.length - 1)];
  const card = page.locator(`[data-testid="result"][data-id="${pick.id}"] button`);
  await card.focus();
  await page.keyboard.press('Enter');
  const viewer = page.getByTestId('viewer');
  await viewer.waitFor({ state: 'visible' });
  await page.waitForFunction(() => {
    const img = document.querySelector('[data-testid="viewer-image"]');
    return img.complete && img.naturalWidth > 0;
  }, null, { timeout: STEP_MS }).catch(() => { throw new Failure('the original did not load in the larger view'); });
  const title = await page.getByTestId('viewer-title').textContent();
  check(title === pick.name, `the larger view shows ${JSON.stringify(title)}, not ${pick.name}`);
  await shot('viewer.png');
  await page.keyboard.press('Escape');
  await viewer.waitFor({ state: 'hidden' });
  check(await page.evaluate((id) => document.activeElement.closest('[data-testid="result"]')?.dataset.id === String(id), pick.id),
    'closing the larger view did not give focus back to its result');

  await card.click();
  await viewer.waitFor({ state: 'visible' });
  await page.getByTestId('more-like-this').click();
  await viewer.waitFor({ state: 'hidden' });
  const similar = await results({ query: `similar:${pick.id}`, min: 2, firstId: pick.id },
    `"more like this" for ${pick.name} (id ${pick.id}) first`);
  check(Math.abs(scoreOf(similar[0]) - 1) <= 0.011, `"more like this" scores the image itself ${similar[0].score}, not 1.00`);
  check(await page.getByTestId('query-image').isVisible(), '"more like this" does not show its query image');
  log(`more like this ok: ${similar[0].name} ${similar[0].score}, then ${similar[1].name} ${similar[1].score}`);

  // ---- drop an image file onto the page: that image first, score 1.00
  const target = text[Math.min(2, text.length - 1)];
  const image = await (await api(`/v1/images/${target.id}`)).json();
  const fileRes = await api(`/v1/images/${target.id}/file`);
  const bytes = Buffer.from(await fileRes.arrayBuffer());
  const type = fileRes.headers.get('content-type') || 'application/octet-stream';
  const name = path.basename(typeof image.path === 'string' ? image.path : 'dropped');
  const dataTransfer = await page.evaluateHandle(({ b64, name, type }) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([data], name, { type }));
    return dt;
  }, { b64: bytes.toString('base64'), name, type });
  const zone = page.getByTestId('drop-zone');
  await zone.dispatchEvent('dragenter', { dataTransfer });
  await zone.dispatchEvent('dragover', { dataTransfer });
  await zone.dispatchEvent('drop', { dataTransfer });
  const dropped = await results({ query: `image:${name}`, firstId: target.id },
    `the dropped ${name} (id ${target.id}) first`);
  check(Math.abs(scoreOf(dropped[0]) - 1) <= 0.011, `the dropped image scores ${dropped[0].score}, not 1.00`);
  check(await page.getByTestId('query-image').isVisible(), 'the dropped image is not shown as the query');
  check((await page.locator('#query-image-img').getAttribute('alt')) === name, 'the query image has not the file name as alt');
  check((await input.inputValue()) === '', 'the text box was not cleared by the image query');
  await page.waitForFunction(() => document.querySelector('#query-image-img').naturalWidth > 0, null, { timeout: STEP_MS })
    .catch(() => { throw new Failure('the dropped image is not displayed'); });
  await shot('drop.png');
  log(`drop ok: ${dropped[0].name} ${dropped[0].score}`);

  // ---- the file picker does the same
  const other = text[Math.min(1, text.length - 1)];
  const otherRes = await api(`/v1/images/${other.id}/file`);
  await page.getByTestId('image-input').setInputFiles({
    name: other.name,
    mimeType: otherRes.headers.get('content-type') || 'application/octet-stream',
    buffer: Buffer.from(await otherRes.arrayBuffer()),
  });
  await results({ query: `image:${other.name}`, firstId: other.id }, `the picked ${other.name} first`);
  log('file picker ok');

  // ---- nothing went wrong on the way
  await page.waitForTimeout(300);
  check(problems.length === 0, `the page had problems:\n  ${problems.join('\n  ')}`);
}

let code = 0;
try {
  await main();
  log('all assertions passed');
} catch (err) {
  code = 1;
  console.error(`browser test FAILED: ${err instanceof Failure ? err.message : err.stack || err}`);
  if (problems.length && !(err instanceof Failure && err.message.includes('had problems'))) {
    console.error(`  also seen:\n  ${problems.join('\n  ')}`);
  }
  if (page) await shot('failure.png').catch(() => {});
} finally {
  if (context) await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(code);
