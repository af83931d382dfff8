import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { probeImage } from '../../src/images/probe.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';

/** POST /v1/images/generations with the official openai SDK against the offline model. */
describe('POST /v1/images/generations', () => {
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    t = await startTestServer();
    account = await t.createAccount('10');
  });
  after(() => t.close());

  it('returns a PNG whose decoded size equals `size`, with created, model, index and the billed cost', async () => {
    const { data: result, response } = await t
      .client(account.key)
      .images.generate({ model: 'deepshi-sketch', prompt: 'a lighthouse at dusk' })
      .withResponse();
    assert.equal(result.data!.length, 1);
    const bytes = Buffer.from(result.data![0].b64_json!, 'base64');
    assert.deepEqual([...bytes.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    const probe = probeImage(bytes)!;
    assert.equal((result as any).size, `${probe.width}x${probe.height}`);
    assert.equal((result as any).size, '1024x1024');
    assert.equal((result as any).model, 'deepshi-sketch');
    assert.equal((result.data![0] as any).index, 0);
    assert.ok(Math.abs(result.created - Date.now() / 1000) < 300);
    assert.equal((result.usage as any).cost.total_cost, 0.001);
    assert.equal(response.headers.get('x-request-cost'), '0.001');
    assert.match(response.headers.get('x-request-id')!, /^req_/);
  });

  it('n: 4 returns four distinct images, indexed 0–3, and charges four images', async () => {
    const before = await t.balance(account.accountId);
    const result = await t
      .client(account.key)
      .images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'four kites', n: 4 }, { seed: 9 }));
    assert.deepEqual(
      result.data!.map((item: any) => item.index),
      [0, 1, 2, 3],
    );
    assert.equal(new Set(result.data!.map((item) => item.b64_json)).size, 4);
    assert.equal((result.usage as any).cost.total_cost, 0.004);
    const after = await t.balance(account.accountId);
    assert.equal(Math.round((Number(before) - Number(after)) * 1e9), 4_000_000);
  });

  for (const [format, magic] of [
    ['jpeg', [0xff, 0xd8, 0xff]],
    ['webp', [0x52, 0x49, 0x46, 0x46]],
    ['png', [0x89, 0x50, 0x4e, 0x47]],
  ] as const) {
    it(`output_format ${format} really is ${format}`, async () => {
      const result = await t
        .client(account.key)
        .images.generate({ model: 'deepshi-sketch', prompt: 'a bowl of fruit', output_format: format });
      const bytes = Buffer.from(result.data![0].b64_json!, 'base64');
      assert.deepEqual([...bytes.subarray(0, magic.length)], [...magic]);
      assert.equal(probeImage(bytes)!.format, format);
    });
  }

  it("response_format 'url' returns an inline data: URI", async () => {
    const result = await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'a paper boat', response_format: 'url' });
    const url = result.data![0].url!;
    assert.match(url, /^data:image\/png;base64,/);
    assert.equal(result.data![0].b64_json, undefined);
    assert.ok(probeImage(Buffer.from(url.split(',')[1], 'base64')));
  });

  it('equal seeds give identical bytes; another seed gives another image', async () => {
    const client = t.client(account.key);
    const one = await client.images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'a green valley' }, { seed: 42 }));
    const two = await client.images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'a green valley' }, { seed: 42 }));
    const three = await client.images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'a green valley' }, { seed: 43 }));
    assert.equal(one.data![0].b64_json, two.data![0].b64_json);
    assert.notEqual(one.data![0].b64_json, three.data![0].b64_json);
  });

  it('width/height give exactly that size; aspect_ratio + resolution use the published size table', async () => {
    const client = t.client(account.key);
    const wide = (await client.images.generate({ model: 'deepshi-sketch', prompt: 'x', width: 640, height: 360 } as any)) as any;
    assert.equal(wide.size, '640x360');
    assert.equal(probeImage(Buffer.from(wide.data[0].b64_json, 'base64'))!.width, 640);
    const tier = (await client.images.generate({
      model: 'deepshi-sketch',
      prompt: 'x',
      aspect_ratio: '16:9',
      resolution: '2K',
    } as any)) as any;
    const card = (await client.models.retrieve('deepshi-sketch')) as any;
    assert.equal(tier.size, card.sizing.sizes['2K']['16:9']);
    const probe = probeImage(Buffer.from(tier.data[0].b64_json, 'base64'))!;
    assert.equal(`${probe.width}x${probe.height}`, tier.size);
  });

  it("OpenAI's `size` maps onto width/height for pixel-dimension models", async () => {
    const result = (await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'x', size: '512x768' as any })) as any;
    assert.equal(result.size, '512x768');
  });

  it('a spec field the model does not support is ignored and reported as a warning (body and header)', async () => {
    const { data, response } = await t
      .client(account.key)
      .images.generate({ model: 'deepshi-sketch', prompt: 'a cat', quality: 'high', image_size: 'auto_2K' } as any)
      .withResponse();
    const warnings = (data as any).warnings as Array<{ param: string; message: string }>;
    assert.deepEqual(warnings.map((warning) => warning.param).sort(), ['image_size', 'quality']);
    assert.match(warnings[0].message, /deepshi-sketch does not support/);
    assert.equal(response.headers.get('x-deepshi-warnings'), 'image_size,quality');
  });

  it('the body says what the images are, as OpenAI does: output_format, size, and background where the model takes it; jpg is jpeg', async () => {
    const client = t.client(account.key);
    const png = (await client.images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'x' }, { size: '64x64' }))) as any;
    assert.deepEqual([png.output_format, png.size, png.background, png.quality], ['png', '64x64', undefined, undefined]);
    const jpg = (await client.images.generate(
      withExtras({ model: 'deepshi-sketch', prompt: 'x', background: 'opaque' }, { size: '64x64', output_format: 'jpg' }),
    )) as any;
    assert.deepEqual([jpg.output_format, jpg.background], ['jpeg', 'opaque']);
    assert.equal(probeImage(Buffer.from(jpg.data[0].b64_json, 'base64'))!.format, 'jpeg');
    assert.equal(jpg.warnings, undefined);
  });

  it('size "auto" (an SDK value) is the model\'s default size, with no warning', async () => {
    const result = (await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'x', size: 'auto' })) as any;
    assert.equal(result.size, '1024x1024');
    assert.equal(result.warnings, undefined);
  });

  it('background "transparent" on deepshi-sketch: the scene without its sky, on real transparency (png and webp)', async () => {
    for (const format of ['png', 'webp'] as const) {
      const result = (await t.client(account.key).images.generate({
        model: 'deepshi-sketch',
        prompt: 'a red fox',
        background: 'transparent',
        output_format: format,
        size: '256x256' as any,
      })) as any;
      assert.equal(result.background, 'transparent');
      assert.equal(result.warnings, undefined);
      const { data, info } = await sharp(Buffer.from(result.data[0].b64_json, 'base64'))
        .ensureAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      assert.equal(info.channels, 4);
      let clear = 0;
      for (let alpha = 3; alpha < data.length; alpha += 4) if (data[alpha] < 32) clear++;
      assert.ok(clear > (info.width * info.height) / 5, `${format}: the sky is transparent (${clear} clear pixels)`);
    }
    const opaque = (await t
      .client(account.key)
      .images.generate({ model: 'deepshi-sketch', prompt: 'a red fox', size: '256x256' as any })) as any;
    assert.equal((await sharp(Buffer.from(opaque.data[0].b64_json, 'base64')).metadata()).hasAlpha, false);
    // jpeg has no alpha: drawn opaque and said so.
    const jpeg = (await t.client(account.key).images.generate({
      model: 'deepshi-sketch',
      prompt: 'x',
      background: 'transparent',
      output_format: 'jpeg',
      size: '64x64' as any,
    })) as any;
    assert.deepEqual(
      jpeg.warnings.map((warning: { param: string }) => warning.param),
      ['background'],
    );
    assert.equal(jpeg.background, undefined);
  });

  it('output_compression is applied to jpeg and webp (lower = smaller), and reported back where it cannot be', async () => {
    const client = t.client(account.key);
    const sizeOf = async (format: 'jpeg' | 'webp', compression: number) => {
      const result = (await client.images.generate({
        model: 'deepshi-sketch',
        prompt: 'a harbour at noon',
        seed: 7,
        output_format: format,
        output_compression: compression,
        size: '512x512',
      } as any)) as any;
      assert.equal(result.warnings, undefined);
      return Buffer.from(result.data[0].b64_json, 'base64').length;
    };
    for (const format of ['jpeg', 'webp'] as const) assert.ok((await sizeOf(format, 10)) < (await sizeOf(format, 100)), format);
    const { data, response } = await client.images
      .generate({ model: 'deepshi-sketch', prompt: 'x', output_compression: 50, size: '64x64' } as any)
      .withResponse();
    assert.deepEqual(
      ((data as any).warnings as Array<{ param: string }>).map((warning) => warning.param),
      ['output_compression'],
    );
    assert.equal(response.headers.get('x-deepshi-warnings'), 'output_compression');
  });

  it('OpenAI fields the model does not take (style, moderation, quality, user…) are ignored and reported, in the body and the header', async () => {
    const { data, response } = await t
      .client(account.key)
      .images.generate({
        model: 'deepshi-sketch',
        prompt: 'x',
        style: 'vivid',
        moderation: 'low',
        quality: 'high',
        user: 'u-1',
        size: '64x64' as any,
      })
      .withResponse();
    const params = ((data as any).warnings as Array<{ param: string }>).map((warning) => warning.param).sort();
    assert.deepEqual(params, ['moderation', 'quality', 'style', 'user']);
    assert.deepEqual(response.headers.get('x-deepshi-warnings')!.split(',').sort(), params);
  });

  it('accepts every x-stainless header, OpenAI-Organization and OpenAI-Project, and requests without them', async () => {
    const response = await fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${account.key}`,
        'content-type': 'application/json',
        'openai-organization': 'org-x',
        'openai-project': 'proj-x',
        'x-stainless-retry-count': '0',
        'x-stainless-lang': 'js',
      },
      body: JSON.stringify({ model: 'deepshi-sketch', prompt: 'x', response_format: 'b64_json' }),
    });
    assert.equal(response.status, 200);
  });
});

/** output_compression when the gateway transcodes (the scripted upstream always answers PNG). */
describe('output_compression on a transcoded image', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ catalog: testCatalogJson(), adapters: [new ScriptedAdapter()] });
  });
  after(() => t.close());

  it('is applied by the transcode, so it is no warning', async () => {
    const account = await t.createAccount('1');
    const bytesAt = async (compression: number) => {
      const result = (await t.client(account.key).images.generate({
        model: 'scripted-image',
        prompt: 'a busy market',
        output_format: 'jpeg',
        output_compression: compression,
        size: '512x512',
      } as any)) as any;
      assert.equal(result.warnings, undefined);
      assert.equal(result.output_format, 'jpeg');
      return Buffer.from(result.data[0].b64_json, 'base64').length;
    };
    assert.ok((await bytesAt(5)) < (await bytesAt(100)));
  });
});
