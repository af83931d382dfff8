import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { Browser, Page } from 'playwright-core';
import { browserCounts, browserSkipReason, launchBrowser, openContext, screenshot } from '../helpers/browser.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../helpers/test-server.ts';

/**
 * The dashboard end to end, as people use it: real headless Chromium against a real server over HTTP, and the
 * openai SDK for the API side. One account holder's day (sign up, a key, the playground, usage, a top-up, a revoked
 * key) and an operator's (an account, a credit, its ledger). Screenshots of every page go to test-artifacts/.
 */
const skip = browserSkipReason();

/** "$0.0031" → 3_100_000 nano-dollars (the page shows amounts digit for digit). */
const nanos = (text: string) => {
  const [whole, fraction = ''] = text.replace(/[$,\s]/g, '').split('.');
  return BigInt(whole || '0') * 1_000_000_000n + BigInt(`${fraction}000000000`.slice(0, 9));
};
/** 3_100_000n → "$0.0031", as the page formats it (at least two decimals). */
const dollars = (value: bigint) => {
  const fraction = (value % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '').padEnd(2, '0');
  return `$${(value / 1_000_000_000n).toLocaleString('en-US')}.${fraction}`;
};
const textOf = async (page: Page, testId: string) => (await page.getByTestId(testId).first().textContent())?.trim() ?? '';
/** The create-key form's limit inputs (Requests per minute … Queued jobs): left and right edge of each, in px. */
const limitInputEdges = (page: Page) =>
  page
    .locator('form[aria-labelledby="create-key-title"] input[type="number"]')
    .evaluateAll((inputs) => inputs.map((input) => [input.getBoundingClientRect().left, input.getBoundingClientRect().right]));

describe('dashboard end to end in Chromium', { skip }, () => {
  let server: TestServer;
  let browser: Browser;
  let member: Awaited<ReturnType<typeof openContext>>;
  const email = 'ada@example.com';
  let password = 'correct horse battery staple';
  let apiKey = '';
  let sdk: OpenAI;
  let spent = 0n;

  before(async () => {
    server = await startTestServer({ env: { DEEPSHI_SIGNUP: 'open', DEEPSHI_SIGNUP_CREDITS: '1' } });
    browser = await launchBrowser();
    member = await openContext(browser, server.url);
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('signs up, signs out and signs in again', async () => {
    const { page } = member;
    await page.goto('/signup');
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(password);
    await screenshot(page, 'sign-up');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL('**/overview');
    await page.getByTestId('balance').getByText('$1.00').waitFor();
    assert.equal(await textOf(page, 'signed-in-as'), email);

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL('**/signin');
    // A signed-in page sends a signed-out visitor to sign in, and back to it afterwards.
    await page.goto('/usage?model=deepshi-sketch');
    await page.waitForURL(/\/signin\?next=/);
    assert.equal(new URL(page.url()).searchParams.get('next'), '/usage?model=deepshi-sketch');
    // A wrong password is refused with the API's message, where the person is.
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill('wrong password!');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/usage?model=deepshi-sketch');

    // Changing the password: the old one stops working, the new one signs in.
    await page.getByRole('link', { name: 'Settings' }).click();
    await page.getByLabel('Current password').fill(password);
    await page.getByLabel('New password').fill(`${password}!`);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByRole('status').getByText('Password changed').waitFor();
    await screenshot(page, 'settings');
    const refused = await fetch(`${server.url}/dashboard/api/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: server.url },
      body: JSON.stringify({ email, password }),
    });
    assert.equal(refused.status, 401);
    password = `${password}!`;
    await member.assertClean();
  });

  it('creates a key in the dashboard, shown once with a copy button, and the openai SDK uses it', async () => {
    const { page } = member;
    await page.goto('/keys');
    await page.getByLabel('Name').fill('laptop');
    await page.getByLabel('Queued jobs').fill('5');
    // Side by side, the limit inputs share one width, whatever each one's label or hint says.
    const widths = (await limitInputEdges(page)).map(([left, right]) => right - left);
    assert.equal(widths.length, 5);
    assert.ok(Math.max(...widths) - Math.min(...widths) <= 1, `limit input widths ${widths}`);
    await page.getByRole('button', { name: 'Create key' }).click();
    apiKey = (await textOf(page, 'secret-value')) ?? '';
    assert.match(apiKey, /^sk-bf-/);
    await page.getByRole('button', { name: 'Copy key' }).click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), apiKey);
    await screenshot(page, 'keys-new-secret');
    await page.getByRole('button', { name: 'Done' }).click();
    // Never shown again: the list has only the display form.
    await page.reload();
    await page.getByTestId('keys-table').getByText('laptop').waitFor();
    await page.getByTestId('keys-table').getByText('5 queued jobs').waitFor();
    assert.equal(await page.getByText(apiKey).count(), 0);
    await screenshot(page, 'keys');

    sdk = server.client(apiKey);
    const image = await sdk.images.generate({ model: 'deepshi-sketch', prompt: 'a lighthouse at dusk' });
    assert.equal(image.data?.length, 1);
    assert.equal((image.usage as any).cost.total_cost, 0.001);
    await member.assertClean();
  });

  it('generates in the playground: the quoted price, the image, and a charge equal to the quote', async () => {
    const { page } = member;
    await page.goto('/playground?model=deepshi-sketch');
    await page.getByLabel('Prompt').fill('a red fox in the snow');
    await page.getByLabel('n', { exact: true }).fill('2');
    await page.getByLabel('n', { exact: true }).press('Tab');
    await page.getByTestId('quote').getByText('$0.002').waitFor();
    // The snippet is the same request, with the placeholder key and never the page's own.
    assert.match(await textOf(page, 'snippet'), /"n":2/);
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.getByTestId('charged').waitFor({ timeout: 60_000 });
    assert.equal(await textOf(page, 'charged'), await textOf(page, 'run-quote'));
    assert.equal(await textOf(page, 'charged'), '$0.002');
    const images = page.getByTestId('result-image');
    assert.equal(await images.count(), 2);
    const width = await images.first().evaluate((element) => (element as HTMLImageElement).naturalWidth);
    assert.ok(width > 0, 'the image decodes');
    // Download links carry the image; two images side by side for comparison.
    assert.match((await page.getByRole('link', { name: 'Download' }).first().getAttribute('href')) ?? '', /^data:image\/png;base64,/);
    await page.getByRole('checkbox', { name: 'Compare' }).nth(0).check();
    await page.getByRole('checkbox', { name: 'Compare' }).nth(1).check();
    assert.equal(await page.getByRole('region', { name: 'Comparison' }).getByRole('img').count(), 2);
    await screenshot(page, 'playground');
    // A reload keeps the request (model, prompt, n are in the URL) and its price.
    await page.reload();
    assert.equal(await page.getByLabel('Prompt').inputValue(), 'a red fox in the snow');
    await page.getByTestId('quote').getByText('$0.002').waitFor();
    await member.assertClean();
  });

  it('edits with reference images dropped and pasted, quoted with them and charged the quote, streaming partial images; the temporary key is never stored or shown', async () => {
    const { page } = member;
    await page.goto('/playground?model=deepshi-sketch&mode=edit&partial_images=2');
    await page.getByLabel('Prompt').fill('make it night');
    // One reference dropped onto the page, one pasted: both as PNG files the browser made.
    const png = async () =>
      page.evaluateHandle(async () => {
        const canvas = document.createElement('canvas');
        canvas.width = 64;
        canvas.height = 64;
        const context = canvas.getContext('2d')!;
        context.fillStyle = '#3b5bdb';
        context.fillRect(0, 0, 64, 64);
        const blob = await new Promise<Blob>((resolve) => canvas.toBlob((made) => resolve(made!), 'image/png'));
        const transfer = new DataTransfer();
        transfer.items.add(new File([blob], 'blue.png', { type: 'image/png' }));
        return transfer;
      });
    await page.locator('.dropzone').dispatchEvent('drop', { dataTransfer: await png() });
    const pasted = await png();
    await page.evaluate((clipboardData) => window.dispatchEvent(new ClipboardEvent('paste', { clipboardData })), pasted);
    await page.getByRole('img', { name: /Reference 2/ }).waitFor();
    // The price shown is the edit's own quote, sent with both references (POST /v1/images/quote, multipart).
    await page.locator('[data-testid="quote"][data-references="2"]').waitFor();
    await page.getByRole('button', { name: 'Edit', exact: true }).click();
    const run = page.getByTestId('run').first();
    await run.getByTestId('charged').waitFor({ timeout: 60_000 });
    assert.equal(
      await run.getByTestId('charged').textContent(),
      await run.getByTestId('run-quote').textContent(),
      'charged what was quoted',
    );
    assert.equal(await run.getByTestId('result-image').count(), 1);
    assert.equal(await run.getAttribute('data-partials'), '1', 'the partial images arrived before the final one');
    const snippet = await textOf(page, 'snippet');
    assert.match(snippet, /\/v1\/images\/edits/);
    assert.match(snippet, /image\[\]=@reference-2\.png/);
    // The session's temporary key lives in memory only: not in storage, the URL, the page's text or a cookie.
    const exposed = await page.evaluate(() =>
      [
        JSON.stringify({ ...localStorage }),
        JSON.stringify({ ...sessionStorage }),
        location.href,
        // biome-ignore lint/performance/useDomNodeTextContent: the text as rendered (innerText) is what the test reads.
        document.body.innerText,
        document.cookie,
      ].join('\n'),
    );
    assert.doesNotMatch(exposed, /sk-bf-/);
    await member.assertClean();
  });

  it('chats with a text model, streamed, with its cost', async () => {
    const { page } = member;
    await page.goto('/playground?model=deepshi-echo');
    await page.getByLabel('Message').fill('hello there');
    await page.getByLabel('Message').press('Control+Enter');
    const reply = page.getByTestId('chat-assistant');
    await reply.getByText('Echo: hello there').waitFor();
    await reply.getByText(/deepshi-echo · \$0\.0000/).waitFor();
    await screenshot(page, 'playground-chat');
    await member.assertClean();
  });

  it('shows every request in Usage and their spend in Overview', async () => {
    const { page } = member;
    await page.goto('/usage');
    const rows = page.getByTestId('usage-table').locator('tbody tr');
    await rows.nth(3).waitFor();
    assert.equal(await rows.count(), 4);
    assert.match((await rows.nth(0).textContent()) ?? '', /deepshi-echo.*chat\.completions.*settled.*tokens/);
    assert.match((await rows.nth(1).textContent()) ?? '', /deepshi-sketch.*images\.edits.*settled.*1 image.*\$0\.001/);
    assert.match((await rows.nth(2).textContent()) ?? '', /deepshi-sketch.*images\.generations.*settled.*2 images.*\$0\.002/);
    assert.match((await rows.nth(3).textContent()) ?? '', /laptop.*deepshi-sketch.*\$0\.001/);
    // Filters live in the URL: a reload shows the same rows.
    const laptop = await page.getByLabel('Key').locator('option', { hasText: 'laptop' }).getAttribute('value');
    await page.getByLabel('Key').selectOption(laptop!);
    await page.waitForURL(/key_id=/);
    await page.reload();
    await rows.first().waitFor();
    assert.equal(await rows.count(), 1);
    await screenshot(page, 'usage');

    // Paging: two rows a page, older and back to the newest; the page is in the URL too.
    await page.goto('/usage?limit=2');
    await rows.nth(1).waitFor();
    const firstPage = await rows.allTextContents();
    assert.equal(firstPage.length, 2);
    await page.getByRole('link', { name: 'Older →' }).click();
    await page.waitForURL(/before=/);
    await page.waitForFunction(
      (first) => document.querySelector('[data-testid=usage-table] tbody tr')?.textContent !== first,
      firstPage[0],
    );
    const secondPage = await rows.allTextContents();
    assert.equal(secondPage.length, 2);
    assert.ok(!secondPage.some((row) => firstPage.includes(row)), 'the older page has other requests');
    await page.reload();
    await rows.nth(1).waitFor();
    assert.deepEqual(await rows.allTextContents(), secondPage);
    await page.getByRole('button', { name: 'Newest' }).click();
    await page.waitForFunction(
      (first) => document.querySelector('[data-testid=usage-table] tbody tr')?.textContent === first,
      firstPage[0],
    );

    // CSV export: the same requests as a download.
    await page.goto('/usage');
    await rows.nth(3).waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export CSV' }).click()]);
    const csv = fs
      .readFileSync((await download.path())!, 'utf8')
      .trim()
      .split('\n');
    assert.match(csv[0], /^id,created_at,key_id,model,endpoint,status,images,prompt_tokens,completion_tokens,cost/);
    assert.equal(csv.length, 5);

    // Overview: today's spend is exactly the sum of those requests' costs, and the balance what the server holds.
    await page.goto('/usage');
    await rows.nth(3).waitFor();
    const costs = await rows.locator('td:last-child').allTextContents();
    spent = costs.reduce((sum, cost) => sum + nanos(cost), 0n);
    await page.goto('/overview');
    await page.getByTestId('spend-today').getByText(dollars(spent)).waitFor();
    const { data } = await server.admin<{ data: { balance: string }[] }>('GET', `/admin/v1/accounts?q=${encodeURIComponent(email)}`);
    assert.equal(nanos(data[0].balance), 1_000_000_000n - spent);
    await page
      .getByTestId('balance')
      .getByText(dollars(1_000_000_000n - spent))
      .waitFor();
    // The chart's legend names each model with an amount: the 30-day totals, which add up to the spend; with the
    // pointer on today's bar, today's date and that day's amounts.
    const legend = async () =>
      page
        .locator('.u-legend .u-series')
        .evaluateAll((rows) =>
          rows.map((row) => [row.querySelector('.u-label')?.textContent ?? '', row.querySelector('.u-value')?.textContent ?? '']),
        );
    const resting = await legend();
    assert.deepEqual(resting[0], ['Day', '30 days']);
    assert.deepEqual(
      resting
        .slice(1)
        .map(([label]) => label)
        .sort(),
      ['deepshi-echo', 'deepshi-sketch'],
    );
    assert.equal(
      resting.slice(1).reduce((sum, [, amount]) => sum + nanos(amount), 0n),
      spent,
    );
    await screenshot(page, 'overview');
    await screenshot(page, 'overview-window', { fullPage: false });
    const plot = page.locator('.u-over');
    const box = (await plot.boundingBox())!;
    await plot.hover({ position: { x: box.width - 2, y: box.height / 2 } });
    await page.waitForFunction(() => document.querySelector('.u-legend .u-series .u-value')?.textContent !== '30 days');
    const hovered = await legend();
    assert.deepEqual(hovered[0], ['Day', new Date().toISOString().slice(0, 10)]);
    assert.equal(
      hovered.slice(1).reduce((sum, [, amount]) => sum + nanos(amount), 0n),
      spent,
    );
    await screenshot(page, 'overview-chart-hover', { fullPage: false });
    // In a dark colour scheme the chart's axes take the page's text colour (uPlot's own is black on the canvas).
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.reload();
    await page.locator('.u-legend').waitFor();
    await screenshot(page, 'overview-dark', { fullPage: false });
    await page.emulateMedia({ colorScheme: 'light' });
    await member.assertClean();
  });

  it('redeems a top-up code and the balance changes', async () => {
    const { page } = member;
    const codes = await server.admin<{ data: { code: string }[] }>('POST', '/admin/v1/credit-codes', {
      amount: '10',
      count: 1,
      note: 'welcome',
    });
    const code = codes.data[0].code;
    await page.goto('/credits');
    await page
      .getByTestId('balance')
      .getByText(dollars(1_000_000_000n - spent))
      .waitFor();
    await page.getByLabel('Top-up code', { exact: true }).fill(code);
    await page.getByRole('button', { name: 'Redeem' }).click();
    await page.getByRole('status').getByText('Added $10.00').waitFor();
    await page
      .getByTestId('balance')
      .getByText(dollars(11_000_000_000n - spent))
      .waitFor();
    await page
      .getByTestId('ledger-table')
      .getByText(/credit code/)
      .first()
      .waitFor();
    // A code is single-use: the second try shows the API's reason.
    await page.getByLabel('Top-up code', { exact: true }).fill(code);
    await page.getByRole('button', { name: 'Redeem' }).click();
    await page.getByRole('alert').waitFor();
    await screenshot(page, 'credits');
    await member.assertClean();
  });

  it('revokes the key in the dashboard, and the SDK’s next call gets 403', async () => {
    const { page } = member;
    await page.goto('/keys');
    // By keyboard: Enter opens the confirmation, Escape closes it, Enter on the focused action confirms.
    await page.getByRole('button', { name: 'Revoke laptop' }).focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    await page.getByRole('button', { name: 'Revoke laptop' }).focus();
    await page.keyboard.press('Enter');
    await dialog.waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Revoke', 'focus moves into the dialog');
    await page.keyboard.press('Enter');
    await page.getByTestId('keys-table').getByText('revoked').waitFor();
    await assert.rejects(sdk.images.generate({ model: 'deepshi-sketch', prompt: 'again' }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.APIError);
      assert.equal(error.status, 403);
      return true;
    });
    await member.assertClean();
  });

  it('renders the models & pricing cards and the API reference', async () => {
    const { page } = member;
    await page.goto('/models');
    const card = page.locator('#model-deepshi-sketch');
    await card.waitFor();
    assert.match((await card.textContent()) ?? '', /Pixel dimensions.*Prompt limit4,000 characters.*up to 4 reference images/s);
    assert.match((await card.textContent()) ?? '', /\$0\.001 per output image.*4 images: 4 × \$0\.001 = \$0\.004/s);
    await page.locator('#model-deepshi-echo').waitFor();
    await screenshot(page, 'models');
    await page.goto('/reference');
    await page
      .getByRole('heading', { name: /\/v1\/images\/generations/ })
      .first()
      .waitFor();
    await screenshot(page, 'reference', { fullPage: false });
    await member.assertClean();
  });

  it('fits a phone: every member page at 390 px wide, without the page scrolling sideways', async () => {
    const { page } = member;
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      for (const [path, ready] of [
        ['/overview', page.getByTestId('balance')],
        ['/keys', page.getByTestId('keys-table')],
        ['/usage', page.getByTestId('usage-table')],
        ['/credits', page.getByTestId('ledger-table')],
        ['/playground?model=deepshi-sketch', page.getByRole('button', { name: 'Generate' })],
        ['/models', page.getByTestId('model-card').first()],
      ] as const) {
        await page.goto(path);
        await ready.waitFor();
        // screenshot() fails on a page wider than the window or a block outside its card.
        await screenshot(page, `phone-${path.slice(1).replace(/\?.*/, '')}`);
        if (path === '/keys') {
          // A box wider than its siblings overflows nothing, so screenshot() cannot see it: the create-key form's
          // limit inputs stand in one column whose edges line up (within 1 px).
          const edges = await limitInputEdges(page);
          assert.equal(edges.length, 5);
          for (const side of [0, 1]) {
            const at = edges.map((edge) => edge[side]);
            assert.ok(Math.max(...at) - Math.min(...at) <= 1, `limit inputs' ${side ? 'right' : 'left'} edges at 390 px: ${at}`);
          }
        }
      }
    } finally {
      await page.setViewportSize({ width: 1280, height: 860 });
    }
    member.assertClean();
  });

  it('as operator: signs in with the token, creates an account, credits it with a note, and sees the ledger entry', async () => {
    const operator = await openContext(browser, server.url);
    const { page } = operator;
    try {
      await page.goto('/signin');
      await page.getByRole('tab', { name: 'Operator token' }).click();
      await page.getByLabel('Operator token').fill(ADMIN_TOKEN);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL('**/operator');
      await page.getByTestId('accounts-table').waitFor();
      await screenshot(page, 'operator-accounts');

      await page.getByLabel('Account name').fill('Acme Studio');
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.waitForURL(/\/operator\/accounts\/acct_/);
      const accountId = decodeURIComponent(page.url().split('/').pop()!);
      await page.getByLabel('Amount (USD)').fill('25');
      await page.getByLabel('Note').fill('launch credit');
      await page.getByRole('button', { name: 'Add credit' }).click();
      await page.getByRole('status').getByText('The balance is now $25.00').waitFor();
      const entry = page.getByTestId('ledger-table').locator('tr', { hasText: 'launch credit' });
      await entry.waitFor();
      assert.match((await entry.textContent()) ?? '', /credit.*\$25/);
      assert.equal(await server.balance(accountId), '25');

      // A person for that account, who then signs in and sees its balance.
      await page.getByRole('textbox', { name: 'Email' }).fill('bob@acme.test');
      await page.getByLabel('Password', { exact: true }).fill('bob-password-123');
      await page.getByRole('button', { name: 'Add user' }).click();
      await page.getByText('bob@acme.test').first().waitFor();
      await screenshot(page, 'operator-account');

      // Every account's keys, with the same page and actions as the account holder's.
      await page.getByRole('link', { name: 'Keys' }).click();
      await page.waitForURL(/\/keys\?account_id=/);
      await page.getByLabel('Name').fill('acme-ci');
      await page.getByRole('button', { name: 'Create key' }).click();
      const acmeKey = (await textOf(page, 'secret-value')) ?? '';
      const acme = await server.client(acmeKey).images.generate({ model: 'deepshi-sketch', prompt: 'acme logo' });
      assert.equal((acme.usage as any).cost.total_cost, 0.001);
      assert.equal(await server.balance(accountId), '24.999');

      const bob = await openContext(browser, server.url);
      try {
        await bob.page.goto('/signin');
        await bob.page.getByLabel('Email').fill('bob@acme.test');
        await bob.page.getByLabel('Password').fill('bob-password-123');
        await bob.page.getByRole('button', { name: 'Sign in' }).click();
        await bob.page.waitForURL('**/overview');
        await bob.page.getByTestId('balance').getByText('$24.999').waitFor();
        await bob.assertClean();
      } finally {
        await bob.context.close();
      }

      // Top-up codes: created in the console, shown once, then listed by prefix until redeemed.
      await page.goto('/operator/codes');
      await page.getByLabel('Amount per code (USD)').fill('5');
      await page.getByLabel('How many').fill('2');
      await page.getByRole('button', { name: 'Create codes' }).click();
      const issued = (await textOf(page, 'codes-value')).split('\n');
      assert.equal(issued.length, 2);
      for (const code of issued) assert.match(code, /^DSC-/);
      await screenshot(page, 'operator-codes');
      await page.getByRole('button', { name: 'Done' }).click();
      await page.reload();
      // The list loads after the page: wait for it, so neither assertion can pass on an empty page.
      await page.getByText('not yet').nth(1).waitFor();
      assert.equal(await page.getByText(issued[0]).count(), 0, 'a code is never shown again');
      assert.ok((await page.getByText('not yet').count()) >= 2, 'the unredeemed codes are listed');

      // Margins: per model, what callers paid against the upstreams' bill, as GET /admin/v1/margins answers it. The
      // offline deepshi-sketch the account used has no upstream, so no bill and no margin are known ("—").
      await page.getByRole('navigation', { name: 'Operator console' }).getByRole('link', { name: 'Margins' }).click();
      await page.waitForURL('**/operator/margins');
      const sketchRow = page.getByTestId('margins-table').locator('tbody tr', { hasText: 'deepshi-sketch' });
      await sketchRow.waitFor();
      const margins = await server.admin('GET', '/admin/v1/margins');
      const sketch = margins.data.find((row: { model: string }) => row.model === 'deepshi-sketch');
      assert.ok(nanos(sketch.charged) >= 1_000_000n, 'the Acme image is counted');
      assert.deepEqual(
        (await sketchRow.locator('td').allTextContents()).map((text) => text.trim()),
        [String(sketch.requests), dollars(nanos(sketch.charged)), `0 of ${sketch.requests}`, '—', '—', '—', '—'],
      );
      await screenshot(page, 'operator-margins');
      // The period is a plain select: from the keyboard, one step up is the last 7 days, kept in the address.
      await page.getByLabel('Period (UTC days)').focus();
      await page.keyboard.press('ArrowUp');
      await page.waitForURL('**/operator/margins?days=7');
      await page.getByTestId('margins-table').locator('caption', { hasText: '7 days' }).waitFor();
      await sketchRow.waitFor();

      for (const [path, name] of [
        ['/operator/users', 'operator-users'],
        ['/operator/models', 'operator-models'],
        ['/operator/service', 'operator-service'],
      ]) {
        await page.goto(path);
        await page.getByRole('heading', { level: 1 }).waitFor();
        await page.waitForLoadState('networkidle');
        assert.equal(await page.getByRole('alert').count(), 0, `${path} loads without an error`);
        await screenshot(page, name);
      }
      await operator.assertClean();
    } finally {
      await operator.context.close();
    }
  });

  it("checked the browser's /dashboard/api, /admin/v1 and /v1 responses against /openapi.json (assertClean fails on a mismatch)", () => {
    // Every page above loads its data over the API: far more than this many responses; none may go unchecked.
    assert.ok(browserCounts.responses >= 30, `browser responses checked: ${browserCounts.responses}`);
  });
});
