import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { toFile } from 'openai';
import { parse as parseYaml } from 'yaml';
import { probeBase64 } from '../../src/images/probe.ts';
import { costNanos } from '../../src/providers/xai/xai-api.ts';
import { XaiImageAdapter } from '../../src/providers/xai/xai-image-adapter.ts';
import type { NormalizedImageRequest } from '../../src/providers/types.ts';
import { billed, expectBalance, expectError } from '../helpers/assertions.ts';
import { startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';
import { solidImage } from '../simulators/gemini-simulator.ts';
import { XAI_SIZES, startXaiSimulator, type XaiOutcome, type XaiSimulator } from '../simulators/xai-simulator.ts';

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');
const ROUTE_OPTIONS = { timeouts: { connect_ms: 1_000, first_byte_ms: 1_000, total_ms: 4_000 }, max_response_bytes: 2_000_000 };

const shipped = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
const catalogModel = (id: string) => shipped.models.find((model: { id: string }) => model.id === id);

/**
 * catalog/models.yaml's list prices in nanos, written out: grok-imagine $0.02 per image; grok-imagine-quality $0.05 at
 * 1K, $0.07 at 2K; both $0.01 per reference image, once per request. No prompt price. xAI's `usage.cost_in_usd_ticks`
 * (1 tick = 1e-10 USD, rounded up to the nano) is what the request records as the upstream cost.
 */
const GROK_IMAGE = 20_000_000n;
const QUALITY_IMAGE: Record<string, bigint> = { '1K': 50_000_000n, '2K': 70_000_000n };
const REFERENCE_IMAGE = 10_000_000n;

function xaiCatalog(): string {
  const catalog = structuredClone(shipped);
  for (const model of catalog.models) if (model.routes[0].provider === 'xai') model.routes[0].options = ROUTE_OPTIONS;
  return JSON.stringify(catalog);
}

describe('xAI adapter (grok-imagine, grok-imagine-quality) against the xAI simulator', () => {
  let sim: XaiSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    sim = await startXaiSimulator();
    t = await startTestServer({ env: { XAI_API_KEY: 'sk-sim', XAI_BASE_URL: sim.url }, catalog: xaiCatalog() });
    account = await t.createAccount('100');
  });
  after(async () => {
    await t.close();
    await sim.close();
  });
  beforeEach(() => sim.reset());

  const balance = () => t.balance(account.accountId);
  const generate = (params: Record<string, unknown>, model = 'grok-imagine') =>
    t.client(account.key).images.generate(withExtras({ model, prompt: 'a cat in a tree' }, params)) as Promise<any>;

  it('grok-imagine: the exact request, base64 passed through, revised_prompt; the list price charged, xAI’s ticks recorded to the nano', async () => {
    sim.queue({ kind: 'images', ticks: 150_000_005 });
    const { result, charge, record } = await billed(t, account, () => generate({}));

    assert.equal(sim.requests.length, 1);
    const [call] = sim.requests;
    assert.equal(call.method, 'POST');
    assert.equal(call.path, '/v1/images/generations');
    assert.equal(call.headers.authorization, 'Bearer sk-sim');
    assert.equal(call.headers['content-type'], 'application/json');
    assert.deepEqual(call.body, {
      model: 'grok-imagine-image',
      prompt: 'a cat in a tree',
      n: 1,
      response_format: 'b64_json',
      aspect_ratio: '1:1',
    });

    assert.equal(result.size, '1024x1024');
    assert.equal(result.data[0].b64_json, call.answer.data[0].b64_json, 'base64 passed through untouched');
    assert.equal(result.data[0].revised_prompt, 'A vivid, detailed rendering of: a cat in a tree');
    assert.equal(charge, GROK_IMAGE);
    assert.equal(result.usage.cost.total_cost, 0.02);
    // 150,000,005 ticks × 1e-10 = $0.0150000005, rounded up to the nano: xAI's bill, below the list price.
    assert.equal(record.upstreamCost, 15_000_001n);
    assert.equal(result.warnings, undefined);
  });

  it('grok-imagine: every aspect ratio is sent as is (no resolution), and the image has the catalog size', async () => {
    const model = catalogModel('grok-imagine');
    for (const ratio of model.params.aspect_ratio.enum) {
      sim.reset();
      const { result, charge, record } = await billed(t, account, () => generate({ aspect_ratio: ratio }));
      assert.deepEqual(sim.requests[0].body, {
        model: 'grok-imagine-image',
        prompt: 'a cat in a tree',
        n: 1,
        response_format: 'b64_json',
        aspect_ratio: ratio,
      });
      assert.equal(result.size, model.sizing.table['*'][ratio]);
      assert.equal(result.size, XAI_SIZES['1k'][ratio]);
      const probed = probeBase64(result.data[0].b64_json)!;
      assert.equal(`${probed.width}x${probed.height}`, result.size);
      assert.equal(charge, GROK_IMAGE, ratio);
      assert.equal(record.upstreamCost, 20_000_000n, `${ratio}: the simulator's 200,000,000 ticks`);
    }
  });

  it('grok-imagine-quality: resolution goes lower-cased, the 2K tier is sized and charged its list price; the ticks recorded', async () => {
    const model = catalogModel('grok-imagine-quality');
    for (const [tier, ratio, ticks, upstreamNanos] of [
      ['1K', '3:2', 500_000_000, 50_000_000n],
      ['2K', '9:19.5', 612_345_678, 61_234_568n],
      ['2K', '16:9', 700_000_000, 70_000_000n],
    ] as const) {
      sim.reset();
      sim.queue({ kind: 'images', ticks });
      const { result, charge, record } = await billed(t, account, () =>
        generate({ resolution: tier, aspect_ratio: ratio }, 'grok-imagine-quality'),
      );
      assert.deepEqual(sim.requests[0].body, {
        model: 'grok-imagine-image-quality',
        prompt: 'a cat in a tree',
        n: 1,
        response_format: 'b64_json',
        aspect_ratio: ratio,
        resolution: tier.toLowerCase(),
      });
      assert.equal(result.size, model.sizing.table[tier][ratio]);
      assert.equal(charge, QUALITY_IMAGE[tier], `${tier} ${ratio}`);
      assert.equal(record.upstreamCost, upstreamNanos, `${tier} ${ratio}`);
    }
  });

  it('size and style never reach xAI (it rejects them); URL and owned extras are dropped with warnings', async () => {
    const result = await generate({
      size: '1024x1024',
      style: 'vivid',
      callback_url: 'https://example.com/hook',
      n: 1,
      response_format: 'url',
    });
    // response_format is ours (the caller asked for url, which Deepshi serves as a data: URI); xAI is always asked for base64.
    assert.deepEqual(sim.requests[0].body, {
      model: 'grok-imagine-image',
      prompt: 'a cat in a tree',
      n: 1,
      response_format: 'b64_json',
      aspect_ratio: '1:1',
    });
    assert.match(result.data[0].url, /^data:image\/jpeg;base64,/);
    const params = result.warnings.map((warning: { param: string }) => warning.param).sort();
    assert.deepEqual(params, ['callback_url', 'size', 'style']);
  });

  it('an argument xAI does not take → its 400 names our param; no charge', async () => {
    const start = await balance();
    const error = await expectError(generate({ frobnicate: 1 }), 400, 'invalid_value', 'frobnicate');
    assert.match(error.message, /Argument not supported: frobnicate/);
    sim.reset();
    sim.queue({
      kind: 'error',
      status: 400,
      body: { error: { message: 'Invalid aspect ratio', type: 'invalid_request_error', param: 'aspect_ratio', code: 'invalid_argument' } },
    });
    await expectError(generate({}), 400, 'invalid_value', 'aspect_ratio');
    await expectBalance(t, account, start);
  });

  it('n: 4 → calls of 3 and 1 (maxImagesPerCall 3), four images, charged four list prices; both calls’ ticks summed as the upstream cost', async () => {
    sim.queue({ kind: 'images', ticks: 610_000_000 }, { kind: 'images', ticks: 210_000_000 });
    const { result, charge, record } = await billed(t, account, () => generate({ n: 4 }));
    assert.deepEqual(sim.requests.map((call) => call.body.n).sort(), [1, 3]);
    assert.equal(result.data.length, 4);
    assert.equal(new Set(result.data.map((item: any) => item.b64_json)).size, 4);
    assert.equal(charge, 4n * GROK_IMAGE);
    assert.equal(record.upstreamCost, 82_000_000n); // 610,000,000 + 210,000,000 ticks
  });

  it('moderation (HTTP 200, respect_moderation false) → 400 content_policy_violation; the placeholder is never returned; no charge', async () => {
    const start = await balance();
    sim.queue({ kind: 'moderated' });
    const error = await expectError(generate({}), 400, 'content_policy_violation');
    assert.match(error.message, /moderation withheld the generated image/);
    sim.queue({ kind: 'input_moderated' });
    await expectError(generate({}), 400, 'content_policy_violation');
    assert.equal(sim.requests.length, 2, 'refusals are not retried');
    await expectBalance(t, account, start);
  });

  it('one of three moderated → two images, a warning, two list prices charged, and xAI’s cost prorated to the two delivered', async () => {
    sim.queue({ kind: 'moderated', indexes: [1] });
    const { result, charge, record } = await billed(t, account, () => generate({ n: 3 }));
    assert.equal(result.data.length, 2);
    for (const item of result.data) assert.equal(probeBase64(item.b64_json)!.width, 1024, 'no 64 px placeholder');
    assert.ok(
      result.warnings.some((warning: { message: string }) => /1 of 3 images were withheld by xAI's moderation/.test(warning.message)),
    );
    assert.equal(charge, 2n * GROK_IMAGE);
    assert.equal(record.upstreamCost, 40_000_000n); // 600,000,000 ticks × 2/3
  });

  it('more images than asked → the extra are discarded with a warning; one list price charged, the upstream cost prorated', async () => {
    sim.queue({ kind: 'images', extra: 2, ticks: 660_000_000 });
    const { result, charge, record } = await billed(t, account, () => generate({}));
    assert.equal(result.data.length, 1);
    assert.ok(result.warnings.some((warning: { message: string }) => /returned 3 images for 1 asked/.test(warning.message)));
    assert.equal(charge, GROK_IMAGE);
    assert.equal(record.upstreamCost, 22_000_000n); // 660,000,000 ticks × 1/3
  });

  it('unusable ticks (negative, fractional, huge, text) are ignored: the list price is charged, no upstream cost recorded', async () => {
    for (const ticks of [-5, 2.5, 1e30, '200000000', null]) {
      sim.queue({ kind: 'images', ticks });
      const { charge, record } = await billed(t, account, () => generate({}));
      assert.equal(charge, GROK_IMAGE, String(ticks));
      assert.equal(record.upstreamCost, null, String(ticks));
    }
    assert.equal(costNanos(200_000_000, 1, 1), 20_000_000n);
    assert.equal(costNanos(5, 1, 1), 1n);
    assert.equal(costNanos(200_000_000, 2, 1), undefined);
  });

  it('result links: downloaded from the configured origin without credentials; data: URIs unwrapped', async () => {
    sim.queue({ kind: 'images', as: 'url' });
    const linked = await generate({});
    assert.equal(sim.downloads.length, 1);
    assert.equal(sim.downloads[0].authorization, undefined);
    assert.equal(linked.data[0].b64_json, await solidImage(1024, 1024, 'image/jpeg', 0));
    sim.queue({ kind: 'images', as: 'data_uri' });
    const inline = await generate({});
    assert.equal(inline.data[0].b64_json, sim.requests[1].answer.data[0].b64_json.replace('data:image/jpeg;base64,', ''));
    assert.equal(inline.data[0].b64_json, await solidImage(1024, 1024, 'image/jpeg', 10));
  });

  it('result links to another local port or the metadata address → refused before connecting, 502, no charge', async () => {
    const start = await balance();
    for (const url of [
      `${sim.other.url}/xai-tmp-imgen/a.jpeg`,
      'http://169.254.169.254/latest/meta-data/iam/',
      `https://127.0.0.1:${new URL(sim.other.url).port}/a.jpeg`,
      'https://imgen.x.ai.evil.example/a.jpeg',
    ]) {
      sim.queue({ kind: 'result_url', url });
      const error = await expectError(generate({}), 502, 'upstream_error');
      assert.match(error.message, /not downloaded/, url);
    }
    assert.equal(sim.other.hits, 0);
    assert.equal(sim.requests.length, 4, 'an accepted generation is not repeated');
    await expectBalance(t, account, start);
  });

  it('429 with Retry-After → retried once, then our 429 with Retry-After; 500 in both body shapes → 503; no charge', async () => {
    const start = await balance();
    sim.queue({ kind: 'rate_limited', retryAfter: '1' }, { kind: 'rate_limited', retryAfter: '1' });
    const limited = await expectError(generate({}), 429, 'rate_limit_exceeded');
    assert.equal(limited.headers?.get('retry-after'), '1');
    assert.equal(sim.requests.length, 2);

    sim.reset();
    sim.queue(
      { kind: 'error', status: 500, body: { code: 'Internal error', error: 'The service is temporarily unavailable.' } },
      { kind: 'error', status: 503, body: { error: { message: 'overloaded', type: 'server_error', param: null, code: null } } },
    );
    await expectError(generate({}), 503, 'upstream_error');
    assert.equal(sim.requests.length, 2);
    await expectBalance(t, account, start);
  });

  it('timeout, connection reset, malformed JSON, oversized body → 502, one call each, no charge', async () => {
    const start = await balance();
    const cases: Array<[XaiOutcome, RegExp]> = [
      [{ kind: 'hang' }, /did not answer in time/],
      [{ kind: 'reset' }, /connection to xAI failed/],
      [{ kind: 'malformed_json' }, /not an image-response JSON object/],
      [{ kind: 'oversized', bytes: 3_000_000 }, /larger than 2000000 bytes/],
    ];
    for (const [outcome, message] of cases) {
      sim.reset();
      sim.queue(outcome);
      const error = await expectError(generate({}), 502, 'upstream_error');
      assert.match(error.message, message);
      assert.equal(sim.requests.length, 1, outcome.kind);
    }
    await expectBalance(t, account, start);
  });

  it('a wrong key (xAI: 400 "Incorrect API key") → 502 misconfigured, no upstream text, no charge', async () => {
    const wrong = await startTestServer({ env: { XAI_API_KEY: 'sk-wrong', XAI_BASE_URL: sim.url }, catalog: xaiCatalog() });
    try {
      const other = await wrong.createAccount('1');
      const error = await expectError(
        wrong.client(other.key).images.generate({ model: 'grok-imagine', prompt: 'x' }),
        502,
        'upstream_error',
      );
      assert.match(error.message, /misconfigured/);
      assert.doesNotMatch(error.message, /Incorrect API key/);
      assert.equal(sim.requests[0].headers.authorization, 'Bearer sk-wrong');
      assert.equal(await wrong.balance(other.accountId), '1');
    } finally {
      await wrong.close();
    }
  });

  it('edits over HTTP: two references → /v1/images/edits with `images` as data URIs; their list price charged, xAI’s ticks recorded', async () => {
    const first = Buffer.from(await solidImage(64, 64, 'image/png', 2), 'base64');
    const second = Buffer.from(await solidImage(48, 64, 'image/jpeg', 3), 'base64');
    const image = [await toFile(first, 'a.png', { type: 'image/png' }), await toFile(second, 'b.jpg', { type: 'image/jpeg' })];
    sim.queue({ kind: 'images', ticks: 650_000_000 });
    const { result, charge, record } = await billed(
      t,
      account,
      async () =>
        (await t
          .client(account.key)
          .images.edit(withExtras({ model: 'grok-imagine-quality', prompt: 'put them together', image }, { aspect_ratio: '4:3' }))) as any,
    );
    const [call] = sim.requests;
    assert.equal(call.path, '/v1/images/edits');
    assert.equal(call.headers.authorization, 'Bearer sk-sim');
    assert.deepEqual(call.body, {
      model: 'grok-imagine-image-quality',
      prompt: 'put them together',
      n: 1,
      response_format: 'b64_json',
      aspect_ratio: '4:3',
      resolution: '1k',
      images: [
        { url: `data:image/png;base64,${first.toString('base64')}`, type: 'image_url' },
        { url: `data:image/jpeg;base64,${second.toString('base64')}`, type: 'image_url' },
      ],
    });
    assert.equal(result.size, '1168x880');
    assert.equal(charge, QUALITY_IMAGE['1K'] + 2n * REFERENCE_IMAGE); // $0.05 + 2 × $0.01
    assert.equal(record.upstreamCost, 65_000_000n); // the 650,000,000 ticks xAI reported
  });

  it('edits (adapter direct): one reference → `image`, never both fields', async () => {
    const png = Buffer.from(await solidImage(32, 32, 'image/png', 1), 'base64');
    const request: NormalizedImageRequest = {
      model: 'grok-imagine',
      prompt: 'make it winter',
      n: 1,
      seed: undefined,
      width: 1024,
      height: 1024,
      params: { aspect_ratio: '1:1' },
      outputFormat: undefined,
      partialImages: 0,
      extra: {},
      inputImages: [{ bytes: png, mediaType: 'image/png', width: 32, height: 32 }],
    };
    const route = { upstreamModel: 'grok-imagine-image', baseUrl: sim.url, credential: 'sk-sim', options: ROUTE_OPTIONS };
    const result = await new XaiImageAdapter().generate(request, route, { signal: AbortSignal.timeout(5_000) });
    assert.deepEqual(sim.requests[0].body, {
      model: 'grok-imagine-image',
      prompt: 'make it winter',
      n: 1,
      response_format: 'b64_json',
      aspect_ratio: '1:1',
      image: { url: `data:image/png;base64,${png.toString('base64')}`, type: 'image_url' },
    });
    assert.equal(result.images.length, 1);
    assert.equal(result.images[0].mediaType, 'image/jpeg');
    assert.deepEqual(result.usage, { costNanos: 20_000_000n });
  });
});
