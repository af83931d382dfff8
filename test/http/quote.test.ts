/**
 * POST /v1/images/quote (docs/dashboard.md): for every shipped image model, through its real adapter against its
 * upstream simulator (test/simulators) or the offline model, and for each price rule in its table (and custom sizes,
 * and a priced prompt), the quote equals the hold the same generation takes and the charge it settles at: every
 * shipped model is list-settled. A model an operator sets to settle from the upstream's report is quoted
 * `exact: false`, and charged at most the quote. A quote validates like a generation (same errors), holds and
 * charges nothing. Every response is validated against the served /openapi.json.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { formatUsd, parseUsd } from '../../src/domain/money.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';
import { startOpenAiSimulator } from '../simulators/openai-simulator.ts';
import { startGeminiSimulator } from '../simulators/gemini-simulator.ts';
import { startXaiSimulator } from '../simulators/xai-simulator.ts';
import { startCompatibleSimulator } from '../simulators/openai-compatible-simulator.ts';
import { BflSimulator } from '../simulators/bfl-simulator.ts';
import { FalSimulator } from '../simulators/fal-simulator.ts';

type Body = Record<string, unknown>;
interface Quote {
  object: string;
  model: string;
  cost: { total_cost: number };
  basis: string;
  exact: boolean;
}

describe('POST /v1/images/quote', () => {
  let t: TestServer;
  const closers: Array<() => Promise<void>> = [];
  let client: OpenAI;
  let accountId: string;

  before(async () => {
    const openai = await startOpenAiSimulator({ apiKey: 'sk-sim' });
    const gemini = await startGeminiSimulator({ apiKey: 'sk-sim' });
    const xai = await startXaiSimulator({ apiKey: 'sk-sim' });
    const compatible = await startCompatibleSimulator({ apiKey: 'sk-sim' });
    const bfl = await new BflSimulator().start();
    const fal = await new FalSimulator().start();
    closers.push(
      () => openai.close(),
      () => gemini.close(),
      () => xai.close(),
      () => compatible.close(),
      () => bfl.close(),
      () => fal.close(),
    );
    t = await startTestServer({
      env: {
        OPENAI_API_KEY: 'sk-sim',
        OPENAI_BASE_URL: openai.url,
        GEMINI_API_KEY: 'sk-sim',
        GEMINI_BASE_URL: gemini.url,
        XAI_API_KEY: 'sk-sim',
        XAI_BASE_URL: xai.url,
        BFL_API_KEY: bfl.key,
        BFL_BASE_URL: bfl.url,
        FAL_KEY: fal.key,
        FAL_BASE_URL: fal.url,
        DEEPSHI_BANANA_PRO_API_KEY: 'sk-sim',
        DEEPSHI_BANANA_PRO_BASE_URL: compatible.url,
        DEEPSHI_IMAGE_1_API_KEY: 'sk-sim',
        DEEPSHI_IMAGE_1_BASE_URL: compatible.url,
      },
    });
    const account = await t.createAccount('1000');
    accountId = account.accountId;
    client = new OpenAI({ apiKey: account.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
  });
  after(async () => {
    await t?.close();
    for (const close of closers) await close();
  });

  const quote = (body: Body) => client.post('/images/quote', { body }) as unknown as Promise<Quote>;

  /** The request bodies that exercise each entry of the model's price table (or its sizes, per megapixel). */
  function variants(card: Record<string, any>): Body[] {
    const base: Body = { model: card.id, prompt: 'a lighthouse at dusk, for the price check' };
    const out: Body[] = [base];
    const pricing = card.pricing;
    if (pricing.unit === 'megapixel') {
      out.push({ ...base, width: 1024, height: 1024 }, { ...base, width: 2048, height: 1024 });
    }
    if (pricing.by) {
      for (const key of Object.keys(pricing.table)) {
        const values = key.split('/');
        out.push({ ...base, ...Object.fromEntries(pricing.by.map((param: string, index: number) => [param, values[index]])) });
      }
    }
    // Custom sizes, priced per started megapixel by the values before the size (a 1 MP and an 8 MP one).
    for (const prefix of Object.keys(pricing.custom_size_per_megapixel ?? {})) {
      const values = prefix.split('/');
      const leading = Object.fromEntries(pricing.by.slice(0, -1).map((param: string, index: number) => [param, values[index]]));
      out.push({ ...base, ...leading, size: '1280x720' }, { ...base, ...leading, size: '3840x2160' });
    }
    // A priced prompt counts UTF-8 bytes, not characters.
    if (pricing.prompt_per_million_bytes) out.push({ ...base, prompt: `Ünïcödé ✓ ${'ж'.repeat(700)}` });
    if (card.max_n >= 2) out.push({ ...out.at(-1)!, n: 2 });
    return out;
  }

  it('covers every shipped image model (each one offered here through its simulator)', async () => {
    const offered = (await client.models.list()).data.map((model) => model.id);
    const catalog = t.server.catalog
      .list()
      .filter((model) => model.kind === 'image')
      .map((model) => model.id);
    assert.deepEqual(
      catalog.filter((id) => !offered.includes(id)),
      [],
      'every image model is offered in this test',
    );
  });

  it('quote = hold = charge, exact, for every price rule of every shipped model', async () => {
    const cards = (await client.models.list()).data as unknown as Array<Record<string, any>>;
    let checked = 0;
    let refusedBoth = 0;
    for (const card of cards.filter((model) => model.kind === 'image')) {
      assert.equal(card.pricing.settle, 'list', `${card.id}: shipped list-settled`);
      for (const body of variants(card)) {
        const label = JSON.stringify(body).slice(0, 160);
        const quoted = await quote(body).catch((error: unknown) => error);
        if (quoted instanceof OpenAI.APIError) {
          // The generation refuses the same body with the same error, charging nothing.
          const refused = await client.images.generate(body as never).then(
            () => assert.fail(`${label}: generation accepted what the quote refused`),
            (error) => error,
          );
          assert.deepEqual([refused.status, refused.code, refused.param], [quoted.status, quoted.code, quoted.param], label);
          refusedBoth++;
          continue;
        }
        const result = quoted as Quote;
        assert.equal(result.object, 'image.quote');
        assert.equal(result.model, card.id);
        assert.equal(result.exact, true, label);
        const before = await t.balance(accountId);
        const { data: image, response } = await client.images.generate(body as never).withResponse();
        const request = await t.server.store.getRequest(response.headers.get('x-request-id')!);
        assert.ok(request, label);
        assert.equal(image.data!.length, (body.n as number | undefined) ?? 1, `${label}: every image delivered`);
        const charged = (image.usage as unknown as { cost: { total_cost: number } }).cost.total_cost;
        assert.equal(result.cost.total_cost, Number(formatUsd(request.hold)), `${label}: the quote is the hold`);
        assert.equal(request.cost, request.hold, `${label}: the charge is the hold`);
        assert.equal(charged, result.cost.total_cost, `${label}: the charge is the quote`);
        assert.equal(parseUsd(before) - parseUsd(await t.balance(accountId)), request.cost, `${label}: the balance paid the quote`);
        assert.equal(response.headers.get('x-request-cost'), formatUsd(request.cost), label);
        if (card.pricing.by && body[card.pricing.by[0]] !== undefined && !card.pricing.prompt_per_million_bytes) {
          const key = card.pricing.by.map((param: string) => body[param]).join('/');
          const n = (body.n as number | undefined) ?? 1;
          assert.equal(
            result.cost.total_cost,
            Number((Number(card.pricing.table[key]) * n).toFixed(9)),
            `${label}: the card's table price × n`,
          );
        }
        checked++;
      }
    }
    assert.ok(checked >= 40, `checked ${checked} quotes`);
    assert.ok(refusedBoth <= checked / 4, `${refusedBoth} variants were refused by both quote and generation`);
  });

  it("the card's numbers give the quote: a custom size per started megapixel, the prompt per UTF-8 byte", async () => {
    const cards = (await client.models.list()).data as unknown as Array<Record<string, any>>;
    const card = cards.find((model) => model.id === 'gpt-image-2')!;
    const perMegapixel = parseUsd(card.pricing.custom_size_per_megapixel.high);
    const promptRate = parseUsd(card.pricing.prompt_per_million_bytes);
    const prompt = 'ж'.repeat(333); // 666 bytes
    const quoted = await quote({ model: 'gpt-image-2', prompt, quality: 'high', size: '2048x1152', n: 2 });
    // 2048×1152 = 2.25 MP → 3 started megapixels; the prompt once per request, rounded up to the nano-dollar.
    const expected = 2n * 3n * perMegapixel + (666n * promptRate + 999_999n) / 1_000_000n;
    assert.equal(parseUsd(String(quoted.cost.total_cost)), expected);
    assert.match(quoted.basis, /custom size 2048x1152: 3 MP, high/);
  });

  it('validates like a generation: same errors for bad bodies, unknown or forbidden models, text models', async () => {
    const restricted = await t.createAccount('1', { models: ['deepshi-echo'] });
    const narrow = new OpenAI({ apiKey: restricted.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    const cases: Array<[OpenAI, Body]> = [
      [client, { model: 'deepshi-sketch' }],
      [client, { model: 'deepshi-sketch', prompt: 'x', n: 99 }],
      [client, { model: 'deepshi-sketch', prompt: 'x', size: 'huge' }],
      [client, { model: 'no-such-model', prompt: 'x' }],
      [client, { model: 'deepshi-echo', prompt: 'x' }],
      [narrow, { model: 'deepshi-sketch', prompt: 'x' }],
    ];
    for (const [caller, body] of cases) {
      const quoted = await caller.post('/images/quote', { body }).then(
        () => assert.fail('quote accepted'),
        (error) => error,
      );
      const generated = await caller.images.generate(body as never).then(
        () => assert.fail('generation accepted'),
        (error) => error,
      );
      assert.ok(quoted instanceof OpenAI.APIError);
      assert.deepEqual(
        [quoted.status, quoted.code, quoted.param, quoted.message],
        [generated.status, generated.code, generated.param, generated.message],
        JSON.stringify(body),
      );
    }
    const noKey = await fetch(`${t.url}/v1/images/quote`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model":"deepshi-sketch","prompt":"x"}',
    });
    assert.equal(noKey.status, 401);
    await noKey.arrayBuffer();
  });

  it('holds and charges nothing, and leaves no request behind', async () => {
    const fresh = await t.createAccount('0.001');
    const caller = new OpenAI({ apiKey: fresh.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
    // Dearer than the balance: a generation would be 402, the quote still answers.
    const result = (await caller.post('/images/quote', { body: { model: 'gpt-image-1.5', prompt: 'x', quality: 'high' } })) as Quote;
    assert.ok(result.cost.total_cost > 0.001);
    assert.equal(await t.balance(fresh.accountId), '0.001');
    assert.deepEqual(await t.server.store.listRequests(fresh.accountId, 10), []);
  });
});

describe('POST /v1/images/quote, for a model the operator settles from the upstream', () => {
  let t: TestServer;
  let client: OpenAI;
  const closers: Array<() => Promise<void>> = [];

  before(async () => {
    const openai = await startOpenAiSimulator({ apiKey: 'sk-sim' });
    const xai = await startXaiSimulator({ apiKey: 'sk-sim' });
    closers.push(
      () => openai.close(),
      () => xai.close(),
    );
    // The shipped catalog with two models switched to the settle rules an operator may choose (docs/providers.md).
    const catalog = parseYaml(fs.readFileSync(path.resolve(import.meta.dirname, '../../catalog/models.yaml'), 'utf8'));
    const model = (id: string) => catalog.models.find((entry: { id: string }) => entry.id === id);
    model('gpt-image-2').pricing.settle = 'upstream_tokens';
    model('grok-imagine').pricing.settle = 'upstream_cost';
    t = await startTestServer({
      catalog: stringifyYaml(catalog),
      env: { OPENAI_API_KEY: 'sk-sim', OPENAI_BASE_URL: openai.url, XAI_API_KEY: 'sk-sim', XAI_BASE_URL: xai.url },
    });
    const account = await t.createAccount('100');
    client = new OpenAI({ apiKey: account.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
  });
  after(async () => {
    await t?.close();
    for (const close of closers) await close();
  });

  for (const body of [
    { model: 'gpt-image-2', prompt: 'settled from tokens', quality: 'medium', size: '1024x1024' },
    { model: 'grok-imagine', prompt: 'settled from the reported cost' },
  ]) {
    it(`${body.model}: quoted as the hold, exact: false; charged what the upstream reported, at most the quote`, async () => {
      const quoted = (await client.post('/images/quote', { body })) as unknown as Quote;
      assert.equal(quoted.exact, false);
      const { data: image, response } = await client.images.generate(body as never).withResponse();
      const request = (await t.server.store.getRequest(response.headers.get('x-request-id')!))!;
      assert.equal(parseUsd(String(quoted.cost.total_cost)), request.hold, 'the quote is the hold');
      assert.ok(request.upstreamCost !== null && request.upstreamCost > 0n, 'the upstream reported its bill');
      assert.equal(request.cost, request.upstreamCost, "charged the upstream's bill (no markup set)");
      assert.ok(request.cost <= request.hold, `charged ${formatUsd(request.cost)} within the quote ${quoted.cost.total_cost}`);
      assert.equal((image.usage as unknown as { cost: { total_cost: number } }).cost.total_cost, Number(formatUsd(request.cost)));
    });
  }
});
