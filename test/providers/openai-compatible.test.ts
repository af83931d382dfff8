import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { toFile } from 'openai';
import { parse as parseYaml } from 'yaml';
import { parseUsd } from '../../src/domain/money.ts';
import { probeBase64 } from '../../src/images/probe.ts';
import { renderSketch } from '../../src/images/sketch.ts';
import { buildRequestBody } from '../../src/providers/openai-compatible/openai-compatible-image-adapter.ts';
import type { NormalizedImageRequest } from '../../src/providers/types.ts';
import { charged, failsWith } from '../helpers/assertions.ts';
import { startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';
import { COMPAT_OUTPUT_TOKENS, startCompatibleSimulator, type CompatibleSimulator } from '../simulators/openai-compatible-simulator.ts';
import type { Fault } from '../simulators/openai-simulator.ts';

/**
 * The openai-compatible adapter (deepshi-banana-pro, deepshi-image-1, and any operator model on such a server)
 * end to end: openai SDK → Deepshi → a generic OpenAI-compatible image server simulator.
 */

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');
const MAX_RESPONSE_BYTES = 3_000_000;
const TIMEOUTS = { connect_ms: 1000, first_byte_ms: 1500, total_ms: 5000 };

/**
 * The shipped catalog with tiny timeouts on the compatible routes, plus test models on the banana-pro server:
 * `compat-tier` (aspect_ratio + resolution sizing) and `compat-cost` (settled from the upstream's reported cost).
 */
function catalogJson(): string {
  const catalog = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
  const find = (id: string) => catalog.models.find((model: { id: string }) => model.id === id);
  for (const model of catalog.models) {
    for (const route of model.routes)
      if (route.provider === 'openai-compatible') route.options = { timeouts: TIMEOUTS, max_response_bytes: MAX_RESPONSE_BYTES };
  }
  const route = (upstream: string) => [
    {
      provider: 'openai-compatible',
      upstream_model: upstream,
      credentials_env: 'DEEPSHI_BANANA_PRO_API_KEY',
      base_url_env: 'DEEPSHI_BANANA_PRO_BASE_URL',
      options: { timeouts: TIMEOUTS, max_response_bytes: MAX_RESPONSE_BYTES },
    },
  ];
  catalog.models.push(
    { ...structuredClone(find('nano-banana-2')), id: 'compat-tier', routes: route('tier-model') },
    {
      ...structuredClone(find('deepshi-banana-pro')),
      id: 'compat-cost',
      max_n: 4,
      pricing: { unit: 'image', base: '0.05', settle: 'upstream_cost' },
      routes: route('cost-model'),
    },
  );
  return JSON.stringify(catalog);
}

describe('openai-compatible adapter through POST /v1/images/generations', () => {
  let sim: CompatibleSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    sim = await startCompatibleSimulator();
    t = await startTestServer({
      env: {
        DEEPSHI_BANANA_PRO_API_KEY: 'sk-banana',
        DEEPSHI_BANANA_PRO_BASE_URL: sim.url,
        DEEPSHI_IMAGE_1_API_KEY: 'sk-image-1',
        DEEPSHI_IMAGE_1_BASE_URL: `${sim.url}/v1`,
      },
      catalog: catalogJson(),
    });
    account = await t.createAccount('100');
  });
  beforeEach(() => sim.reset());
  after(async () => {
    await t.close();
    await sim.close();
  });

  /** failsWith, plus this suite's rule that no failure charges anything (hence local). */
  async function failsUncharged(call: () => Promise<unknown>, expected: Parameters<typeof failsWith>[1]): Promise<void> {
    const { charge } = await charged(t, account, () => failsWith(call, expected));
    assert.equal(charge, 0n, 'nothing charged');
  }

  const generate = (params: Record<string, unknown>) =>
    t.client(account.key).images.generate({ model: 'deepshi-banana-pro', prompt: 'p', ...params } as never);

  it('deepshi-banana-pro defaults: exact upstream request and answer, $0.01 charged', async () => {
    const { result, charge } = await charged(t, account, () => generate({ prompt: 'a serene canal in Venice at sunset' }));
    assert.equal(sim.requests.length, 1);
    const [upstream] = sim.requests;
    assert.equal(upstream.method, 'POST');
    assert.equal(upstream.path, '/v1/images/generations');
    assert.equal(upstream.headers.authorization, 'Bearer sk-banana');
    assert.equal(upstream.headers['content-type'], 'application/json');
    assert.deepEqual(upstream.body, {
      width: 1024,
      height: 1024,
      size: '1024x1024',
      model: 'deepshi-banana-pro',
      prompt: 'a serene canal in Venice at sunset',
      n: 1,
      response_format: 'b64_json',
    });
    assert.equal(result.size, '1024x1024');
    assert.deepEqual(
      result.data!.map((item) => item.b64_json),
      sim.sentImages,
    );
    assert.equal(charge, parseUsd('0.01'));
    assert.equal((result.usage as any).cost.total_cost, 0.01);
    assert.equal((result.usage as any).prompt_tokens, sim.sentUsages[0].input_tokens);
    assert.equal((result.usage as any).completion_tokens, COMPAT_OUTPUT_TOKENS);
  });

  it('width, height, seed and output_format are sent under their own names; the webp answer is passed through untouched', async () => {
    const { result } = await charged(t, account, () =>
      generate(withExtras({ output_format: 'webp' as const }, { width: 512, height: 768, seed: 42 })),
    );
    assert.deepEqual(sim.requests[0].body, {
      width: 512,
      height: 768,
      size: '512x768',
      seed: 42,
      output_format: 'webp',
      model: 'deepshi-banana-pro',
      prompt: 'p',
      n: 1,
      response_format: 'b64_json',
    });
    assert.equal(result.size, '512x768');
    assert.equal(result.data![0].b64_json, sim.sentImages[0]);
    assert.equal(probeBase64(result.data![0].b64_json!)!.format, 'webp');
  });

  it('deepshi-image-1 uses its own key and base URL (given with /v1); the SDK size field becomes width/height', async () => {
    await t.client(account.key).images.generate({ model: 'deepshi-image-1', prompt: 'p', size: '768x512' as never });
    const [upstream] = sim.requests;
    assert.equal(upstream.path, '/v1/images/generations');
    assert.equal(upstream.headers.authorization, 'Bearer sk-image-1');
    assert.deepEqual(upstream.body, {
      width: 768,
      height: 512,
      size: '768x512',
      model: 'deepshi-image-1',
      prompt: 'p',
      n: 1,
      response_format: 'b64_json',
    });
  });

  it('aspect_ratio and resolution are sent under their own names with the resolved size', async () => {
    const result = await t
      .client(account.key)
      .images.generate(withExtras({ model: 'compat-tier', prompt: 'p' }, { aspect_ratio: '16:9', resolution: '1K' }));
    assert.deepEqual(sim.requests[0].body, {
      aspect_ratio: '16:9',
      resolution: '1K',
      size: '1376x768',
      model: 'tier-model',
      prompt: 'p',
      n: 1,
      response_format: 'b64_json',
    });
    assert.equal(result.size, '1376x768');
  });

  it("extras are forwarded before the adapter's own fields; URL and webhook extras are dropped with a warning", async () => {
    const result = await generate(
      withExtras({}, { steps: 4, negative_prompt: 'blurry', callback_url: 'https://example.com/cb', init_image: '//evil.example/x.png' }),
    );
    assert.deepEqual(sim.requests[0].body, {
      steps: 4,
      negative_prompt: 'blurry',
      width: 1024,
      height: 1024,
      size: '1024x1024',
      model: 'deepshi-banana-pro',
      prompt: 'p',
      n: 1,
      response_format: 'b64_json',
    });
    const warned = (result as any).warnings.map((warning: any) => warning.param);
    assert.ok(warned.includes('callback_url') && warned.includes('init_image'));
  });

  it('extras can never override the owned fields (adapter level)', () => {
    const request: NormalizedImageRequest = {
      model: 'deepshi-banana-pro',
      prompt: 'ours',
      n: 1,
      seed: undefined,
      width: 1024,
      height: 1024,
      params: { width: 1024, height: 1024 },
      outputFormat: undefined,
      partialImages: 0,
      inputImages: [],
      extra: { model: 'theirs', prompt: 'theirs', n: 9, response_format: 'url', size: '1x1', guidance: 3.5 },
    };
    const { body, warnings } = buildRequestBody(request, {
      upstreamModel: 'upstream-id',
      baseUrl: 'http://x',
      credential: undefined,
      options: {},
    });
    assert.deepEqual(body, {
      guidance: 3.5,
      width: 1024,
      height: 1024,
      size: '1024x1024',
      model: 'upstream-id',
      prompt: 'ours',
      n: 1,
      response_format: 'b64_json',
    });
    assert.deepEqual(
      warnings.map((warning) => warning.param),
      ['model', 'prompt', 'n', 'response_format', 'size'],
    );
  });

  it('revised_prompt from the upstream reaches the caller', async () => {
    sim.revisePrompts = true;
    const result = await generate({ prompt: 'a fox' });
    assert.equal(result.data![0].revised_prompt, 'a fox, highly detailed');
  });

  it("url answers from the server's own origin are downloaded at once, without credentials", async () => {
    sim.deliver = 'url';
    const { result, charge } = await charged(t, account, () => generate({}));
    assert.equal(result.data![0].b64_json, sim.sentImages[0]);
    const download = sim.requests.find((request) => request.method === 'GET')!;
    assert.match(download.path, /^\/files\//);
    assert.equal(download.headers.authorization, undefined);
    assert.equal(charge, parseUsd('0.01'));
  });

  for (const { where, url, message } of [
    { where: 'another local port', url: () => `http://127.0.0.1:${sim.port + 1}/x.png`, message: /non-HTTPS result link/ },
    { where: 'the cloud metadata address', url: () => 'http://169.254.169.254/latest/meta-data/', message: /non-HTTPS result link/ },
    { where: 'an HTTPS IP address', url: () => 'https://169.254.169.254/x.png', message: /host it does not deliver from/ },
  ]) {
    it(`a result URL at ${where} is not downloaded: 502, nothing charged`, async () => {
      sim.setFault({ kind: 'url', url: url() });
      await failsUncharged(() => generate({}), { status: 502, code: 'upstream_error', message });
      assert.equal(sim.requests.length, 1, 'nothing fetched, nothing retried');
    });
  }

  // A result link on the server's own origin that answers 404 (gone), a redirect to it, or an expired signed URL
  // used to end the whole process (an unheard UND_ERR_ABORTED from the abandoned download body).
  for (const [name, route] of [
    ['404', '/does-not-exist'],
    ['404 for a missing file', '/files/missing.png'],
  ] as const) {
    it(`a result link answering ${name}: 502, nothing charged, and the server serves the next request`, async () => {
      sim.setFault({ kind: 'url', url: `${sim.url}${route}` });
      await failsUncharged(() => generate({}), { status: 502, code: 'upstream_error', message: /HTTP 404/ });
      assert.equal(sim.requests.filter((request) => request.method === 'GET').length, 1, 'the link was fetched once');
      // Destroyed download bodies report on a later tick; the process must still be here to answer.
      await new Promise((resolve) => setTimeout(resolve, 50));
      sim.setFault(undefined);
      assert.equal((await generate({})).data!.length, 1);
    });
  }

  describe('usage.cost rule (settle: upstream_cost)', () => {
    for (const { cost, charge } of [
      { cost: 0.0123, charge: '0.0123' },
      { cost: { total_cost: 0.02 }, charge: '0.02' },
      { cost: 0.07, charge: '0.05' }, // above the hold: capped at it
      { cost: -1, charge: '0.05' }, // unusable: the list price
      { cost: 'free', charge: '0.05' },
      { cost: 5000, charge: '0.05' },
    ]) {
      it(`usage.cost ${JSON.stringify(cost)} → ${charge} charged`, async () => {
        sim.cost = cost;
        const { result, charge: charged_ } = await charged(t, account, () =>
          t.client(account.key).images.generate({ model: 'compat-cost', prompt: 'p' }),
        );
        assert.equal(sim.requests[0].body.model, 'cost-model');
        assert.equal(charged_, parseUsd(charge));
        assert.equal((result.usage as any).cost.total_cost, Number(charge));
      });
    }
  });

  it('without its base URL the model is not offered (isConfigured is false)', async () => {
    const other = await startTestServer({ env: { DEEPSHI_BANANA_PRO_API_KEY: 'sk-banana' }, catalog: catalogJson() });
    try {
      const buyer = await other.createAccount('1');
      const models = await other.client(buyer.key).models.list();
      assert.ok(!models.data.some((model) => model.id === 'deepshi-banana-pro'));
      const error = await other
        .client(buyer.key)
        .images.generate({ model: 'deepshi-banana-pro', prompt: 'p' })
        .catch((caught) => caught);
      assert.equal(error.status, 400);
      assert.equal(error.code, 'model_not_found');
    } finally {
      await other.close();
    }
  });

  describe('upstream failures: the right error, and the balance unchanged', () => {
    it('500 (retried once on the only route) → 503', async () => {
      sim.setFault({ kind: 'status500' });
      await failsUncharged(() => generate({}), { status: 503, code: 'upstream_error' });
      assert.equal(sim.requests.length, 2);
    });

    it('429 with Retry-After → 429 with Retry-After', async () => {
      sim.setFault({ kind: 'rate429', retryAfter: '1' });
      const error = await generate({}).catch((caught) => caught);
      assert.equal(error.status, 429);
      assert.equal(error.headers.get('retry-after'), '1');
      assert.equal(sim.requests.length, 2);
      assert.equal((await t.admin('GET', `/admin/v1/accounts/${account.accountId}`)).held, '0');
    });

    const accepted: Array<{ name: string; fault: Fault; message: RegExp }> = [
      { name: 'no answer in time', fault: { kind: 'hang' }, message: /did not answer in time/ },
      { name: 'a connection reset', fault: { kind: 'reset' }, message: /connection to the upstream image server failed/ },
      { name: 'malformed JSON', fault: { kind: 'malformed' }, message: /not a valid images response/ },
      { name: 'an oversized body', fault: { kind: 'oversized', bytes: MAX_RESPONSE_BYTES + 1_000_000 }, message: /larger than/ },
      { name: 'a 200 without images', fault: { kind: 'empty' }, message: /without any image/ },
    ];
    for (const { name, fault, message } of accepted) {
      it(`${name} → 502 upstream_error, not retried`, async () => {
        sim.setFault(fault);
        await failsUncharged(() => generate({}), { status: 502, code: 'upstream_error', message });
        assert.equal(sim.requests.length, 1);
      });
    }

    it('401 from the server → 502 misconfigured', async () => {
      sim.setFault({ kind: 'unauthorized' });
      await failsUncharged(() => generate({}), { status: 502, message: /misconfigured/ });
    });

    it("a content-policy refusal → 400 content_policy_violation with the server's reason", async () => {
      await failsUncharged(() => generate({ prompt: 'something forbidden' }), {
        status: 400,
        code: 'content_policy_violation',
        message: /content policy: Your prompt was flagged/,
      });
    });

    it('a parameter the server rejects → 400 naming it', async () => {
      await failsUncharged(() => generate(withExtras({}, { steps: 99 })), {
        status: 400,
        code: 'invalid_value',
        param: 'steps',
        message: /steps must be/,
      });
    });
  });

  it('edits: multipart to /v1/images/edits with one image[] part per reference', async () => {
    const first = await renderSketch({ prompt: 'one', seed: 1, width: 64, height: 64, format: 'png' });
    const second = await renderSketch({ prompt: 'two', seed: 2, width: 40, height: 40, format: 'webp' });
    const { result, charge } = await charged(t, account, async () =>
      t.client(account.key).images.edit(
        withExtras(
          {
            model: 'deepshi-image-1',
            prompt: 'make it night',
            image: [await toFile(first, 'one.png', { type: 'image/png' }), await toFile(second, 'two.webp', { type: 'image/webp' })],
          },
          { width: 512, height: 512, seed: 9 },
        ),
      ),
    );
    const [upstream] = sim.requests;
    assert.equal(upstream.path, '/v1/images/edits');
    assert.equal(upstream.headers.authorization, 'Bearer sk-image-1');
    assert.match(String(upstream.headers['content-type']), /^multipart\/form-data; boundary=/);
    assert.deepEqual(upstream.body.fields, {
      width: '512',
      height: '512',
      size: '512x512',
      seed: '9',
      model: 'deepshi-image-1',
      prompt: 'make it night',
      n: '1',
      response_format: 'b64_json',
    });
    assert.deepEqual(
      upstream.body.files.map((file: any) => [file.field, file.type]),
      [
        ['image[]', 'image/png'],
        ['image[]', 'image/webp'],
      ],
    );
    assert.ok(upstream.body.files[0].bytes.equals(first) && upstream.body.files[1].bytes.equals(second));
    assert.equal(result.data![0].b64_json, sim.sentImages[0]);
    assert.equal(result.size, '512x512');
    assert.equal(charge, parseUsd('0.01'));
  });
});
