import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page, type Response } from 'playwright-core';
import { checkCompleteResponse, documentedCounts } from './documented-http.ts';

/**
 * Real headless Chromium from Debian's package (installed by .ci/run), driven by playwright-core — never a browser
 * that a tool downloads. Playwright starts it with a fresh, empty --user-data-dir per launch.
 */
export const CHROMIUM_PATH = process.env.DEEPSHI_CHROMIUM ?? '/usr/bin/chromium';

/** Screenshots of every page the browser tests visit (gitignored). */
export const ARTIFACTS_DIR = path.resolve(import.meta.dirname, '../../test-artifacts/dashboard');

/**
 * Whether the browser tests can run. In CI (CI=true) a missing browser is a failure, not a skip: .ci/run installs it.
 * Returns a skip reason, or undefined to run.
 */
export function browserSkipReason(): string | undefined {
  if (fs.existsSync(CHROMIUM_PATH)) return undefined;
  if (process.env.CI) throw new Error(`Chromium is not installed at ${CHROMIUM_PATH}; .ci/run installs Debian's chromium package`);
  return `no Chromium at ${CHROMIUM_PATH} (apt-get install chromium, or set DEEPSHI_CHROMIUM)`;
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    // This machine's network is closed: without these, Chromium keeps trying to reach Google's services.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
    timeout: 60_000,
  });
}

/**
 * A browsing context for one person, whose pages are watched: any request that leaves the server's origin, any
 * Content-Security-Policy violation, any uncaught page error, and any response of the server that does not match the
 * served /openapi.json (checked as the suite's fetch checks them, test/helpers/documented-http.ts) is recorded, and
 * `assertClean()` fails on them.
 */
export async function openContext(
  browser: Browser,
  origin: string,
): Promise<{ context: BrowserContext; page: Page; problems: string[]; assertClean(): Promise<void> }> {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 860 },
    baseURL: origin,
    permissions: ['clipboard-read', 'clipboard-write'],
  });
  const problems: string[] = [];
  context.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(`${origin}/`) && !url.startsWith('data:') && !url.startsWith('blob:')) problems.push(`third-party request: ${url}`);
  });
  const checks = new Set<Promise<void>>();
  context.on('response', (response) => {
    if (!response.url().startsWith(`${origin}/`)) return;
    const check = checkBrowserResponse(response).catch((error: Error) => {
      problems.push(`response not as /openapi.json documents it: ${error.message}`);
    });
    checks.add(check);
    void check.finally(() => checks.delete(check));
  });
  const page = await context.newPage();
  const watch = (watched: Page) => {
    watched.on('console', (message) => {
      if (/Content.Security.Policy|Refused to/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
    });
    watched.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  };
  watch(page);
  context.on('page', watch);
  page.setDefaultTimeout(20_000);
  return {
    context,
    page,
    problems,
    async assertClean() {
      await Promise.all(checks);
      assert.deepEqual(problems, [], 'no third-party requests, CSP violations, page errors or undocumented responses');
    },
  };
}

/** One response the page received, checked against /openapi.json once its whole body is here. */
async function checkBrowserResponse(response: Response): Promise<void> {
  const status = response.status();
  // A redirect or a request the page aborted has no body to read; neither is an answer the page used.
  const body = status >= 300 && status < 400 ? Buffer.alloc(0) : await response.body().catch(() => undefined);
  if (body === undefined) return;
  const before = documentedCounts.responses;
  checkCompleteResponse(response.request().method(), response.url(), status, response.headers()['content-type'] ?? null, body);
  browserCounts.responses += documentedCounts.responses - before;
}

/** How many of the browser's responses were checked against /openapi.json in this process. */
export const browserCounts = { responses: 0 };

/**
 * Layout defects a screenshot would show, found mechanically: the page wider than the window, a card, table or chart
 * sticking out of the page's column, a block (or a chart's plot) sticking out of its card's padding, a chart legend
 * cell with no value.
 * Returns one line per defect (empty when the layout holds).
 */
export async function layoutProblems(page: Page): Promise<string[]> {
  return page.evaluate(LAYOUT_CHECK) as Promise<string[]>;
}

// Page-side source as text: tsx would wrap named functions in a helper (__name) the page does not have.
const LAYOUT_CHECK = `(() => {
  const problems = [];
  const describe = (element) =>
    element.tagName.toLowerCase() + (element.id ? '#' + element.id : '') +
    (typeof element.className === 'string' && element.className.trim() ? '.' + element.className.trim().split(/\\s+/).join('.') : '');
  const contentBox = (element) => {
    const rect = element.getBoundingClientRect();
    const style = getComputedStyle(element);
    return { left: rect.left + parseFloat(style.paddingLeft), right: rect.right - parseFloat(style.paddingRight) };
  };
  const outside = (inner, outer) => inner.left < outer.left - 1 || inner.right > outer.right + 1;
  const span = (box) => Math.round(box.left) + '–' + Math.round(box.right);
  const root = document.documentElement;
  if (root.scrollWidth > window.innerWidth + 1) problems.push('the page is ' + root.scrollWidth + 'px wide in a ' + window.innerWidth + 'px window');
  const main = document.querySelector('main');
  if (main) {
    const column = contentBox(main);
    for (const block of main.querySelectorAll(':scope :is(.card, .table-wrap, .chart, .stats, .grid-2, pre)')) {
      const rect = block.getBoundingClientRect();
      if (rect.width && outside(rect, column)) problems.push(describe(block) + ' (' + span(rect) + ') sticks out of the page column (' + span(column) + ')');
    }
  }
  for (const card of document.querySelectorAll('.card, .chart')) {
    const inside = contentBox(card);
    for (const block of card.querySelectorAll(':scope :is(table, .table-wrap, .size-grid, pre, .row, .field-grid, fieldset, .results, .u-wrap)')) {
      // A table inside a scrolling box may be wider than the card: the box scrolls, the page does not.
      if (block.matches('table') && block.closest('.table-wrap, .size-grid')) continue;
      const rect = block.getBoundingClientRect();
      if (rect.width && outside(rect, inside)) problems.push(describe(block) + ' (' + span(rect) + ') reaches past the padding of ' + describe(card) + ' (' + span(inside) + ')');
    }
  }
  for (const entry of document.querySelectorAll('.u-legend .u-series')) {
    const label = (entry.querySelector('.u-label')?.textContent ?? '').trim();
    const shown = (entry.querySelector('.u-value')?.textContent ?? '').trim();
    if (!label || !shown || shown === '--') problems.push('chart legend entry "' + label + '" shows "' + shown + '"');
  }
  return problems;
})()`;

/**
 * Saves a screenshot as a test artifact (test-artifacts/dashboard/<name>.png): the whole page, or the window only.
 * Every page a test photographs is also checked for the layout defects of `layoutProblems`.
 */
export async function screenshot(page: Page, name: string, options: { fullPage?: boolean } = {}): Promise<string> {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  const fullPage = options.fullPage ?? true;
  // A whole-page capture keeps the window's scroll position, and the sidebar is sticky to the window: scrolled down,
  // it would be drawn part-way down the page. Capture from the top, as a person first sees the page.
  const scrolled = fullPage ? await page.evaluate(() => window.scrollY) : 0;
  if (scrolled) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: file, fullPage });
  if (scrolled) await page.evaluate((y) => window.scrollTo(0, y), scrolled);
  // Saved first, so a failing layout can be looked at.
  assert.deepEqual(await layoutProblems(page), [], `the layout of ${name} holds (see ${file})`);
  return file;
}
