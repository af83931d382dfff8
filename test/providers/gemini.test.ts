import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { toFile } from 'openai';
import { parse as parseYaml } from 'yaml';
import { divCeil, parseUsd } from '../../src/domain/money.ts';
import { probeBase64 } from '../../src/images/probe.ts';
import { base64String } from '../../src/images/base64.ts';
import { generateContentResponseSchema, readUsage, retryDelaySeconds } from '../../src/providers/gemini/gemini-api.ts';
import { GeminiImageAdapter } from '../../src/providers/gemini/gemini-image-adapter.ts';
import type { NormalizedImageRequest } from '../../src/providers/types.ts';
import { billed, collect, expectBalance, expectError } from '../helpers/assertions.ts';
import { startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';
import {
  GEMINI_SIZES,
  solidImage,
  startGeminiSimulator,
  type GeminiSimulator,
  type RecordedRequest,
} from '../simulators/gemini-simulator.ts';

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');
const ROUTE_OPTIONS = { timeouts: { connect_ms: 1_000, first_byte_ms: 1_000, total_ms: 4_000 }, max_response_bytes: 2_000_000 };
const FLASH = 'gemini-3.1-flash-image-preview';
const PRO = 'gemini-3-pro-image-preview';
/**
 * catalog/models.yaml's list prices, written out: per image by resolution tier, the prompt per million UTF-8 bytes (once
 * per request) and each reference image.
 */
const LIST = {
  'nano-banana-2': {
    perImage: { '512': '0.045', '1K': '0.067', '2K': '0.101', '4K': '0.151' } as Record<string, string>,
    promptPerMillionBytes: '0.5',
    referenceImage: '0.00056',
  },
  'nano-banana-pro': {
    perImage: { '1K': '0.134', '2K': '0.134', '4K': '0.24' } as Record<string, string>,
    promptPerMillionBytes: '2',
    referenceImage: '0.00224',
  },
};

/** The list price: per image × delivered images + the prompt's bytes × rate (rounded up once) + the reference images. */
function listPrice(model: keyof typeof LIST, request: { tier: string; prompt: string; images?: number; references?: number }): bigint {
  const list = LIST[model];
  const promptBytes = BigInt(Buffer.byteLength(request.prompt, 'utf8'));
  return (
    parseUsd(list.perImage[request.tier]) * BigInt(request.images ?? 1) +
    divCeil(promptBytes * parseUsd(list.promptPerMillionBytes), 1_000_000n) +
    parseUsd(list.referenceImage) * BigInt(request.references ?? 0)
  );
}

/** providers.md §2 rates in nanos per 1M tokens: prompt in, text/thinking out, image out. */
const RATES = {
  'nano-banana-2': { input: 500_000_000n, output: 3_000_000_000n, image: 60_000_000_000n },
  'nano-banana-pro': { input: 2_000_000_000n, output: 12_000_000_000n, image: 120_000_000_000n },
};

const shipped = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
const catalogModel = (id: string) => shipped.models.find((model: { id: string }) => model.id === id);

function geminiCatalog(): string {
  const catalog = structuredClone(shipped);
  for (const model of catalog.models) if (model.routes[0].provider === 'gemini') model.routes[0].options = ROUTE_OPTIONS;
  return JSON.stringify(catalog);
}

/**
 * The upstream's bill: the answers' usageMetadata at the catalog's `tokens` rates, summed over calls and rounded up
 * once (the catalog's rule, spelled out). Recorded as the request's upstream cost, not charged.
 */
function tokenCost(model: keyof typeof RATES, answers: any[]): bigint {
  let total = 0n;
  for (const { usageMetadata: usage } of answers) {
    const image = BigInt(usage.candidatesTokensDetails.find((entry: any) => entry.modality === 'IMAGE').tokenCount);
    const textOut = BigInt(usage.candidatesTokenCount) - image + BigInt(usage.thoughtsTokenCount ?? 0);
    total += BigInt(usage.promptTokenCount) * RATES[model].input + image * RATES[model].image + textOut * RATES[model].output;
  }
  return divCeil(total, 1_000_000n);
}

const imageOf = (recorded: RecordedRequest) =>
  recorded.answer.candidates[0].content.parts.find((part: any) => part.inlineData && !part.thought).inlineData.data as string;

describe('Gemini adapter (nano-banana-2, nano-banana-pro) against the Gemini simulator', () => {
  let sim: GeminiSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    sim = await startGeminiSimulator();
    t = await startTestServer({ env: { GEMINI_API_KEY: 'sk-sim', GEMINI_BASE_URL: sim.url }, catalog: geminiCatalog() });
    account = await t.createAccount('100');
  });
  after(async () => {
    await t.close();
    await sim.close();
  });
  beforeEach(() => sim.reset());

  const balance = () => t.balance(account.accountId);
  const generate = (params: Record<string, unknown>) =>
    t
      .client(account.key)
      .images.generate(withExtras({ model: 'nano-banana-2', prompt: 'a red bicycle on a beach' }, params)) as Promise<any>;

  it('nano-banana-2: the exact generateContent request, the image passed through, the list price charged, the token cost recorded', async () => {
    const { result, charge, record } = await billed(t, account, () => generate({ aspect_ratio: '16:9', resolution: '512' }));

    assert.equal(sim.requests.length, 1);
    const [call] = sim.requests;
    assert.equal(call.method, 'POST');
    assert.equal(call.path, `/v1beta/models/${FLASH}:generateContent`);
    assert.equal(call.headers['x-goog-api-key'], 'sk-sim');
    assert.equal(call.headers['content-type'], 'application/json');
    assert.equal(call.headers.authorization, undefined);
    assert.deepEqual(call.body, {
      contents: [{ role: 'user', parts: [{ text: 'a red bicycle on a beach' }] }],
      generationConfig: { responseModalities: ['IMAGE'], imageConfig: { aspectRatio: '16:9', imageSize: '512' } },
    });

    assert.equal(result.size, '688x384');
    assert.equal(result.data.length, 1);
    assert.equal(result.data[0].b64_json, imageOf(call), 'base64 passed through untouched');
    assert.equal(result.data[0].revised_prompt, undefined, 'Gemini commentary is not a revised prompt');
    // Charged: the 512 tier's $0.045 + 24 prompt bytes × $0.50/M = $0.045012.
    assert.equal(listPrice('nano-banana-2', { tier: '512', prompt: 'a red bicycle on a beach' }), 45_012_000n);
    assert.equal(charge, 45_012_000n);
    assert.equal(result.usage.cost.total_cost, 0.045012);
    // Gemini's bill: 24 prompt chars → 6 tokens × $0.50/M + 747 image tokens × $60/M + 5 text tokens × $3/M = $0.044838.
    assert.equal(tokenCost('nano-banana-2', [call.answer]), 44_838_000n);
    assert.equal(record.upstreamCost, 44_838_000n);
    assert.equal(result.usage.prompt_tokens, 6);
    assert.equal(result.usage.completion_tokens, 752);
    assert.equal(result.usage.completion_tokens_details.image_tokens, 747);
    assert.equal(result.warnings, undefined);
  });

  it('nano-banana-2: every aspect ratio and every tier reach Gemini as sent, the image has the table size, the tier sets the price', async () => {
    const model = catalogModel('nano-banana-2');
    const cases = [
      ...model.params.aspect_ratio.enum.map((ratio: string) => [ratio, '512']),
      ...model.params.resolution.enum.map((tier: string) => ['1:1', tier]),
      ['8:1', '2K'],
    ];
    for (const [ratio, tier] of cases) {
      sim.reset();
      const { result, charge, record } = await billed(t, account, () => generate({ aspect_ratio: ratio, resolution: tier }));
      assert.deepEqual(sim.requests[0].body.generationConfig.imageConfig, { aspectRatio: ratio, imageSize: tier });
      assert.equal(result.size, model.sizing.table[tier][ratio], `${ratio} ${tier}`);
      assert.equal(result.size, GEMINI_SIZES[tier][ratio], 'catalog and providers.md agree');
      const probed = probeBase64(result.data[0].b64_json)!;
      assert.equal(`${probed.width}x${probed.height}`, result.size);
      assert.equal(charge, listPrice('nano-banana-2', { tier, prompt: 'a red bicycle on a beach' }), `${ratio} ${tier}`);
      assert.equal(record.upstreamCost, tokenCost('nano-banana-2', [sim.requests[0].answer]), `${ratio} ${tier}`);
    }
  });

  it('defaults are sent explicitly, and a lower-case tier is sent with the upper-case K Gemini requires', async () => {
    await generate({});
    assert.deepEqual(sim.requests[0].body.generationConfig.imageConfig, { aspectRatio: '1:1', imageSize: '1K' });
    sim.reset();
    const result = await generate({ resolution: '2k' });
    assert.equal(sim.requests[0].body.generationConfig.imageConfig.imageSize, '2K');
    assert.equal(result.size, '2048x2048');
  });

  it('nano-banana-pro: thought parts (draft images) are skipped; the tier is charged, thinking tokens are in the upstream cost as text output', async () => {
    for (const [tier, ratio] of [
      ['1K', '3:4'],
      ['2K', '21:9'],
      ['4K', '1:1'],
    ]) {
      sim.reset();
      const { result, charge, record } = await billed(t, account, async () => {
        const answer = await t
          .client(account.key)
          .images.generate(
            withExtras({ model: 'nano-banana-pro', prompt: 'a lighthouse at dusk' }, { resolution: tier, aspect_ratio: ratio }),
          );
        return answer as any;
      });
      const [call] = sim.requests;
      assert.equal(call.path, `/v1beta/models/${PRO}:generateContent`);
      assert.deepEqual(call.body.generationConfig, { responseModalities: ['IMAGE'], imageConfig: { aspectRatio: ratio, imageSize: tier } });
      assert.ok(
        call.answer.candidates[0].content.parts.some((part: any) => part.thought && part.inlineData),
        'the simulator sent a draft image',
      );
      assert.equal(result.size, catalogModel('nano-banana-pro').sizing.table[tier][ratio]);
      assert.equal(result.data[0].b64_json, imageOf(call));
      assert.equal(result.usage.completion_tokens_details.reasoning_tokens, 250);
      const price = listPrice('nano-banana-pro', { tier, prompt: 'a lighthouse at dusk' });
      assert.equal(charge, price);
      assert.equal(parseUsd(String(result.usage.cost.total_cost)), price);
      assert.equal(record.upstreamCost, tokenCost('nano-banana-pro', [call.answer]));
    }
    // 1K: $0.134 + 20 prompt bytes × $2/M is charged; Gemini's bill is 5 prompt tokens × $2/M + 1120 × $120/M + (5 + 250) × $12/M.
    assert.equal(listPrice('nano-banana-pro', { tier: '1K', prompt: 'a lighthouse at dusk' }), 134_040_000n);
    assert.equal(
      tokenCost('nano-banana-pro', [
        {
          usageMetadata: {
            promptTokenCount: 5,
            candidatesTokenCount: 1125,
            thoughtsTokenCount: 250,
            candidatesTokensDetails: [{ modality: 'IMAGE', tokenCount: 1120 }],
          },
        },
      ]),
      137_470_000n,
    );
  });

  it('nano-banana-pro has no 512 tier and no 1:8 ratio: rejected by the catalog before any upstream call', async () => {
    const start = await balance();
    const client = t.client(account.key);
    await expectError(
      client.images.generate(withExtras({ model: 'nano-banana-pro', prompt: 'x' }, { resolution: '512' })),
      400,
      'invalid_value',
      'resolution',
    );
    await expectError(
      client.images.generate(withExtras({ model: 'nano-banana-pro', prompt: 'x' }, { aspect_ratio: '1:8' })),
      400,
      'invalid_value',
      'aspect_ratio',
    );
    assert.equal(sim.requests.length, 0);
    await expectBalance(t, account, start);
  });

  it('a JPEG answer keeps its type; output_format png is transcoded by the gateway, not asked of Gemini', async () => {
    sim.queue({ kind: 'image', mimeType: 'image/jpeg' });
    const jpeg = await generate({ resolution: '512' });
    assert.equal(probeBase64(jpeg.data[0].b64_json)!.format, 'jpeg');
    sim.queue({ kind: 'image', mimeType: 'image/jpeg' });
    const png = await generate({ resolution: '512', output_format: 'png' });
    assert.equal(probeBase64(png.data[0].b64_json)!.format, 'png');
    assert.deepEqual(Object.keys(sim.requests[1].body.generationConfig), ['responseModalities', 'imageConfig']);
  });

  it('extras: Gemini fields are forwarded, generationConfig is merged under ours, URLs and owned fields are dropped with warnings', async () => {
    const safetySettings = [{ category: 'HARM_CATEGORY_SEXUALLY_EXPLICIT', threshold: 'BLOCK_ONLY_HIGH' }];
    const result = await generate({
      resolution: '512',
      safetySettings,
      generationConfig: { temperature: 0.4, responseModalities: ['TEXT'], candidateCount: 4 },
      contents: [{ parts: [{ text: 'something else' }] }],
      systemInstruction: { parts: [{ fileData: { fileUri: 'https://attacker.example/x.png' } }] },
    });
    assert.deepEqual(sim.requests[0].body, {
      safetySettings,
      contents: [{ role: 'user', parts: [{ text: 'a red bicycle on a beach' }] }],
      generationConfig: { temperature: 0.4, responseModalities: ['IMAGE'], imageConfig: { aspectRatio: '1:1', imageSize: '512' } },
    });
    const params = result.warnings.map((warning: { param: string }) => warning.param).sort();
    assert.deepEqual(params, ['contents', 'generationConfig.candidateCount', 'generationConfig.responseModalities', 'systemInstruction']);
  });

  it('an extra Gemini does not know → its 400 names our param; no charge', async () => {
    const start = await balance();
    const error = await expectError(generate({ resolution: '512', frobnicate: true }), 400, 'invalid_value', 'frobnicate');
    assert.match(error.message, /Unknown name "frobnicate"/);
    assert.equal(sim.requests.length, 1);
    await expectBalance(t, account, start);
  });

  it('n: 4 → four parallel single-image calls, four images, charged four images and the prompt once, the four calls’ tokens recorded', async () => {
    sim.queue(...Array.from({ length: 4 }, () => ({ kind: 'image' as const, delayMs: 150 })));
    const { result, charge, record } = await billed(t, account, () => generate({ n: 4, resolution: '512' }));
    assert.equal(sim.requests.length, 4);
    assert.equal(sim.maxInFlight, 4, 'the four calls ran at the same time');
    for (const call of sim.requests) assert.deepEqual(call.body.generationConfig.imageConfig, { aspectRatio: '1:1', imageSize: '512' });
    assert.equal(result.data.length, 4);
    assert.deepEqual(
      result.data.map((item: any) => item.index),
      [0, 1, 2, 3],
    );
    assert.deepEqual(new Set(result.data.map((item: any) => item.b64_json)), new Set(sim.requests.map(imageOf)));
    assert.equal(result.usage.prompt_tokens, 24);
    assert.equal(charge, 180_012_000n); // 4 × $0.045 + 24 prompt bytes × $0.50/M, once
    assert.equal(charge, listPrice('nano-banana-2', { tier: '512', prompt: 'a red bicycle on a beach', images: 4 }));
    assert.equal(parseUsd(String(result.usage.cost.total_cost)), charge);
    assert.equal(
      record.upstreamCost,
      tokenCost(
        'nano-banana-2',
        sim.requests.map((call) => call.answer),
      ),
      'each call bills its prompt',
    );
  });

  it('stream: true, n: 3 → one completed event per image, as each Gemini call finishes; their costs split the list price exactly', async () => {
    // 3 × $0.045 + 25 prompt bytes × $0.50/M = 135,012,500 nanos: not a multiple of 3, so the split has a remainder.
    const prompt = 'a red bicycle on a beach.';
    const {
      result: events,
      charge,
      record,
    } = await billed(t, account, async () => {
      const stream = await t
        .client(account.key)
        .images.generate(withExtras({ model: 'nano-banana-2', prompt, n: 3, stream: true as const }, { resolution: '512' }));
      return collect(stream);
    });
    assert.deepEqual(
      events.map((event) => event.type),
      ['image_generation.completed', 'image_generation.completed', 'image_generation.completed'],
    );
    assert.equal(sim.requests.length, 3);
    assert.deepEqual(new Set(events.map((event) => event.b64_json)), new Set(sim.requests.map(imageOf)));
    assert.equal(events[0].size, '512x512');
    assert.equal(charge, 135_012_500n);
    assert.equal(charge, listPrice('nano-banana-2', { tier: '512', prompt, images: 3 }));
    const shares = events.map((event) => parseUsd(String(event.usage.cost.total_cost)));
    assert.deepEqual(shares, [45_004_168n, 45_004_166n, 45_004_166n], 'the remainder nanos on the first event');
    assert.equal(
      record.upstreamCost,
      tokenCost(
        'nano-banana-2',
        sim.requests.map((call) => call.answer),
      ),
    );
  });

  it('n: 4 with one call failing → three images, charged exactly those three and the prompt, with the pipeline’s warning', async () => {
    sim.queue({ kind: 'image' }, { kind: 'finish', reason: 'NO_IMAGE' }, { kind: 'image' }, { kind: 'image' });
    const { result, charge, record } = await billed(t, account, () => generate({ n: 4, resolution: '512' }));
    assert.equal(sim.requests.length, 4, 'an accepted failure is not retried');
    assert.equal(result.data.length, 3);
    const delivered = sim.requests.filter((call) => call.answer?.candidates?.[0]?.content);
    assert.equal(delivered.length, 3);
    assert.deepEqual(new Set(result.data.map((item: any) => item.b64_json)), new Set(delivered.map(imageOf)));
    assert.ok(
      result.warnings.some((warning: { message: string }) =>
        /Only 3 of 4 images could be generated; you are charged for 3/.test(warning.message),
      ),
    );
    assert.equal(charge, 135_012_000n); // 3 × $0.045 + 24 prompt bytes × $0.50/M
    assert.equal(charge, listPrice('nano-banana-2', { tier: '512', prompt: 'a red bicycle on a beach', images: 3 }));
    assert.equal(
      record.upstreamCost,
      tokenCost(
        'nano-banana-2',
        delivered.map((call) => call.answer),
      ),
    );
  });

  it('content refusals (HTTP 200) → 400 content_policy_violation saying what was refused, no charge, no retry', async () => {
    const start = await balance();
    const cases: Array<[Parameters<GeminiSimulator['queue']>[0], RegExp]> = [
      [{ kind: 'prompt_blocked', reason: 'PROHIBITED_CONTENT' }, /blocked the prompt \[PROHIBITED_CONTENT\]/],
      [{ kind: 'prompt_blocked', reason: 'OTHER' }, /blocked the prompt \[OTHER\]/],
      [
        { kind: 'finish', reason: 'IMAGE_SAFETY', message: 'Unable to show the generated image.' },
        /image safety filters \[IMAGE_SAFETY\] \(Unable to show/,
      ],
      [{ kind: 'finish', reason: 'IMAGE_PROHIBITED_CONTENT' }, /prohibited content \[IMAGE_PROHIBITED_CONTENT\]/],
      [{ kind: 'finish', reason: 'SAFETY' }, /safety filters \[SAFETY\]/],
      [{ kind: 'finish', reason: 'RECITATION' }, /reciting existing content/],
    ];
    for (const [outcome, message] of cases) {
      sim.reset();
      sim.queue(outcome);
      const error = await expectError(generate({ resolution: '512' }), 400, 'content_policy_violation');
      assert.match(error.message, message);
      assert.equal(sim.requests.length, 1);
    }
    await expectBalance(t, account, start);
  });

  it('image-less answers that are not refusals → 502 upstream_error, no charge, no retry', async () => {
    const start = await balance();
    const cases: Array<[Parameters<GeminiSimulator['queue']>[0], RegExp]> = [
      [
        { kind: 'text_only', text: 'I would rather describe it: a red bicycle.' },
        /returned no image; it answered: “I would rather describe it/,
      ],
      [{ kind: 'finish', reason: 'NO_IMAGE' }, /without an image \[NO_IMAGE\]/],
      [{ kind: 'finish', reason: 'OTHER' }, /without an image \[OTHER\]/],
      [{ kind: 'malformed_json' }, /not a generateContent JSON object/],
      [{ kind: 'oversized', bytes: 3_000_000 }, /larger than 2000000 bytes/],
    ];
    for (const [outcome, message] of cases) {
      sim.reset();
      sim.queue(outcome);
      const error = await expectError(generate({ resolution: '512' }), 502, 'upstream_error');
      assert.match(error.message, message);
      assert.equal(sim.requests.length, 1);
    }
    await expectBalance(t, account, start);
  });

  it('429 RESOURCE_EXHAUSTED with RetryInfo → retried once after the delay, then our 429 with Retry-After; no charge', async () => {
    const start = await balance();
    sim.queue({ kind: 'rate_limited', retryDelay: '0.4s' }, { kind: 'rate_limited', retryDelay: '0.4s' });
    const error = await expectError(generate({ resolution: '512' }), 429, 'rate_limit_exceeded');
    assert.equal(error.headers?.get('retry-after'), '1');
    assert.equal(sim.requests.length, 2);
    await expectBalance(t, account, start);

    sim.reset();
    sim.queue({ kind: 'rate_limited', retryDelay: '0.2s' });
    const { result, charge, record } = await billed(t, account, () => generate({ resolution: '512' }));
    assert.equal(result.data.length, 1, 'the retry succeeded');
    assert.equal(charge, listPrice('nano-banana-2', { tier: '512', prompt: 'a red bicycle on a beach' }), 'charged once');
    assert.equal(record.upstreamCost, tokenCost('nano-banana-2', [sim.requests[1].answer]));
  });

  it('RetryInfo delays are read as seconds, rounded up and capped at 60', () => {
    assert.equal(retryDelaySeconds('34.4s'), 35);
    assert.equal(retryDelaySeconds('34s'), 34);
    assert.equal(retryDelaySeconds('0.2s'), 1);
    assert.equal(retryDelaySeconds('900s'), 60);
    assert.equal(retryDelaySeconds('soon'), undefined);
    assert.equal(retryDelaySeconds(34), undefined);
  });

  it('500 INTERNAL → retried once, then 503; a 400 INVALID_ARGUMENT about the ratio names aspect_ratio; no charge', async () => {
    const start = await balance();
    const internal = { error: { code: 500, message: 'An internal error has occurred.', status: 'INTERNAL' } };
    sim.queue({ kind: 'error', status: 500, body: internal }, { kind: 'error', status: 500, body: internal });
    await expectError(generate({ resolution: '512' }), 503, 'upstream_error');
    assert.equal(sim.requests.length, 2);

    sim.reset();
    sim.queue({
      kind: 'error',
      status: 400,
      body: { error: { code: 400, message: 'Unsupported aspect ratio: 1:1.', status: 'INVALID_ARGUMENT' } },
    });
    await expectError(generate({ resolution: '512' }), 400, 'invalid_value', 'aspect_ratio');
    assert.equal(sim.requests.length, 1);
    await expectBalance(t, account, start);
  });

  it('timeout, connection reset → 502 (the call may have been accepted: not repeated); no charge', async () => {
    const start = await balance();
    for (const kind of ['hang', 'reset'] as const) {
      sim.reset();
      sim.queue({ kind });
      await expectError(generate({ resolution: '512' }), 502, 'upstream_error');
      assert.equal(sim.requests.length, 1, kind);
    }
    await expectBalance(t, account, start);
  });

  it('an invalid key (Gemini: 400 API_KEY_INVALID) → 502 misconfigured without the upstream text; no charge', async () => {
    const wrong = await startTestServer({ env: { GEMINI_API_KEY: 'sk-wrong', GEMINI_BASE_URL: sim.url }, catalog: geminiCatalog() });
    try {
      const other = await wrong.createAccount('1');
      const error = await expectError(
        wrong.client(other.key).images.generate(withExtras({ model: 'nano-banana-2', prompt: 'x' }, {})),
        502,
        'upstream_error',
      );
      assert.match(error.message, /misconfigured/);
      assert.doesNotMatch(error.message, /API key not valid/);
      assert.equal(sim.requests.length, 1);
      assert.equal(sim.requests[0].headers['x-goog-api-key'], 'sk-wrong');
      assert.equal(await wrong.balance(other.accountId), '1');
    } finally {
      await wrong.close();
    }
  });

  it('edits over HTTP: the upload reaches Gemini as an inlineData part; its list price is charged, its input tokens recorded', async () => {
    const reference = Buffer.from(await solidImage(64, 48, 'image/png', 7), 'base64');
    const upload = await toFile(reference, 'ref.png', { type: 'image/png' });
    const { result, charge, record } = await billed(
      t,
      account,
      async () =>
        (await t
          .client(account.key)
          .images.edit(
            withExtras({ model: 'nano-banana-2', prompt: 'make it night', image: upload }, { resolution: '512', aspect_ratio: '4:3' }),
          )) as any,
    );
    const [call] = sim.requests;
    assert.deepEqual(call.body, {
      contents: [
        { role: 'user', parts: [{ text: 'make it night' }, { inlineData: { mimeType: 'image/png', data: reference.toString('base64') } }] },
      ],
      generationConfig: { responseModalities: ['IMAGE'], imageConfig: { aspectRatio: '4:3', imageSize: '512' } },
    });
    assert.equal(result.size, '600x448');
    assert.equal(result.data[0].b64_json, imageOf(call));
    assert.equal(call.answer.usageMetadata.promptTokenCount, 4 + 560);
    assert.equal(charge, 45_566_500n); // $0.045 + 13 prompt bytes × $0.50/M + 1 reference image × $0.00056
    assert.equal(charge, listPrice('nano-banana-2', { tier: '512', prompt: 'make it night', references: 1 }));
    assert.equal(record.upstreamCost, tokenCost('nano-banana-2', [call.answer]), 'the reference image’s 560 prompt tokens included');
  });

  it('edits: reference images go as inlineData parts after the prompt, base64 exactly as uploaded (adapter direct)', async () => {
    const png = Buffer.from(await solidImage(32, 24, 'image/png', 2), 'base64');
    const jpeg = Buffer.from(await solidImage(16, 16, 'image/jpeg', 1), 'base64');
    const request: NormalizedImageRequest = {
      model: 'nano-banana-2',
      prompt: 'make it night',
      n: 1,
      seed: undefined,
      width: 1024,
      height: 1024,
      params: { aspect_ratio: '1:1', resolution: '1K' },
      outputFormat: undefined,
      partialImages: 0,
      extra: {},
      inputImages: [
        { bytes: png, mediaType: 'image/png', width: 32, height: 24 },
        { bytes: jpeg, mediaType: 'image/jpeg', width: 16, height: 16 },
      ],
    };
    const route = { upstreamModel: FLASH, baseUrl: sim.url, credential: 'sk-sim', options: ROUTE_OPTIONS };
    const delivered: string[] = [];
    const result = await new GeminiImageAdapter().generate(request, route, {
      signal: AbortSignal.timeout(5_000),
      onImage: (image) => delivered.push(base64String(image.base64)),
    });
    assert.deepEqual(sim.requests[0].body.contents, [
      {
        role: 'user',
        parts: [
          { text: 'make it night' },
          { inlineData: { mimeType: 'image/png', data: png.toString('base64') } },
          { inlineData: { mimeType: 'image/jpeg', data: jpeg.toString('base64') } },
        ],
      },
    ]);
    assert.equal(result.images.length, 1);
    assert.deepEqual(delivered, [imageOf(sim.requests[0])]);
    assert.equal(result.images[0].mediaType, 'image/png');
    // 4 prompt tokens + 2 × 560 reference-image tokens, reported as input and as image input.
    assert.deepEqual(result.usage, { inputTokens: 1124, inputImageTokens: 1120, outputTokens: 1125, outputImageTokens: 1120 });
  });

  it('usageMetadata is validated: negative, non-integer, huge, mistyped or contradictory counts are ignored', () => {
    const usage = (usageMetadata: unknown) => readUsage(generateContentResponseSchema.parse({ usageMetadata }).usageMetadata);
    assert.equal(
      usage({ promptTokenCount: -4, candidatesTokenCount: 1125.5, thoughtsTokenCount: 1e12, cachedContentTokenCount: '7' }),
      undefined,
    );
    assert.deepEqual(
      usage({ promptTokenCount: 10, candidatesTokenCount: 100, candidatesTokensDetails: [{ modality: 'IMAGE', tokenCount: 5000 }] }),
      { inputTokens: 10, outputTokens: 100 },
    );
    assert.deepEqual(usage({ promptTokenCount: 10, candidatesTokenCount: 'many', candidatesTokensDetails: 'IMAGE' }), { inputTokens: 10 });
    assert.equal(usage('nothing'), undefined);
  });
});
