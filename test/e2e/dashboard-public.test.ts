import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { browserSkipReason, launchBrowser, openContext, screenshot } from '../helpers/browser.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/** The dashboard's public pages in real headless Chromium, served by a real server over HTTP. */
const skip = browserSkipReason();

describe('dashboard in the browser: public pages, CSP and keyboard', { skip }, () => {
  let server: TestServer;
  let browser: Browser;
  before(async () => {
    server = await startTestServer();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('the sign-in page: labelled controls, keyboard reachable', async () => {
    const { context, page, assertClean } = await openContext(browser, server.url);
    try {
      await page.goto('/');
      await page.waitForURL(/\/signin/);
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      // The first Tab reaches the skip link.
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
      // Every control has a visible label the browser associates with it; Enter submits; the API's answer is shown.
      await page.getByLabel('Email').fill('nobody@example.com');
      await page.getByLabel('Password').fill('not the password');
      await page.getByLabel('Password').press('Enter');
      await page.getByRole('alert').getByText('The email or password is not correct.').waitFor();
      // Sign-in throttling: after repeated failures the page says when to try again (the server's Retry-After).
      for (let attempt = 0; attempt < 6; attempt++) {
        await page.getByRole('button', { name: 'Sign in', exact: true }).click();
        await page.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
      }
      const throttled = page.getByRole('alert').filter({ hasText: /Try again in \d+ minutes\./ });
      await throttled.waitFor();
      // When to try again, said once (the message may carry it; the page adds it only when it does not).
      assert.equal(((await throttled.textContent()) ?? '').match(/try again/gi)?.length, 1);
      await screenshot(page, 'sign-in');
      await assertClean();
    } finally {
      await context.close();
    }
  });

  it('the models page shows a signed-out visitor every offered model as a card, with its price rule', async () => {
    const { context, page, assertClean } = await openContext(browser, server.url);
    try {
      await page.goto('/models');
      await page.getByRole('heading', { name: 'Models & pricing' }).waitFor();
      const card = page.locator('#model-deepshi-sketch');
      await card.waitFor();
      const text = (await card.textContent()) ?? '';
      assert.match(text, /Pixel dimensions.*Prompt limit4,000 characters.*up to 4 reference images/s);
      // The price rule in words and its worked example, from the card's pricing (not a signed-in-only source).
      assert.match(text, /\$0\.001 per output image.*4 images: 4 × \$0\.001 = \$0\.004/s);
      await page.locator('#model-deepshi-echo').waitFor();
      // Exactly the cards the public route lists (every offered model), and still an invitation to sign in.
      const listed = (await (await fetch(`${server.url}/dashboard/api/models`)).json()) as { data: { id: string }[] };
      assert.equal(await page.getByTestId('model-card').count(), listed.data.length);
      await page.getByRole('status').filter({ hasText: 'Sign in' }).waitFor();
      // Signed out, the way in is first in the sidebar (where the account's pages are once signed in), not adrift.
      const sidebar = page.getByRole('navigation', { name: 'Dashboard' });
      const signIn = await sidebar.getByRole('link', { name: 'Sign in' }).boundingBox();
      const models = await sidebar.getByRole('link', { name: 'Models & pricing' }).boundingBox();
      assert.ok(signIn && models && signIn.y < models.y, 'the Sign in link comes before the documentation links');
      await screenshot(page, 'models-signed-out');
      // At laptop widths the size grid fits inside its card with the card's padding; on a phone it scrolls inside
      // the card, and the page itself never scrolls sideways (screenshot() checks both for every page).
      for (const width of [1280, 1309, 1440, 390]) {
        await page.setViewportSize({ width, height: 860 });
        const fit = await card.getByTestId('size-grid').evaluate((grid) => ({ scrolls: grid.scrollWidth > grid.clientWidth }));
        assert.equal(fit.scrolls, width < 800, `the size grid ${width < 800 ? 'scrolls inside its card' : 'fits'} at ${width}px`);
        await screenshot(page, `models-signed-out-${width}`, { fullPage: false });
      }
      await assertClean();
    } finally {
      await context.close();
    }
  });
});
