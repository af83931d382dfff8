import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadCatalogFile, type ImageCatalogModel } from '../../src/catalog/catalog.ts';
import { normalizeImageRequest } from '../../src/catalog/image-request.ts';
import { GatewayError } from '../../src/domain/errors.ts';

/** The normaliser: each of Deepshi's four sizing styles, validated against what the model declares. */
const catalog = loadCatalogFile(path.resolve(import.meta.dirname, '../../catalog/models.yaml'));
const model = (id: string) => catalog.get(id) as ImageCatalogModel;
const normalize = (id: string, body: Record<string, unknown>) => normalizeImageRequest({ model: id, prompt: 'p', ...body }, model(id));
const rejects = (id: string, body: Record<string, unknown>, param: string) =>
  assert.throws(
    () => normalize(id, body),
    (error: unknown) => error instanceof GatewayError && error.status === 400 && error.param === param,
  );

describe('normalizeImageRequest', () => {
  it('pixel dimensions (flux-2-pro): width × height as asked, limits from the catalog', () => {
    const { request } = normalize('flux-2-pro', { width: 1920, height: 1088 });
    assert.deepEqual([request.width, request.height], [1920, 1088]);
    rejects('flux-2-pro', { width: 1000, height: 1024 }, 'width'); // not a multiple of 16
    rejects('flux-2-pro', { width: 2048, height: 4096 }, 'width'); // over 4 MP
    assert.deepEqual(normalize('flux-2-pro', { size: '1024x768' }).request.width, 1024);
  });

  it('resolution tier (nano-banana-pro): the size comes from table[resolution][aspect_ratio]', () => {
    const { request } = normalize('nano-banana-pro', { aspect_ratio: '16:9', resolution: '4K' });
    assert.deepEqual([request.width, request.height], [5504, 3072]);
    assert.equal(request.params.resolution, '4K');
    assert.deepEqual([normalize('nano-banana-pro', {}).request.width], [1024]);
    rejects('nano-banana-pro', { resolution: '8K' }, 'resolution');
    rejects('nano-banana-pro', { aspect_ratio: '1:8' }, 'aspect_ratio'); // flash-only ratio
    assert.equal(normalize('nano-banana-2', { aspect_ratio: '1:8', resolution: '512' }).request.height, 1536);
  });

  it('aspect ratio only (grok-imagine)', () => {
    const { request, warnings } = normalize('grok-imagine', { aspect_ratio: '16:9', resolution: '2K', width: 10 });
    assert.ok(request.width > request.height);
    assert.deepEqual(warnings.map((warning) => warning.param).sort(), ['resolution', 'width']);
  });

  it('preset size (seedream-4.5): presets from the table, custom WxH within the rules', () => {
    assert.deepEqual([normalize('seedream-4.5', { image_size: 'landscape_16_9' }).request.width], [2848]);
    assert.deepEqual([normalize('seedream-4.5', { image_size: '2560x1440' }).request.height], [1440]);
    rejects('seedream-4.5', { image_size: '1024x1024' }, 'image_size'); // below the pixel floor
    rejects('seedream-4.5', { image_size: 'huge' }, 'image_size');
    assert.equal(normalize('seedream-4.5', { size: 'auto_4K' }).request.width, 4096);
  });

  it('quality tiers (gpt-image-2) and defaults from the catalog', () => {
    const { request } = normalize('gpt-image-2', {});
    assert.equal(request.params.quality, 'medium');
    rejects('gpt-image-2', { quality: 'ultra' }, 'quality');
    assert.equal(normalize('gpt-image-2', { quality: 'HIGH' }).request.params.quality, 'high');
  });

  it('n is 1–4 and capped by the model (deepshi-image-1 is n: 1)', () => {
    rejects('deepshi-image-1', { n: 2 }, 'n');
    rejects('deepshi-sketch', { n: 5 }, 'n');
    assert.equal(normalize('deepshi-sketch', { n: 4 }).request.n, 4);
  });

  it('unknown fields are forwarded; spec fields the model lacks become warnings; seed is dropped with a warning where unsupported', () => {
    const { request, warnings } = normalize('gpt-image-2', { steps: 30, style: 'vivid', seed: 7, aspect_ratio: '1:1' });
    assert.deepEqual(request.extra, { steps: 30 });
    assert.equal(request.seed, undefined);
    assert.deepEqual(warnings.map((warning) => warning.param).sort(), ['aspect_ratio', 'seed', 'style']);
  });

  it('every OpenAI Images field the model does not declare is ignored and reported back, never forwarded ("auto" is no warning)', () => {
    const openAiFields = {
      quality: 'high',
      background: 'transparent',
      moderation: 'low',
      style: 'natural',
      input_fidelity: 'high',
      complexity: 'low',
      frame_count: 4,
      frame_duration_ms: 100,
      svg: { model: 'x' },
      user: 'end-user-1',
      safety_identifier: 'u1',
      output_compression: 50,
    };
    const { request, warnings } = normalize('nano-banana-pro', { ...openAiFields, output_format: 'webp' });
    assert.deepEqual(request.extra, {});
    assert.deepEqual(
      warnings.map((warning) => warning.param).sort(),
      Object.keys(openAiFields)
        .filter((field) => field !== 'output_compression')
        .sort(),
    );
    // output_compression applies to jpeg/webp: kept for webp (applied or reported later), reported at once for png.
    assert.equal(request.outputCompression, 50);
    const png = normalize('nano-banana-pro', { output_compression: 50 });
    assert.equal(png.request.outputCompression, undefined);
    assert.deepEqual(
      png.warnings.map((warning) => warning.param),
      ['output_compression'],
    );
    rejects('deepshi-sketch', { output_compression: 101, output_format: 'jpeg' }, 'output_compression');
    // A model declaring the field honours it; `auto` on a model without it is what happens anyway.
    const declared = normalize('gpt-image-1.5', { background: 'transparent', moderation: 'low', quality: 'low' });
    assert.deepEqual(declared.warnings, []);
    assert.deepEqual([declared.request.params.background, declared.request.params.moderation], ['transparent', 'low']);
    assert.deepEqual(normalize('nano-banana-pro', { background: 'auto', quality: 'auto', moderation: 'auto' }).warnings, []);
    assert.equal(normalize('deepshi-sketch', { background: 'transparent' }).request.params.background, 'transparent');
  });

  it('size "auto" is accepted by every model as its default size (the model\'s own choice on gpt-image)', () => {
    for (const id of [
      'deepshi-sketch',
      'gpt-image-1.5',
      'gpt-image-2',
      'nano-banana-2',
      'nano-banana-pro',
      'flux-2-pro',
      'seedream-4.5',
      'grok-imagine',
      'grok-imagine-quality',
      'deepshi-banana-pro',
      'deepshi-image-1',
    ]) {
      const auto = normalize(id, { size: 'auto' });
      const plain = normalize(id, {});
      assert.deepEqual(auto.warnings, [], id);
      assert.deepEqual([auto.request.width, auto.request.height], [plain.request.width, plain.request.height], id);
    }
    assert.equal(normalize('gpt-image-2', { size: 'auto' }).request.params.image_size, 'auto');
  });

  it("an edit without a size keeps its input image's shape where the model can", () => {
    const input = (width: number, height: number) => ({ bytes: Buffer.alloc(0), mediaType: 'image/png' as const, width, height });
    const edit = (id: string, body: Record<string, unknown>, image = input(1600, 900)) =>
      normalizeImageRequest({ model: id, prompt: 'p', ...body }, model(id), { inputImages: [image] }).request;
    // Pixel dimensions: the input's ratio at no more than the default pixel count, on the model's multiple.
    const sketch = edit('deepshi-sketch', {});
    assert.deepEqual([sketch.width, sketch.height], [1360, 768]);
    assert.ok(sketch.width * sketch.height <= 1024 * 1024);
    const flux = edit('flux-2-pro', {}, input(900, 1600));
    assert.ok(flux.height > flux.width && flux.width % 16 === 0 && flux.height % 16 === 0, `${flux.width}x${flux.height}`);
    // Aspect-ratio and tier models: the closest ratio they offer.
    assert.equal(edit('nano-banana-pro', {}).params.aspect_ratio, '16:9');
    assert.equal(edit('nano-banana-2', {}, input(400, 3000)).params.aspect_ratio, '1:8');
    assert.equal(edit('grok-imagine', {}, input(1000, 1000)).params.aspect_ratio, '1:1');
    // An asked size wins; size "auto" is the same as none; preset models keep their default.
    assert.deepEqual(
      [edit('deepshi-sketch', { size: '512x512' }).width, edit('nano-banana-pro', { aspect_ratio: '1:1' }).params.aspect_ratio],
      [512, '1:1'],
    );
    assert.deepEqual([edit('deepshi-sketch', { size: 'auto' }).width], [1360]);
    assert.equal(edit('gpt-image-2', {}).params.image_size, 'auto');
    // A shape beyond the model's side limits is clamped to them.
    const wide = edit('deepshi-banana-pro', {}, input(5000, 100));
    assert.deepEqual([wide.width, wide.height], [4096, 256]);
  });

  it('output_format "jpg" is another name for jpeg; the error lists both', () => {
    assert.equal(normalize('deepshi-sketch', { output_format: 'jpg' }).request.outputFormat, 'jpeg');
    assert.throws(
      () => normalize('deepshi-sketch', { output_format: 'gif' }),
      (error: unknown) => error instanceof GatewayError && /png, jpeg \(or jpg\), webp/.test(error.message),
    );
  });

  it('partial_images needs stream and is capped by the model', () => {
    assert.equal(normalize('deepshi-sketch', { partial_images: 2 }).request.partialImages, 0);
    assert.equal(normalize('deepshi-sketch', { partial_images: 2, stream: true }).request.partialImages, 2);
    const capped = normalize('nano-banana-pro', { partial_images: 2, stream: true });
    assert.equal(capped.request.partialImages, 0);
    assert.equal(capped.warnings[0].param, 'partial_images');
  });

  it('multipart strings are coerced only when asked', () => {
    const coerced = normalizeImageRequest(
      { model: 'deepshi-sketch', prompt: 'p', n: '2', width: '512', height: '512', stream: 'true' },
      model('deepshi-sketch'),
      { coerceStrings: true },
    );
    assert.deepEqual([coerced.request.n, coerced.request.width, coerced.stream], [2, 512, true]);
    rejects('deepshi-sketch', { n: '2' }, 'n');
  });
});
