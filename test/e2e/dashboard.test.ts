import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { Browser, Page } from 'playwright-core';
import { browserSkipReason, launchBrowser, openContext, screenshot } from '../helpers/browser.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../helpers/test-server.ts';

/**
 * The dashboard end to end, as people use it: real headless Chromium against a real server over HTTP, and the
 * openai SDK for the API side. One account holder's day (sign up, a key, the playground, usage, a top-up, a revoked
 * key) and an operator's (an account, a credit, its ledger). Screenshots of every page go to test-artifacts/.
 */
const skip = browserSkipReason();

const textOf = async (page: Page, testId: string) => (await page.getByTestId(testId).first().textContent())?.trim() ?? '';

describe('dashboard end to end in Chromium', { skip }, () => {
  let server: TestServer;
  let browser: Browser;
  let member: Awaited<ReturnType<typeof openContext>>;
  const email = 'ada@example.com';
  const password = 'correct horse battery staple';
  let apiKey = '';
  let sdk: OpenAI;

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
    // A wrong password is refused with the API's message, where the person is.
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill('wrong password!');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL('**/overview');
    member.assertClean();
  });

  it('creates a key in the dashboard, shown once with a copy button, and the openai SDK uses it', async () => {
    const { page } = member;
    await page.goto('/keys');
    await page.getByLabel('Name').fill('laptop');
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
    assert.equal(await page.getByText(apiKey).count(), 0);
    await screenshot(page, 'keys');

    sdk = server.client(apiKey);
    const image = await sdk.images.generate({ model: 'deepshi-sketch', prompt: 'a lighthouse at dusk' });
    assert.equal(image.data?.length, 1);
    assert.equal((image.usage as any).cost.total_cost, 0.001);
    member.assertClean();
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
    await screenshot(page, 'playground');
    // A reload keeps the request (model, prompt, n are in the URL) and its price.
    await page.reload();
    assert.equal(await page.getByLabel('Prompt').inputValue(), 'a red fox in the snow');
    await page.getByTestId('quote').getByText('$0.002').waitFor();
    member.assertClean();
  });

  it('shows both requests in Usage and their spend in Overview', async () => {
    const { page } = member;
    await page.goto('/usage');
    const rows = page.getByTestId('usage-table').locator('tbody tr');
    await rows.nth(1).waitFor();
    assert.equal(await rows.count(), 2);
    assert.match((await rows.nth(0).textContent()) ?? '', /deepshi-sketch.*images\.generations.*settled.*2 images.*\$0\.002/);
    assert.match((await rows.nth(1).textContent()) ?? '', /laptop.*deepshi-sketch.*\$0\.001/);
    // Filters live in the URL: a reload shows the same rows.
    const laptop = await page.getByLabel('Key').locator('option', { hasText: 'laptop' }).getAttribute('value');
    await page.getByLabel('Key').selectOption(laptop!);
    await page.waitForURL(/key_id=/);
    await page.reload();
    await rows.first().waitFor();
    assert.equal(await rows.count(), 1);
    await screenshot(page, 'usage');

    await page.goto('/overview');
    await page.getByTestId('spend-today').getByText('$0.003').waitFor();
    assert.equal(await textOf(page, 'balance').then((text) => text.replace(/^Balance/, '').match(/\$[\d.,]+/)?.[0]), '$0.997');
    await screenshot(page, 'overview');
    member.assertClean();
  });

  it('redeems a top-up code and the balance changes', async () => {
    const { page } = member;
    const codes = await server.admin<{ data: { code: string }[] }>('POST', '/admin/v1/credit-codes', { amount: '10', count: 1, note: 'welcome' });
    const code = codes.data[0].code;
    await page.goto('/credits');
    await page.getByTestId('balance').getByText('$0.997').waitFor();
    await page.getByLabel('Top-up code', { exact: true }).fill(code);
    await page.getByRole('button', { name: 'Redeem' }).click();
    await page.getByRole('status').getByText('Added $10.00').waitFor();
    await page.getByTestId('balance').getByText('$10.997').waitFor();
    await page.getByTestId('ledger-table').getByText(/credit code/).first().waitFor();
    // A code is single-use: the second try shows the API's reason.
    await page.getByLabel('Top-up code', { exact: true }).fill(code);
    await page.getByRole('button', { name: 'Redeem' }).click();
    await page.getByRole('alert').waitFor();
    await screenshot(page, 'credits');
    member.assertClean();
  });

  it('revokes the key in the dashboard, and the SDK’s next call gets 403', async () => {
    const { page } = member;
    await page.goto('/keys');
    await page.getByRole('button', { name: 'Revoke laptop' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
    await page.getByTestId('keys-table').getByText('revoked').waitFor();
    await assert.rejects(sdk.images.generate({ model: 'deepshi-sketch', prompt: 'again' }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.APIError);
      assert.equal(error.status, 403);
      return true;
    });
    member.assertClean();
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
    await page.getByRole('heading', { name: /\/v1\/images\/generations/ }).first().waitFor();
    await screenshot(page, 'reference', { fullPage: false });
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
      await screenshot(page, 'operator-account');

      for (const [path, name] of [['/operator/codes', 'operator-codes'], ['/operator/users', 'operator-users'], ['/operator/models', 'operator-models'], ['/operator/service', 'operator-service']]) {
        await page.goto(path);
        await page.getByRole('heading', { level: 1 }).waitFor();
        await page.waitForLoadState('networkidle');
        assert.equal(await page.getByRole('alert').count(), 0, `${path} loads without an error`);
        await screenshot(page, name);
      }
      operator.assertClean();
    } finally {
      await operator.context.close();
    }
  });
});
