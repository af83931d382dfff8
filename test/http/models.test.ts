import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { testCatalogJson } from '../helpers/test-adapters.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/** GET /v1/models: what a key may call, with parameters, sizes, edit block and price, in one request. */
describe('GET /v1/models', () => {
  let t: TestServer;
  let key: string;

  before(async () => {
    t = await startTestServer({
      catalog: testCatalogJson(),
      env: { DEEPSHI_BANANA_PRO_API_KEY: 'sk-test', DEEPSHI_BANANA_PRO_BASE_URL: 'http://127.0.0.1:9' },
    });
    key = (await t.createAccount('1')).key;
  });
  after(() => t.close());

  it('lists exactly the servable models in the OpenAI list shape, in one request', async () => {
    const page = await t.client(key).models.list();
    const ids = page.data.map((model) => model.id);
    // The offline models, but none whose routes lack credentials or an adapter in this build.
    assert.ok(ids.includes('deepshi-sketch'));
    assert.ok(ids.includes('vendor/sketch'));
    assert.ok(!ids.includes('nano-banana-pro'));
    assert.ok(!ids.includes('gpt-image-2'));
    assert.equal((page as any).body?.object ?? 'list', 'list');
    for (const model of page.data) {
      assert.equal(model.object, 'model');
      assert.equal(typeof model.created, 'number');
      assert.equal(typeof model.owned_by, 'string');
    }
  });

  it('each entry carries parameters (type, allowed values or range, default), sizing, edit, limits and price', async () => {
    const model = (await t.client(key).models.retrieve('deepshi-sketch')) as any;
    const { description, ...width } = model.parameters.width;
    assert.deepEqual(width, { type: 'integer', min: 64, max: 4096, multiple_of: 8, default: 1024 });
    assert.match(description, /pixels/);
    assert.equal(model.parameters.aspect_ratio.type, 'string');
    assert.ok(model.parameters.aspect_ratio.enum.includes('16:9'));
    assert.deepEqual(model.parameters.n, { type: 'integer', min: 1, max: 4, default: 1 });
    assert.deepEqual(model.parameters.output_format.enum, ['png', 'jpeg', 'webp']);
    assert.equal(model.sizing.style, 'pixel_dimensions');
    assert.equal(model.sizing.sizes['1K']['1:1'], '1024x1024');
    assert.deepEqual(model.edit, { supported: true, max_images: 4 });
    assert.equal(model.prompt_max_length, 4000);
    assert.deepEqual(model.modalities, { input: ['text', 'image'], output: ['image'] });
    assert.equal(model.streaming, true);
    assert.equal(model.pricing.currency, 'USD');
    assert.equal(model.pricing.unit, 'image');
    assert.equal(model.pricing.per_image, '0.001');
    assert.equal(model.pricing.settle, 'list');
    assert.match(model.description, /development and testing/);
  });

  it('ids with a slash work percent-encoded, as the SDKs send them', async () => {
    const model = await t.client(key).models.retrieve('vendor/sketch');
    assert.equal(model.id, 'vendor/sketch');
    const raw = await fetch(`${t.url}/v1/models/vendor%2Fsketch`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(raw.status, 200);
  });

  it('an unknown id is 404 model_not_found, as OpenAI answers (the SDK raises NotFoundError)', async () => {
    const response = await fetch(`${t.url}/v1/models/nope`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(response.status, 404);
    assert.equal((await response.json()).error.code, 'model_not_found');
    await assert.rejects(t.client(key).models.retrieve('vendor/nope'), (error: unknown) => {
      assert.ok(error instanceof OpenAI.NotFoundError, String(error));
      assert.equal(error.code, 'model_not_found');
      return true;
    });
    // A model that exists but is not offered on this server (no credentials) is just as unknown to the caller.
    assert.equal((await fetch(`${t.url}/v1/models/gpt-image-2`, { headers: { authorization: `Bearer ${key}` } })).status, 404);
  });

  it('an unknown model in a generation body stays the spec 400 model_not_found', async () => {
    await assert.rejects(t.client(key).images.generate({ model: 'nope', prompt: 'a fox' }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.BadRequestError, String(error));
      assert.equal(error.code, 'model_not_found');
      assert.equal(error.param, 'model');
      return true;
    });
  });
});
