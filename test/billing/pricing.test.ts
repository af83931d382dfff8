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

describe('quoteImageRequest', () => {
  it('per image by tier: the most specific table key wins', () => {
    assert.equal(usd(quote('gpt-image-1.5', { quality: 'high', image_size: '1536x1024' }).perImage), 0.2);
    assert.equal(usd(quote('gpt-image-1.5', { quality: 'low', image_size: '1024x1024' }).perImage), 0.009);
    // perImage, not hold: nano-banana-pro settles from tokens, so its hold carries extra room (pricing.ts).
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
    buildCatalog({
      version: 1,
      models: [
        {
          id: 'm',
          owned_by: 'x',
          modalities: { input: ['text'], output: ['image'] },
          prompt_max_length: 100,
          max_n: 4,
          output_formats: ['png'],
          native_output_format: 'png',
          streaming: true,
          seed: true,
          params: {
            width: { type: 'integer', min: 64, max: 2048, default: 1024 },
            height: { type: 'integer', min: 64, max: 2048, default: 1024 },
          },
          sizing: { style: 'pixel_dimensions' },
          edit: { supported: false, max_images: 0 },
          pricing,
          routes: [{ provider: 'offline' }],
        },
      ],
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

  it('settles from the upstream-reported cost with a markup in integer arithmetic, clamped to the hold', () => {
    const model = rules({ unit: 'image', base: '0.1', settle: 'upstream_cost', markup_percent: 12.5 });
    const q = quoteFor(model, 1);
    assert.equal(settleImageCost(model, q, 1, { costNanos: 40_000_000n }).cost, 45_000_000n);
    assert.equal(settleImageCost(model, q, 1, { costNanos: -1n }).cost, q.perImage);
    assert.equal(settleImageCost(model, q, 1, { costNanos: 10n ** 15n }).cost, q.hold);
  });
});
