import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { toFile } from 'openai';
import { parse as parseYaml } from 'yaml';
import { probeImage } from '../../src/images/probe.ts';
import { renderSketch } from '../../src/images/sketch.ts';
import { ArkImageAdapter } from '../../src/providers/ark/ark-image-adapter.ts';
import { ProviderError, type NormalizedImageRequest } from '../../src/providers/types.ts';
import { expectBalance, expectError, failsWith, spent, usageWithoutTokens } from '../helpers/assertions.ts';
import { startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';
import { ArkSimulator } from '../simulators/ark-simulator.ts';
import { solidImage } from '../simulators/recording-server.ts';

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');
const TIMEOUTS = { connect_ms: 500, first_byte_ms: 2_000, total_ms: 4_000 };

/** The shipped catalog with tiny timeouts on the Ark route (no FAL_KEY is set, so seedream-4.5 runs on Ark alone). */
function arkCatalog(): string {
  const catalog = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
  const seedream = catalog.models.find((model: { id: string }) => model.id === 'seedream-4.5');
  seedream.routes.find((route: { provider: string }) => route.provider === 'ark').options = { timeouts: TIMEOUTS };
  return JSON.stringify(catalog);
}

describe('BytePlus Ark adapter (seedream-4.5) against the Ark simulator', () => {
  let sim: ArkSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    sim = await new ArkSimulator().start();
    t = await startTestServer({ env: { ARK_API_KEY: sim.key, ARK_BASE_URL: sim.url }, catalog: arkCatalog() });
    account = await t.createAccount('10');
  });
  after(async () => {
    await t.close();
    await sim.close();
  });
  beforeEach(() => sim.reset());

  it('a default request: the exact Ark body (watermark off, b64, no sequential), a 2K jpeg, $0.04', async () => {
    const start = await t.balance(account.accountId);
    const { data: result, response } = await t
      .client(account.key)
      .images.generate({ model: 'seedream-4.5', prompt: 'a koi pond' })
      .withResponse();
    const [call] = sim.calls();
    assert.equal(sim.calls().length, 1);
    assert.equal(call.method, 'POST');
    assert.equal(call.headers.authorization, 'Bearer sk-sim');
    assert.equal(call.headers['content-type'], 'application/json');
    assert.deepEqual(call.body, {
      model: 'seedream-4-5-251128',
      prompt: 'a koi pond',
      size: '2K',
      response_format: 'b64_json',
      watermark: false,
      sequential_image_generation: 'disabled',
    });
    assert.equal((result as any).size, '2048x2048');
    const probe = probeImage(Buffer.from(result.data![0].b64_json!, 'base64'))!;
    assert.deepEqual([probe.format, probe.width, probe.height], ['jpeg', 2048, 2048]);
    assert.equal((result.usage as any).cost.total_cost, 0.04);
    assert.equal(response.headers.get('x-request-cost'), '0.04');
    assert.equal(await spent(t, account, start), 40_000_000n);
  });

  for (const [imageSize, size, expected] of [
    ['landscape_16_9', '2848x1600', '2848x1600'],
    ['portrait_4_3', '1728x2304', '1728x2304'],
    ['2560x1440', '2560x1440', '2560x1440'],
    ['auto_4K', '4K', '4096x4096'],
  ] as const) {
    it(`image_size ${imageSize} → size "${size}"`, async () => {
      const result = await t
        .client(account.key)
        .images.generate(withExtras({ model: 'seedream-4.5', prompt: 'x' }, { image_size: imageSize }));
      assert.equal(sim.calls()[0].body.size, size);
      assert.equal((result as any).size, expected);
    });
  }

  it('watermark: true is sent as asked; the seed is not sent and is reported as unsupported', async () => {
    const result = (await t
      .client(account.key)
      .images.generate(withExtras({ model: 'seedream-4.5', prompt: 'x' }, { watermark: true, seed: 5 }))) as any;
    assert.equal(sim.calls()[0].body.watermark, true);
    assert.ok(!('seed' in sim.calls()[0].body));
    assert.deepEqual(
      result.warnings.map((warning: { param: string; type: string }) => [warning.param, warning.type]),
      [['seed', 'unsupported']],
    );
  });

  it('forwards harmless extras; owned fields and URL extras are dropped with warnings', async () => {
    const result = (await t.client(account.key).images.generate(
      withExtras(
        { model: 'seedream-4.5', prompt: 'x' },
        {
          optimize_prompt_options: { mode: 'standard' },
          sequential_image_generation: 'auto',
          callback_url: 'https://attacker.example/cb',
        },
      ),
    )) as any;
    const body = sim.calls()[0].body;
    assert.deepEqual(body.optimize_prompt_options, { mode: 'standard' });
    assert.equal(body.sequential_image_generation, 'disabled');
    assert.ok(!('callback_url' in body));
    assert.deepEqual(result.warnings.map((warning: { param: string }) => warning.param).sort(), [
      'callback_url',
      'sequential_image_generation',
    ]);
  });

  it('n: 3 → three single-image calls, three images, $0.12', async () => {
    const start = await t.balance(account.accountId);
    const result = await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'three cats', n: 3 });
    assert.equal(sim.calls().length, 3);
    assert.equal(result.data!.length, 3);
    assert.equal(await spent(t, account, start), 120_000_000n);
  });

  for (const [fault, pattern] of [
    ['input_sensitive', /refused the request \(prompt or input image\)/],
    ['output_sensitive', /refused the generated image/],
    ['item_error', /refused the generated image/],
  ] as const) {
    it(`${fault} → 400 content_policy_violation, called once, no charge`, async () => {
      const start = await t.balance(account.accountId);
      sim.fault = fault;
      const error = await expectError(
        t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }),
        400,
        'content_policy_violation',
      );
      assert.match(error.message, pattern);
      assert.equal(sim.calls().length, 1);
      await expectBalance(t, account, start);
    });
  }

  it('InvalidParameter on size → 400 invalid_value with param image_size, no charge', async () => {
    const start = await t.balance(account.accountId);
    sim.fault = 'invalid_size';
    const error = await expectError(
      t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }),
      400,
      'invalid_value',
      'image_size',
    );
    assert.match(error.message, /size/);
    await expectBalance(t, account, start);
  });

  for (const [fault, status, code, calls] of [
    ['http500', 503, 'upstream_error', 2],
    ['http429', 429, 'rate_limit_exceeded', 2],
    ['hang', 502, 'upstream_error', 1],
    ['reset', 502, 'upstream_error', 1],
    ['malformed', 502, 'upstream_error', 1],
    ['oversized', 502, 'upstream_error', 1],
    ['no_image', 502, 'upstream_error', 1],
  ] as const) {
    it(`${fault} → ${status}, called ${calls}× (never repeated once a generation may have run), no charge`, async () => {
      const start = await t.balance(account.accountId);
      sim.fault = fault;
      await expectError(t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }), status, code);
      assert.equal(sim.calls().length, calls);
      await expectBalance(t, account, start);
    });
  }

  describe('adapter direct', () => {
    const request = (overrides: Partial<NormalizedImageRequest> = {}): NormalizedImageRequest => ({
      model: 'seedream-4.5',
      prompt: 'p',
      n: 1,
      seed: undefined,
      width: 2048,
      height: 2048,
      params: { image_size: 'square_hd', watermark: false },
      outputFormat: undefined,
      partialImages: 0,
      extra: {},
      inputImages: [],
      ...overrides,
    });
    const route = () => ({ upstreamModel: 'seedream-4-5-251128', baseUrl: sim.url, credential: sim.key, options: { timeouts: TIMEOUTS } });
    const signal = () => ({ signal: AbortSignal.timeout(5_000) });

    it('edits send the references as data URIs in `image`; the b64 comes back untouched; usage.generated_images is billedImages', async () => {
      const reference = await renderSketch({ prompt: 'ref', seed: 1, width: 64, height: 64, format: 'png' });
      const result = await new ArkImageAdapter().generate(
        request({ inputImages: [{ bytes: reference, mediaType: 'image/png', width: 64, height: 64 }] }),
        route(),
        signal(),
      );
      const body = sim.calls()[0].body;
      assert.deepEqual(body.image, [`data:image/png;base64,${reference.toString('base64')}`]);
      assert.equal(body.size, '2048x2048');
      assert.equal(result.images[0].mediaType, 'image/jpeg');
      assert.deepEqual(result.usage, { billedImages: 1 });
    });

    it('a generated_images count above what was asked is ignored', async () => {
      sim.fault = 'usage_lies';
      const result = await new ArkImageAdapter().generate(request(), route(), signal());
      assert.equal(result.images.length, 1);
      assert.equal(result.usage, undefined);
    });

    it('a wrong key → misconfigured; an unknown model → misconfigured; never leaks the key', async () => {
      for (const target of [
        { ...route(), credential: 'sk-wrong-0123456789' },
        { ...route(), upstreamModel: 'seedream-9' },
      ]) {
        await assert.rejects(new ArkImageAdapter().generate(request(), target, signal()), (error: unknown) => {
          assert.ok(error instanceof ProviderError && error.kind === 'misconfigured', String(error));
          assert.doesNotMatch(error.message, /sk-wrong/);
          return true;
        });
      }
    });

    it('n: 2 handed to Ark (failover behind a multi-image route) becomes two calls; a failure after one image is accepted', async () => {
      const result = await new ArkImageAdapter().generate(request({ n: 2 }), route(), signal());
      assert.equal(sim.calls().length, 2);
      assert.equal(result.images.length, 2);
      assert.equal(result.imagesDelivered, true);
    });
  });
});

describe('POST /v1/images/edits for seedream-4.5 on the Ark route (openai SDK → Ark, fal not configured)', () => {
  let sim: ArkSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };
  let png: Buffer;
  let jpeg: Buffer;

  before(async () => {
    sim = await new ArkSimulator().start();
    // Only the Ark credentials: the fal route (first in the catalog) is not configured, so Ark serves the edit.
    t = await startTestServer({ env: { ARK_API_KEY: sim.key, ARK_BASE_URL: sim.url }, catalog: arkCatalog() });
    account = await t.createAccount('10');
    png = await renderSketch({ prompt: 'ref', seed: 1, width: 64, height: 48, format: 'png' });
    jpeg = await solidImage(80, 60, 'jpeg', 7);
  });
  after(async () => {
    await t.close();
    await sim.close();
  });
  beforeEach(() => sim.reset());

  const dataUri = (type: string, bytes: Buffer) => `data:${type};base64,${bytes.toString('base64')}`;

  async function editAndCheck(prompt: string, files: Array<{ bytes: Buffer; name: string; type: string }>, n: number) {
    const start = await t.balance(account.accountId);
    const uploads = await Promise.all(files.map((file) => toFile(file.bytes, file.name, { type: file.type })));
    const { data: result, response } = await t
      .client(account.key)
      .images.edit({ model: 'seedream-4.5', prompt, image: uploads.length === 1 ? uploads[0] : uploads, n })
      .withResponse();

    // One synchronous Ark call per image, each with the Bearer key and exactly this body.
    assert.equal(sim.calls().length, n);
    for (const call of sim.calls()) {
      assert.equal(call.method, 'POST');
      assert.equal(call.headers.authorization, 'Bearer sk-sim');
      assert.equal(call.headers['content-type'], 'application/json');
      assert.deepEqual(call.body, {
        model: 'seedream-4-5-251128',
        prompt,
        size: '2K',
        response_format: 'b64_json',
        watermark: false,
        sequential_image_generation: 'disabled',
        image: files.map((file) => dataUri(file.type, file.bytes)),
      });
    }
    // The whole ImageResponse: Ark's b64 jpegs as answered (untouched; the calls run concurrently, so in any
    // order), the 2K size, $0.04 per image.
    const cost = 0.04 * n;
    assert.equal(typeof (result as any).created, 'number');
    const images = result.data!.map((item) => item.b64_json);
    assert.deepEqual([...images].sort(), [...sim.sentImages].sort());
    assert.deepEqual(
      { ...result, created: 0, data: result.data!.map((item) => ({ ...item, b64_json: '…' })) },
      {
        created: 0,
        model: 'seedream-4.5',
        size: '2048x2048',
        output_format: 'jpeg',
        data: Array.from({ length: n }, (_, index) => ({ b64_json: '…', index })),
        usage: usageWithoutTokens(cost),
      },
    );
    assert.equal(response.headers.get('x-request-cost'), String(cost));
    assert.equal(await spent(t, account, start), 40_000_000n * BigInt(n));
  }

  it('one file → `image` [its data URI], model, size 2K, watermark false, b64_json; the jpeg as sent; $0.04 charged', async () => {
    await editAndCheck('make it night', [{ bytes: png, name: 'a.png', type: 'image/png' }], 1);
  });

  it('two files (image[]) → `image` holds both data URIs in order, typed from their bytes; $0.04 charged', async () => {
    await editAndCheck(
      'put the cat in the box',
      [
        { bytes: png, name: 'a.png', type: 'image/png' },
        { bytes: jpeg, name: 'b.jpg', type: 'image/jpeg' },
      ],
      1,
    );
  });

  it('two files with n: 2 → two Ark calls, each with both references; two images, $0.08 charged', async () => {
    await editAndCheck(
      'two variants',
      [
        { bytes: png, name: 'a.png', type: 'image/png' },
        { bytes: jpeg, name: 'b.jpg', type: 'image/jpeg' },
      ],
      2,
    );
  });

  it('an edit Ark refuses (400 InputTextSensitiveContentDetected) → 400 content_policy_violation, balance unchanged', async () => {
    const start = await t.balance(account.accountId);
    sim.fault = 'input_sensitive';
    await failsWith(
      async () =>
        t
          .client(account.key)
          .images.edit({ model: 'seedream-4.5', prompt: 'forbidden', image: await toFile(png, 'a.png', { type: 'image/png' }) }),
      { status: 400, code: 'content_policy_violation' },
    );
    assert.equal(sim.calls().length, 1);
    await expectBalance(t, account, start);
  });
});
