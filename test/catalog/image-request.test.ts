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
  assert.throws(() => normalize(id, body), (error: unknown) => error instanceof GatewayError && error.status === 400 && error.param === param);

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
    assert.deepEqual(request.extra, { steps: 30, style: 'vivid' });
    assert.equal(request.seed, undefined);
    assert.deepEqual(warnings.map((warning) => warning.param).sort(), ['aspect_ratio', 'seed']);
  });

  it('partial_images needs stream and is capped by the model', () => {
    assert.equal(normalize('deepshi-sketch', { partial_images: 2 }).request.partialImages, 0);
    assert.equal(normalize('deepshi-sketch', { partial_images: 2, stream: true }).request.partialImages, 2);
    const capped = normalize('nano-banana-pro', { partial_images: 2, stream: true });
    assert.equal(capped.request.partialImages, 0);
    assert.equal(capped.warnings[0].param, 'partial_images');
  });

  it('multipart strings are coerced only when asked', () => {
    const coerced = normalizeImageRequest({ model: 'deepshi-sketch', prompt: 'p', n: '2', width: '512', height: '512', stream: 'true' }, model('deepshi-sketch'), { coerceStrings: true });
    assert.deepEqual([coerced.request.n, coerced.request.width, coerced.stream], [2, 512, true]);
    rejects('deepshi-sketch', { n: '2' }, 'n');
  });
});
