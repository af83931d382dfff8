import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

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
 * Content-Security-Policy violation, any uncaught page error is recorded, and `assertClean()` fails on them.
 */
export async function openContext(
  browser: Browser,
  origin: string,
): Promise<{ context: BrowserContext; page: Page; problems: string[]; assertClean(): void }> {
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
    assertClean() {
      assert.deepEqual(problems, [], 'no third-party requests, CSP violations or page errors');
    },
  };
}

/** Saves a screenshot as a test artifact (test-artifacts/dashboard/<name>.png): the whole page, or the window only. */
export async function screenshot(page: Page, name: string, options: { fullPage?: boolean } = {}): Promise<string> {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: options.fullPage ?? true });
  return file;
}
