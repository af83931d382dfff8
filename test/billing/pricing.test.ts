import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { buildCatalog, loadCatalogFile, type ImageCatalogModel } from '../../src/catalog/catalog.ts';
import { normalizeImageRequest } from '../../src/catalog/image-request.ts';
import { quoteImageRequest, settleImageCost } from '../../src/billing/pricing.ts';

/** Price rules from the catalog, in nanos (1e-9 USD). */
const catalog = loadCatalogFile(path.resolve(import.meta.dirname, '../../catalog/models.yaml'));
const quote = (id: string, body: Record<string, unknown>, inputs: Array<{ width: number; height: number }> = []) => {
  const model = catalog.get(id) as ImageCatalogModel;
  const inputImages = inputs.map((size) => ({ ...size, bytes: Buffer.alloc(0), mediaType: 'image/png' as const }));
  return quoteImageRequest(model, normalizeImageRequest({ model: id, prompt: 'p', ...body }, model, { inputImages }).request);
};
const usd = (nanos: bigint) => Number(nanos) / 1e9;

/** A catalog of one image model `m`: a plain offline model, with the fields a test sets (sizing, params, pricing). */
const oneModelCatalog = (fields: Record<string, unknown>) =>
  buildCatalog({
    version: 1,
    models: [
      {
        id: 'm',
        owned_by: 'x',
        modalities: { input: ['text'], output: ['image'] },
        prompt_max_length: 100,
        max_n: 1,
        output_formats: ['png'],
        native_output_format: 'png',
        streaming: false,
        seed: false,
        edit: { supported: false, max_images: 0 },
        routes: [{ provider: 'offline' }],
        ...fields,
      },
    ],
  });

describe('quoteImageRequest', () => {
  it('per image by tier: the most specific table key wins', () => {
    assert.equal(usd(quote('gpt-image-1.5', { quality: 'high', image_size: '1536x1024' }).perImage), 0.2);
    assert.equal(usd(quote('gpt-image-1.5', { quality: 'low', image_size: '1024x1024' }).perImage), 0.009);
    // perImage, not hold: the hold also prices the prompt's bytes on this model.
    assert.equal(usd(quote('nano-banana-pro', { resolution: '4K' }).perImage), 0.24);
    assert.equal(usd(quote('nano-banana-pro', { resolution: '1K', n: 3 }).perImage * 3n), 0.402);
  });

  it('per megapixel (flux-2-pro): first MP + each further started MP, plus input megapixels', () => {
    assert.equal(usd(quote('flux-2-pro', { width: 1024, height: 1024 }).perImage), 0.03);
    assert.equal(usd(quote('flux-2-pro', { width: 1920, height: 1088 }).perImage), 0.045); // 2 MP
    assert.equal(usd(quote('flux-2-pro', { width: 2048, height: 2048 }).perImage), 0.075); // 4 MP
    const edit = quote('flux-2-pro', { width: 1024, height: 1024, n: 2 }, [{ width: 1500, height: 1000 }]);
    assert.equal(usd(edit.inputs), 0.03); // 2 started MP × $0.015
    assert.equal(usd(edit.hold), 0.09);
  });

  it('a custom size (gpt-image-2) costs its quality price per started megapixel; listed sizes keep their table price', () => {
    assert.equal(usd(quote('gpt-image-2', { quality: 'high', size: '1280x720' }).perImage), 0.211); // 0.88 MP → 1
    assert.equal(usd(quote('gpt-image-2', { quality: 'high', size: '3840x2160' }).perImage), 1.688); // 7.9 MP → 8
    assert.equal(usd(quote('gpt-image-2', { quality: 'medium', size: '2048x2048' }).perImage), 0.212); // 4 MP
    assert.equal(usd(quote('gpt-image-2', { quality: 'low', size: '2048x1152' }).perImage), 0.018); // 2.25 MP → 3
    assert.equal(usd(quote('gpt-image-2', { quality: 'high', size: '1536x1024' }).perImage), 0.165);
    assert.match(quote('gpt-image-2', { quality: 'low', size: '2048x1152' }).basis, /custom size 2048x1152: 3 MP, low/);
  });

  it("the prompt's UTF-8 bytes at the model's rate, once per request, part of the hold and of the charge", () => {
    const model = catalog.get('gpt-image-1.5') as ImageCatalogModel;
    // 1,000 × "é" is 2,000 bytes: 2,000 × $5 / 1M = $0.01, whatever n is.
    const request = normalizeImageRequest(
      { model: 'gpt-image-1.5', prompt: 'é'.repeat(1000), quality: 'low', size: '1024x1024', n: 2 },
      model,
    ).request;
    const q = quoteImageRequest(model, request);
    assert.equal(usd(q.inputs), 0.01);
    assert.equal(usd(q.hold), 0.028); // 2 × $0.009 + $0.01
    assert.equal(settleImageCost(model, q, 2, undefined).cost, q.hold, 'every image delivered: the charge is the quote');
    assert.equal(usd(settleImageCost(model, q, 1, undefined).cost), 0.019, 'one delivered: one image plus the prompt');
    assert.equal(settleImageCost(model, q, 0, undefined).cost, 0n, 'none delivered: nothing');
  });

  it('input images priced per image (grok-imagine-quality)', () => {
    const q = quote('grok-imagine-quality', { resolution: '1K' }, [
      { width: 10, height: 10 },
      { width: 10, height: 10 },
    ]);
    assert.equal(usd(q.inputs), 0.02);
  });
});

describe('settleImageCost', () => {
  const rules = (pricing: Record<string, unknown>) =>
    oneModelCatalog({
      max_n: 4,
      streaming: true,
      seed: true,
      params: {
        width: { type: 'integer', min: 64, max: 2048, default: 1024 },
        height: { type: 'integer', min: 64, max: 2048, default: 1024 },
      },
      sizing: { style: 'pixel_dimensions' },
      pricing,
    }).get('m') as ImageCatalogModel;
  const quoteFor = (model: ReturnType<typeof rules>, n: number) =>
    quoteImageRequest(model, normalizeImageRequest({ model: 'm', prompt: 'p', n }, model).request);

  it('charges list price × delivered images, never more than the hold', () => {
    const model = rules({ unit: 'image', base: '0.05' });
    const q = quoteFor(model, 4);
    assert.equal(settleImageCost(model, q, 3, undefined).cost, 150_000_000n);
    assert.equal(settleImageCost(model, q, 0, undefined).cost, 0n);
    assert.equal(settleImageCost(model, q, 99, undefined).cost, q.hold);
  });

  it('settles from upstream tokens, rounded up once, clamped to the hold; hostile usage cannot credit', () => {
    const model = rules({
      unit: 'image',
      base: '0.2',
      settle: 'upstream_tokens',
      tokens: { input_per_million: '5', output_per_million: '10', image_output_per_million: '30' },
    });
    const q = quoteFor(model, 1);
    // 12 text-in tokens × $5/M + 4160 image-out × $30/M = 0.00006 + 0.1248
    assert.equal(settleImageCost(model, q, 1, { inputTokens: 12, outputTokens: 4160, outputImageTokens: 4160 }).cost, 124_860_000n);
    assert.equal(settleImageCost(model, q, 1, { inputTokens: 1, outputTokens: 0 }).cost, 5_000n); // 1 × $5 / 1M = 5e-6 USD
    const cheap = rules({
      unit: 'image',
      base: '0.2',
      settle: 'upstream_tokens',
      tokens: { input_per_million: '0.0005', output_per_million: '1' },
    });
    assert.equal(settleImageCost(cheap, quoteFor(cheap, 1), 1, { inputTokens: 3 }).cost, 2n); // 1.5 nanos, rounded up
    assert.equal(settleImageCost(model, q, 1, { outputImageTokens: 1e12, outputTokens: 1e12 }).cost, q.perImage); // absurd → ignored, list price
    assert.equal(settleImageCost(model, q, 1, { inputTokens: -500, outputTokens: Number.NaN }).cost, q.perImage);
    assert.equal(settleImageCost(model, q, 1, { outputImageTokens: 100_000, outputTokens: 100_000 }).cost, q.hold);
  });

  it('list-settled: the charge is the list price whatever the upstream reports; its cost is recorded for the margin', () => {
    const model = rules({
      unit: 'image',
      base: '0.2',
      prompt_per_million_bytes: '0.0005',
      tokens: { input_per_million: '5', output_per_million: '10', image_output_per_million: '30' },
    });
    const q = quoteFor(model, 1);
    assert.equal(q.hold, 200_000_001n, 'a 1-byte prompt at $0.0005/M is 0.5 nanos, rounded up to 1');
    const settled = settleImageCost(model, q, 1, { inputTokens: 12, outputTokens: 4160, outputImageTokens: 4160 });
    assert.equal(settled.cost, q.hold, 'the charge is the quote');
    assert.equal(settled.upstreamCost, 124_860_000n, "the upstream's tokens at its rates, recorded, not charged");
    const flat = rules({ unit: 'image', base: '0.05' });
    const reported = settleImageCost(flat, quoteFor(flat, 1), 1, {
      costNanos: 40_000_000n,
    });
    assert.deepEqual(reported, { cost: 50_000_000n, upstreamCost: 40_000_000n });
  });

  it('settles from the upstream-reported cost with a markup in integer arithmetic, clamped to the hold', () => {
    const model = rules({ unit: 'image', base: '0.1', settle: 'upstream_cost', markup_percent: 12.5 });
    const q = quoteFor(model, 1);
    assert.equal(settleImageCost(model, q, 1, { costNanos: 40_000_000n }).cost, 45_000_000n);
    assert.equal(settleImageCost(model, q, 1, { costNanos: -1n }).cost, q.perImage);
    assert.equal(settleImageCost(model, q, 1, { costNanos: 10n ** 15n }).cost, q.hold);
  });
});

describe('catalog checks of custom-size prices', () => {
  const withPricing = (pricing: Record<string, unknown>) => () =>
    oneModelCatalog({
      params: {
        quality: { type: 'string', enum: ['low', 'high'], default: 'low' },
        image_size: { type: 'string', enum: ['1024x1024'], default: '1024x1024', allow_custom_size: true },
      },
      sizing: {
        style: 'preset_size',
        custom_size: { min_side: 16, max_side: 2048, multiple_of: 16, max_aspect_ratio: 3 },
        table: { '*': { '1024x1024': '1024x1024' } },
      },
      pricing,
    });
  const table = { 'low/1024x1024': '0.01', 'high/1024x1024': '0.1' };
  it('accepts a complete table with the size as the last `by` value', () => {
    assert.doesNotThrow(
      withPricing({
        unit: 'image',
        base: '0.1',
        by: ['quality', 'image_size'],
        table,
        custom_size_megapixel: { low: '0.01', high: '0.1' },
      }),
    );
  });
  it('refuses a table missing a listed size, or the size not last in `by`', () => {
    assert.throws(
      withPricing({
        unit: 'image',
        base: '0.1',
        by: ['quality', 'image_size'],
        table: { 'low/1024x1024': '0.01' },
        custom_size_megapixel: { low: '0.01' },
      }),
      /missing high\/1024x1024/,
    );
    assert.throws(
      withPricing({ unit: 'image', base: '0.1', by: ['image_size', 'quality'], table, custom_size_megapixel: { low: '0.01' } }),
      /custom_size_megapixel needs sizing.custom_size and `image_size` as the last of pricing.by/,
    );
  });
});
