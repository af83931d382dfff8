import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import { parse as parseYaml } from 'yaml';
import { formatUsd, parseUsd, usdNumber } from '../../src/domain/money.ts';
import { probeBase64 } from '../../src/images/probe.ts';
import { renderSketch } from '../../src/images/sketch.ts';
import { billed, charged, collect, failsWith } from '../helpers/assertions.ts';
import { startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';
import {
  TOKENS_PER_PARTIAL_IMAGE,
  TOKENS_PER_REFERENCE_IMAGE,
  outputTokensFor,
  startOpenAiSimulator,
  type SimulatorHandle,
} from '../simulators/openai-simulator.ts';

/**
 * The openai adapter (gpt-image-1.5, gpt-image-2) end to end: openai SDK → Deepshi → OpenAI simulator. Each test
 * asserts the exact upstream request, the exact answer, that the charge (balance change and `usage.cost`) is the
 * catalog's list price to the nano, and that the request's recorded upstream cost is the reported tokens × the
 * catalog's token rates (what the adapter read from OpenAI's usage). Faults leave the balance untouched.
 */

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');
const MAX_RESPONSE_BYTES = 3_000_000;

/** The shipped catalog with tiny timeouts on the OpenAI routes, plus `gpt-image-loose`: gpt-image-2 behind a laxer size rule. */
function catalogJson(): string {
  const catalog = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
  for (const model of catalog.models) {
    for (const route of model.routes) {
      if (route.provider === 'openai')
        route.options = { timeouts: { connect_ms: 1000, first_byte_ms: 1500, total_ms: 5000 }, max_response_bytes: MAX_RESPONSE_BYTES };
    }
  }
  const loose = structuredClone(catalog.models.find((model: { id: string }) => model.id === 'gpt-image-2'));
  loose.id = 'gpt-image-loose';
  loose.sizing.custom_size.multiple_of = 8;
  catalog.models.push(loose);
  return JSON.stringify(catalog);
}

/**
 * catalog/models.yaml's list prices, written out: per image by quality/size; a custom WxH size (gpt-image-2) at its
 * quality's price per started megapixel (1,048,576 px); the prompt per million UTF-8 bytes; each reference image.
 */
const LIST = {
  'gpt-image-1.5': {
    perImage: {
      'low/1024x1024': '0.009',
      'low/1536x1024': '0.013',
      'low/1024x1536': '0.013',
      'low/auto': '0.013',
      'medium/1024x1024': '0.034',
      'medium/1536x1024': '0.05',
      'medium/1024x1536': '0.05',
      'medium/auto': '0.05',
      'high/1024x1024': '0.133',
      'high/1536x1024': '0.2',
      'high/1024x1536': '0.2',
      'high/auto': '0.2',
    } as Record<string, string>,
    customSizeMegapixel: {} as Record<string, string>,
    promptPerMillionBytes: '5',
    referenceImage: '0.05',
  },
  'gpt-image-2': {
    perImage: {
      'low/1024x1024': '0.006',
      'low/1536x1024': '0.005',
      'low/1024x1536': '0.005',
      'low/auto': '0.006',
      'medium/1024x1024': '0.053',
      'medium/1536x1024': '0.041',
      'medium/1024x1536': '0.041',
      'medium/auto': '0.053',
      'high/1024x1024': '0.211',
      'high/1536x1024': '0.165',
      'high/1024x1536': '0.165',
      'high/auto': '0.211',
    } as Record<string, string>,
    customSizeMegapixel: { low: '0.006', medium: '0.053', high: '0.211' } as Record<string, string>,
    promptPerMillionBytes: '5',
    referenceImage: '0.05',
  },
} as const;

/**
 * The list price of a request, from LIST: the per-image price × delivered images, plus the prompt's bytes × its rate
 * (rounded up to the nano, once per request) and the reference images, both charged once.
 */
function listPrice(
  model: keyof typeof LIST,
  request: { quality: string; size: string; prompt: string; images?: number; references?: number },
): bigint {
  const list = LIST[model];
  const table = list.perImage[`${request.quality}/${request.size}`];
  let perImage: bigint;
  if (table !== undefined) perImage = parseUsd(table);
  else {
    const [width, height] = request.size.split('x').map(Number);
    perImage = parseUsd(list.customSizeMegapixel[request.quality]) * BigInt(Math.ceil((width * height) / 1_048_576));
  }
  const promptBytes = BigInt(Buffer.byteLength(request.prompt, 'utf8'));
  const prompt = (promptBytes * parseUsd(list.promptPerMillionBytes) + 999_999n) / 1_000_000n;
  return perImage * BigInt(request.images ?? 1) + prompt + parseUsd(list.referenceImage) * BigInt(request.references ?? 0);
}

/** USD per 1M tokens → nanos per token (every rate here is a whole number of nanos per token). */
const RATES = {
  'gpt-image-1.5': { textIn: 5_000n, imageIn: 8_000n, imageOut: 32_000n, textOut: 10_000n },
  'gpt-image-2': { textIn: 5_000n, imageIn: 8_000n, imageOut: 30_000n, textOut: 10_000n },
} as const;

/** The upstream's bill for the reported usages at the catalog's token rates: Σ tokens × rate, over the upstream calls. */
function tokenCost(model: keyof typeof RATES, usages: any[]): bigint {
  const rates = RATES[model];
  let total = 0n;
  for (const usage of usages) {
    const imageIn = BigInt(usage.input_tokens_details?.image_tokens ?? 0);
    const imageOut = BigInt(usage.output_tokens_details?.image_tokens ?? usage.output_tokens);
    total +=
      (BigInt(usage.input_tokens) - imageIn) * rates.textIn +
      imageIn * rates.imageIn +
      imageOut * rates.imageOut +
      (BigInt(usage.output_tokens) - imageOut) * rates.textOut;
  }
  return total;
}

describe('openai adapter through POST /v1/images/generations', () => {
  let sim: SimulatorHandle;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    sim = await startOpenAiSimulator({ apiKey: 'sk-sim' });
    t = await startTestServer({
      env: { OPENAI_API_KEY: 'sk-sim', OPENAI_BASE_URL: sim.url, DEEPSHI_KEEPALIVE_MS: '50' },
      catalog: catalogJson(),
    });
    account = await t.createAccount('100');
  });
  beforeEach(() => sim.reset());
  after(async () => {
    await t.close();
    await sim.close();
  });

  const CASES: Array<{ name: string; params: Record<string, unknown>; body: Record<string, unknown>; size: string; format?: string }> = [
    {
      name: 'gpt-image-1.5 defaults',
      params: { model: 'gpt-image-1.5', prompt: 'a lighthouse at dusk' },
      body: {
        model: 'gpt-image-1.5',
        prompt: 'a lighthouse at dusk',
        n: 1,
        size: 'auto',
        quality: 'medium',
        background: 'auto',
        moderation: 'auto',
      },
      size: '1024x1024',
    },
    {
      name: 'gpt-image-1.5 size 1536x1024 (the SDK size field), quality high',
      params: { model: 'gpt-image-1.5', prompt: 'a wide harbour', size: '1536x1024', quality: 'high' },
      body: {
        model: 'gpt-image-1.5',
        prompt: 'a wide harbour',
        n: 1,
        size: '1536x1024',
        quality: 'high',
        background: 'auto',
        moderation: 'auto',
      },
      size: '1536x1024',
    },
    {
      name: 'gpt-image-1.5 image_size 1024x1536, quality low, n 2',
      params: { model: 'gpt-image-1.5', prompt: 'two towers', n: 2, image_size: '1024x1536', quality: 'low' },
      body: {
        model: 'gpt-image-1.5',
        prompt: 'two towers',
        n: 2,
        size: '1024x1536',
        quality: 'low',
        background: 'auto',
        moderation: 'auto',
      },
      size: '1024x1536',
    },
    {
      name: 'gpt-image-1.5 transparent webp: output_format is asked upstream, nothing is transcoded',
      params: {
        model: 'gpt-image-1.5',
        prompt: 'a sticker',
        background: 'transparent',
        output_format: 'webp',
        quality: 'high',
        size: '1024x1024',
      },
      body: {
        model: 'gpt-image-1.5',
        prompt: 'a sticker',
        n: 1,
        size: '1024x1024',
        quality: 'high',
        background: 'transparent',
        moderation: 'auto',
        output_format: 'webp',
      },
      size: '1024x1024',
      format: 'webp',
    },
    {
      name: 'gpt-image-1.5 moderation low, opaque jpeg',
      params: { model: 'gpt-image-1.5', prompt: 'a market', moderation: 'low', background: 'opaque', output_format: 'jpeg' },
      body: {
        model: 'gpt-image-1.5',
        prompt: 'a market',
        n: 1,
        size: 'auto',
        quality: 'medium',
        background: 'opaque',
        moderation: 'low',
        output_format: 'jpeg',
      },
      size: '1024x1024',
      format: 'jpeg',
    },
    {
      name: 'gpt-image-2 defaults',
      params: { model: 'gpt-image-2', prompt: 'a glass city' },
      body: { model: 'gpt-image-2', prompt: 'a glass city', n: 1, size: 'auto', quality: 'medium', background: 'auto', moderation: 'auto' },
      size: '1024x1024',
    },
    {
      name: 'gpt-image-2 custom size 2048x1152, quality high',
      params: { model: 'gpt-image-2', prompt: 'a panorama', size: '2048x1152', quality: 'high' },
      body: {
        model: 'gpt-image-2',
        prompt: 'a panorama',
        n: 1,
        size: '2048x1152',
        quality: 'high',
        background: 'auto',
        moderation: 'auto',
      },
      size: '2048x1152',
    },
    {
      name: 'gpt-image-2 n 4, portrait, low',
      params: {
        model: 'gpt-image-2',
        prompt: 'four seasons',
        n: 4,
        size: '1024x1536',
        quality: 'low',
        background: 'opaque',
        moderation: 'low',
      },
      body: {
        model: 'gpt-image-2',
        prompt: 'four seasons',
        n: 4,
        size: '1024x1536',
        quality: 'low',
        background: 'opaque',
        moderation: 'low',
      },
      size: '1024x1536',
    },
  ];

  for (const testCase of CASES) {
    it(`${testCase.name}: exact upstream request, exact answer, the list price charged, tokens × rates recorded as the upstream cost`, async () => {
      const model = testCase.params.model as keyof typeof RATES;
      const { result, charge, record } = await billed(t, account, () => t.client(account.key).images.generate(testCase.params as never));

      assert.equal(sim.requests.length, 1);
      const [upstream] = sim.requests;
      assert.equal(upstream.method, 'POST');
      assert.equal(upstream.path, '/v1/images/generations');
      assert.equal(upstream.headers.authorization, 'Bearer sk-sim');
      assert.equal(upstream.headers['content-type'], 'application/json');
      assert.deepEqual(upstream.body, testCase.body);

      const n = testCase.body.n as number;
      assert.equal(result.size, testCase.size);
      assert.deepEqual(
        result.data!.map((item) => item.b64_json),
        sim.sentImages,
        'the upstream base64, byte for byte',
      );
      assert.equal(result.data!.length, n);
      for (const item of result.data!) assert.equal(probeBase64(item.b64_json!)!.format, testCase.format ?? 'png');

      const [usage] = sim.sentUsages;
      const quality = testCase.body.quality as string;
      assert.equal(usage.output_tokens, outputTokensFor(model, quality, testCase.size) * n);
      const price = listPrice(model, { quality, size: testCase.body.size as string, prompt: testCase.body.prompt as string, images: n });
      assert.equal(charge, price);
      assert.equal((result.usage as any).cost.total_cost, usdNumber(price));
      assert.equal(record.upstreamCost, tokenCost(model, sim.sentUsages));
      assert.equal(result.usage!.input_tokens ?? (result.usage as any).prompt_tokens, usage.input_tokens);
      assert.equal((result.usage as any).prompt_tokens, usage.input_tokens);
      assert.equal((result.usage as any).completion_tokens, usage.output_tokens);
      assert.equal((result.usage as any).completion_tokens_details.image_tokens, usage.output_tokens_details.image_tokens);
    });
  }

  it("the list price is charged even when the upstream's token cost exceeds it (high 1024x1024: $0.13312 + prompt): the operator carries the difference", async () => {
    const { charge, record } = await billed(t, account, () =>
      t.client(account.key).images.generate({ model: 'gpt-image-1.5', prompt: 'exactly square', size: '1024x1024', quality: 'high' }),
    );
    // $0.133 + 14 prompt bytes × $5/M = $0.13307; OpenAI bills 4,160 image tokens × $32/M + 4 text tokens × $5/M = $0.13314.
    assert.equal(charge, parseUsd('0.13307'));
    assert.equal(charge, listPrice('gpt-image-1.5', { quality: 'high', size: '1024x1024', prompt: 'exactly square' }));
    assert.equal(record.upstreamCost, parseUsd('0.13314'));
    assert.equal(record.upstreamCost, tokenCost('gpt-image-1.5', sim.sentUsages));
    assert.ok(record.upstreamCost! > charge, `upstream ${formatUsd(record.upstreamCost!)} > charged ${formatUsd(charge)}`);
  });

  it('a seed is not sent (the Images API has none) and is reported back as ignored', async () => {
    const result = await t.client(account.key).images.generate(withExtras({ model: 'gpt-image-1.5', prompt: 'p' }, { seed: 7 }));
    assert.ok(!('seed' in sim.requests[0].body));
    assert.ok((result as any).warnings.some((warning: any) => warning.param === 'seed'));
  });

  it('extras are forwarded; URL-carrying extras are dropped with a warning', async () => {
    const result = await t
      .client(account.key)
      .images.generate(
        withExtras(
          { model: 'gpt-image-1.5', prompt: 'p', output_format: 'jpeg' as const },
          { output_compression: 60, webhook_url: 'https://example.com/hook' },
        ),
      );
    assert.deepEqual(sim.requests[0].body, {
      output_compression: 60,
      model: 'gpt-image-1.5',
      prompt: 'p',
      n: 1,
      size: 'auto',
      quality: 'medium',
      background: 'auto',
      moderation: 'auto',
      output_format: 'jpeg',
    });
    assert.ok((result as any).warnings.some((warning: any) => warning.param === 'webhook_url'));
  });

  it('response_format url is answered as a data URL by Deepshi; response_format is never sent upstream', async () => {
    const result = await t.client(account.key).images.generate({ model: 'gpt-image-2', prompt: 'p', response_format: 'url' });
    assert.ok(!('response_format' in sim.requests[0].body));
    assert.equal(result.data![0].url, `data:image/png;base64,${sim.sentImages[0]}`);
  });

  it("OPENAI_BASE_URL may end in /v1 (the SDKs' convention): the same endpoint is called", async () => {
    const other = await startTestServer({ env: { OPENAI_API_KEY: 'sk-sim', OPENAI_BASE_URL: `${sim.url}/v1/` }, catalog: catalogJson() });
    try {
      const buyer = await other.createAccount('1');
      await other.client(buyer.key).images.generate({ model: 'gpt-image-1.5', prompt: 'p', quality: 'low' });
      assert.equal(sim.requests[0].path, '/v1/images/generations');
    } finally {
      await other.close();
    }
  });

  describe('streaming with partial_images', () => {
    it('partial_images 2: the upstream streams (n 1, stream, partial_images) and the SDK iterates partial, partial, completed', async () => {
      const {
        result: events,
        charge,
        record,
      } = await billed(t, account, async () => {
        const stream = await t
          .client(account.key)
          .images.generate({ model: 'gpt-image-1.5', prompt: 'a comet', stream: true, partial_images: 2, quality: 'low' });
        return collect(stream);
      });
      assert.deepEqual(sim.requests[0].body, {
        model: 'gpt-image-1.5',
        prompt: 'a comet',
        n: 1,
        size: 'auto',
        quality: 'low',
        background: 'auto',
        moderation: 'auto',
        stream: true,
        partial_images: 2,
      });
      assert.equal(sim.requests[0].headers.accept, 'text/event-stream');
      assert.deepEqual(
        events.map((event) => event.type),
        ['image_generation.partial_image', 'image_generation.partial_image', 'image_generation.completed'],
      );
      assert.deepEqual(
        events.slice(0, 2).map((event) => event.partial_image_index),
        [0, 1],
      );
      assert.equal(events[2].b64_json, sim.sentImages[0]);
      assert.equal(sim.sentUsages[0].output_tokens, 272 + 2 * TOKENS_PER_PARTIAL_IMAGE);
      assert.equal(
        charge,
        listPrice('gpt-image-1.5', { quality: 'low', size: 'auto', prompt: 'a comet' }),
        'partial renders cost nothing extra',
      );
      assert.equal(record.upstreamCost, tokenCost('gpt-image-1.5', sim.sentUsages), 'the partial-image tokens are in the upstream cost');
    });

    it("n 2 streams two single-image upstream calls; both images arrive, charged two images' list price, their usage summed as the upstream cost", async () => {
      sim.sendDone = true; // a `data: [DONE]` sentinel at the end of each upstream stream is tolerated
      const {
        result: events,
        charge,
        record,
      } = await billed(t, account, async () => {
        const stream = await t
          .client(account.key)
          .images.generate({ model: 'gpt-image-2', prompt: 'twins', n: 2, stream: true, partial_images: 1 });
        return collect(stream);
      });
      assert.equal(sim.requests.length, 2);
      for (const upstream of sim.requests) assert.equal(upstream.body.n, 1);
      assert.equal(events.filter((event) => event.type === 'image_generation.partial_image').length, 2);
      const finals = events.filter((event) => event.type === 'image_generation.completed').map((event) => event.b64_json);
      assert.deepEqual([...finals].sort(), [...sim.sentImages].sort());
      assert.equal(charge, listPrice('gpt-image-2', { quality: 'medium', size: 'auto', prompt: 'twins', images: 2 }), 'the prompt once');
      assert.equal(record.upstreamCost, tokenCost('gpt-image-2', sim.sentUsages));
      // The completed events' costs are the charge, split across the images: they sum to it exactly.
      const streamed = events
        .filter((event) => event.type === 'image_generation.completed')
        .map((event) => Math.round(event.usage.cost.total_cost * 1e9));
      assert.equal(BigInt(streamed.reduce((sum, nanos) => sum + nanos, 0)), charge);
    });

    for (const fault of [{ kind: 'stream-error' as const }, { kind: 'stream-cut' as const }]) {
      it(`a stream that ${fault.kind === 'stream-error' ? 'sends an error event' : 'ends before completing'} is an error event; nothing is charged`, async () => {
        sim.setFault(fault);
        // A plain SDK client: the validating one tees the body, and on Node 20 a teed fetch body whose request the
        // SDK aborts (it does on an error event) never ends when a large partial image came first.
        const client = new OpenAI({ apiKey: account.key, baseURL: `${t.url}/v1`, maxRetries: 0 });
        const types: string[] = [];
        const { result: error, charge } = await charged(t, account, async () => {
          const stream = await client.images.generate({ model: 'gpt-image-1.5', prompt: 'p', stream: true, partial_images: 1 });
          return (async () => {
            for await (const event of stream) types.push(event.type);
          })().then(
            () => assert.fail('expected an error'),
            (caught) => caught,
          );
        });
        assert.deepEqual(types, ['image_generation.partial_image']);
        assert.ok(error instanceof OpenAI.APIError);
        assert.equal((error as any).error?.code ?? (error as any).code, 'upstream_error');
        assert.equal(charge, 0n);
        assert.equal(sim.requests.length, 1, 'an accepted stream is never repeated');
      });
    }
  });

  describe('upstream failures: the right error, and the balance unchanged', () => {
    const generate =
      (params: Record<string, unknown> = {}) =>
      () =>
        t.client(account.key).images.generate({ model: 'gpt-image-1.5', prompt: 'p', ...params } as never);

    it('500 (twice: retried once on the only route) → 503, nothing charged', async () => {
      sim.setFault({ kind: 'status500' });
      const { charge } = await charged(t, account, () => failsWith(generate(), { status: 503, code: 'upstream_error' }));
      assert.equal(charge, 0n);
      assert.equal(sim.requests.length, 2);
    });

    it('429 with Retry-After → 429 with Retry-After, nothing charged', async () => {
      sim.setFault({ kind: 'rate429', retryAfter: '1' });
      const { result: error, charge } = await charged(t, account, () =>
        failsWith(generate(), { status: 429, code: 'rate_limit_exceeded' }),
      );
      assert.equal((error as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after'), '1');
      assert.equal(charge, 0n);
      assert.equal(sim.requests.length, 2);
    });

    it('a 429 once, then success: the retry is served and charged once', async () => {
      sim.setFault({ kind: 'rate429', retryAfter: '1' }, 1);
      const { charge, record } = await billed(t, account, generate({ quality: 'low' }));
      assert.equal(sim.requests.length, 2);
      assert.equal(charge, listPrice('gpt-image-1.5', { quality: 'low', size: 'auto', prompt: 'p' }));
      assert.equal(sim.sentUsages.length, 1);
      assert.equal(record.upstreamCost, tokenCost('gpt-image-1.5', sim.sentUsages));
    });

    const accepted: Array<{ name: string; fault: Parameters<SimulatorHandle['setFault']>[0]; message: RegExp }> = [
      { name: 'no answer before the first-byte timeout', fault: { kind: 'hang' }, message: /did not answer in time/ },
      { name: 'a connection reset', fault: { kind: 'reset' }, message: /connection to OpenAI failed/ },
      { name: 'malformed JSON', fault: { kind: 'malformed' }, message: /not a valid images response/ },
      { name: 'an oversized body', fault: { kind: 'oversized', bytes: MAX_RESPONSE_BYTES + 1_000_000 }, message: /larger than/ },
      { name: 'a 200 without images', fault: { kind: 'empty' }, message: /without any image/ },
    ];
    for (const { name, fault, message } of accepted) {
      it(`${name} → 502 upstream_error, not retried (the upstream may have accepted it), nothing charged`, async () => {
        sim.setFault(fault);
        const { charge } = await charged(t, account, () => failsWith(generate(), { status: 502, code: 'upstream_error', message }));
        assert.equal(charge, 0n);
        assert.equal(sim.requests.length, 1);
      });
    }

    it('a rejected API key (401) → 502 misconfigured, the key is not echoed, nothing charged', async () => {
      sim.setFault({ kind: 'unauthorized' });
      const { result: error, charge } = await charged(t, account, () => failsWith(generate(), { status: 502, message: /misconfigured/ }));
      assert.doesNotMatch((error as Error).message, /sk-/);
      assert.equal(charge, 0n);
    });

    const refusals = [
      { prompt: 'a forbidden scene', message: /The prompt was rejected by OpenAI's safety system \(violence\)/ },
      { prompt: 'forbidden-output scene', message: /The generated image was rejected by OpenAI's safety system/ },
      { prompt: 'legacy-forbidden scene', message: /rejected by OpenAI's safety system/ },
    ];
    for (const { prompt, message } of refusals) {
      it(`safety refusal (${prompt}) → 400 content_policy_violation saying what was rejected, nothing charged`, async () => {
        const { charge } = await charged(t, account, () =>
          failsWith(generate({ prompt }), { status: 400, code: 'content_policy_violation', message }),
        );
        assert.equal(charge, 0n);
        assert.equal(sim.requests.length, 1);
      });
    }

    it('an upstream size rejection names our param (size → image_size), nothing charged', async () => {
      const { charge } = await charged(t, account, () =>
        failsWith(generate({ model: 'gpt-image-loose', size: '1000x1000' }), {
          status: 400,
          code: 'invalid_value',
          param: 'image_size',
          message: /1000x1000/,
        }),
      );
      assert.equal(charge, 0n);
    });

    it('transparent jpeg is rejected upstream with param background', async () => {
      await failsWith(generate({ background: 'transparent', output_format: 'jpeg' }), { status: 400, param: 'background' });
    });

    it('an unknown extra field is refused upstream (unknown_parameter) and reported with its name', async () => {
      await failsWith(
        () => t.client(account.key).images.generate(withExtras({ model: 'gpt-image-1.5', prompt: 'p' }, { style_preset: 'noir' })),
        { status: 400, param: 'style_preset', message: /Unknown parameter/ },
      );
    });

    it('fewer images than asked: the delivered one is charged at list price plus the prompt, with a warning', async () => {
      sim.setFault({ kind: 'fewer' });
      const { result, charge, record } = await billed(t, account, generate({ n: 2, quality: 'low', size: '1024x1024' }));
      assert.equal(result.data!.length, 1);
      assert.ok((result as any).warnings.some((warning: any) => /Only 1 of 2/.test(warning.message)));
      assert.equal(charge, parseUsd('0.009005')); // one image at $0.009 + 1 prompt byte × $5/M
      assert.equal(charge, listPrice('gpt-image-1.5', { quality: 'low', size: '1024x1024', prompt: 'p', images: 1 }));
      // The shortfall is a failure after acceptance; the one call's usage is its whole bill, recorded as the upstream's cost.
      assert.ok(sim.sentUsages.length === 1 && sim.sentUsages[0].output_tokens > 0, 'the simulator billed the call');
      assert.equal(record.upstreamCost, tokenCost('gpt-image-1.5', sim.sentUsages));
    });

    for (const usage of [
      { input_tokens: -5, output_tokens: 272 },
      { input_tokens: 10, output_tokens: 'lots' },
      { input_tokens: 10, output_tokens: 5e12 },
      { input_tokens: 10, output_tokens: 100, output_tokens_details: { image_tokens: 900 } },
    ]) {
      it(`unusable usage ${JSON.stringify(usage)} is ignored: the list price is charged, no upstream cost recorded`, async () => {
        sim.setFault({ kind: 'usage', usage });
        const { result, charge, record } = await billed(t, account, generate({ quality: 'low', size: '1024x1024' }));
        assert.equal(charge, parseUsd('0.009005'));
        assert.equal(record.upstreamCost, null);
        // Not reported (usable) by the upstream: every token count is 0, still an integer.
        assert.deepEqual([result.usage!.input_tokens, result.usage!.output_tokens, result.usage!.total_tokens], [0, 0, 0]);
      });
    }
  });

  it('the simulator validates like OpenAI: response_format refused, gpt-image-2 custom-size rules, n 1-10', async () => {
    const post = async (body: Record<string, unknown>) => {
      const response = await fetch(`${sim.url}/v1/images/generations`, {
        method: 'POST',
        headers: { authorization: 'Bearer sk-sim', 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return { status: response.status, error: response.status === 200 ? undefined : (await response.json()).error };
    };
    const refused = await post({ model: 'gpt-image-1.5', prompt: 'p', response_format: 'b64_json' });
    assert.deepEqual([refused.status, refused.error.code, refused.error.param], [400, 'unknown_parameter', 'response_format']);
    assert.equal((await post({ model: 'gpt-image-2', prompt: 'p', size: '3840x2160', quality: 'low' })).status, 200);
    for (const size of ['3840x1024', '1000x1008', '4096x2304', '512x512']) {
      assert.equal((await post({ model: 'gpt-image-2', prompt: 'p', size })).error?.param, 'size', size);
    }
    assert.equal((await post({ model: 'gpt-image-1.5', prompt: 'p', size: '2048x1152' })).error?.param, 'size');
    assert.equal((await post({ model: 'gpt-image-1.5', prompt: 'p', n: 11 })).error?.code, 'integer_above_max_value');
    assert.equal((await post({ model: 'gpt-image-1.5', prompt: 'p', quality: 'hd' })).error?.param, 'quality');
  });

  describe('edits (POST /v1/images/edits upstream, multipart)', () => {
    it("sends image[] parts and the edit fields (no moderation); charges the reference images' list price, records their reported tokens", async () => {
      const first = await renderSketch({ prompt: 'ref one', seed: 1, width: 64, height: 64, format: 'png' });
      const second = await renderSketch({ prompt: 'ref two', seed: 2, width: 48, height: 32, format: 'jpeg' });
      const { result, charge, record } = await billed(t, account, async () =>
        t.client(account.key).images.edit({
          model: 'gpt-image-1.5',
          prompt: 'make it night',
          image: [await toFile(first, 'one.png', { type: 'image/png' }), await toFile(second, 'two.jpg', { type: 'image/jpeg' })],
          size: '1024x1024',
          quality: 'low',
        }),
      );
      const [upstream] = sim.requests;
      assert.equal(upstream.path, '/v1/images/edits');
      assert.equal(upstream.headers.authorization, 'Bearer sk-sim');
      assert.match(String(upstream.headers['content-type']), /^multipart\/form-data; boundary=/);
      assert.deepEqual(upstream.body.fields, {
        size: '1024x1024',
        quality: 'low',
        background: 'auto',
        model: 'gpt-image-1.5',
        prompt: 'make it night',
        n: '1',
      });
      assert.deepEqual(
        upstream.body.files.map((file: any) => [file.field, file.type, file.bytes.length]),
        [
          ['image[]', 'image/png', first.length],
          ['image[]', 'image/jpeg', second.length],
        ],
      );
      assert.ok(upstream.body.files[0].bytes.equals(first) && upstream.body.files[1].bytes.equals(second));
      assert.equal(result.data![0].b64_json, sim.sentImages[0]);
      assert.equal(sim.sentUsages[0].input_tokens_details.image_tokens, 2 * TOKENS_PER_REFERENCE_IMAGE);
      // $0.009 + 13 prompt bytes × $5/M + 2 reference images × $0.05.
      assert.equal(charge, parseUsd('0.109065'));
      assert.equal(charge, listPrice('gpt-image-1.5', { quality: 'low', size: '1024x1024', prompt: 'make it night', references: 2 }));
      assert.equal(record.upstreamCost, tokenCost('gpt-image-1.5', sim.sentUsages), 'the reference images at the image-input rate');
      assert.equal((result.usage as any).prompt_tokens_details.image_tokens, 2 * TOKENS_PER_REFERENCE_IMAGE);
    });

    it('moderation low on an edit is reported as not supported, and not sent', async () => {
      const reference = await renderSketch({ prompt: 'r', seed: 1, width: 64, height: 64, format: 'png' });
      const result = await t
        .client(account.key)
        .images.edit(
          withExtras(
            { model: 'gpt-image-2', prompt: 'p', image: await toFile(reference, 'r.png', { type: 'image/png' }) },
            { moderation: 'low' },
          ),
        );
      assert.ok(!('moderation' in sim.requests[0].body.fields));
      assert.ok((result as any).warnings.some((warning: any) => warning.param === 'moderation'));
    });

    it('a streamed edit with partial_images relays image_edit partial and completed events', async () => {
      const reference = await renderSketch({ prompt: 'r', seed: 1, width: 64, height: 64, format: 'png' });
      const {
        result: events,
        charge,
        record,
      } = await billed(t, account, async () => {
        const stream = await t.client(account.key).images.edit({
          model: 'gpt-image-1.5',
          prompt: 'p',
          image: await toFile(reference, 'r.png', { type: 'image/png' }),
          stream: true,
          partial_images: 1,
          quality: 'low',
        });
        return collect(stream);
      });
      assert.equal(sim.requests[0].body.fields.stream, 'true');
      assert.equal(sim.requests[0].body.fields.partial_images, '1');
      assert.deepEqual(
        events.map((event) => event.type),
        ['image_edit.partial_image', 'image_edit.completed'],
      );
      assert.equal(events[1].b64_json, sim.sentImages[0]);
      assert.equal(charge, listPrice('gpt-image-1.5', { quality: 'low', size: 'auto', prompt: 'p', references: 1 }));
      assert.equal(record.upstreamCost, tokenCost('gpt-image-1.5', sim.sentUsages));
    });
  });
});
