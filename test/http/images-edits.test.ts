import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import sharp from 'sharp';
import { probeImage } from '../../src/images/probe.ts';
import { renderSketch } from '../../src/images/sketch.ts';
import { ProviderError, type ImageCallContext, type NormalizedImageRequest } from '../../src/providers/types.ts';
import { expectBalance } from '../helpers/assertions.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { registerDeepshiServer } from '../helpers/documented-http.ts';
import { rawRequest, startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';

/** Records what the pipeline hands the upstream, so tests see the reference images exactly as parsed. */
class RecordingAdapter extends ScriptedAdapter {
  requests: NormalizedImageRequest[] = [];
  override async generate(request: NormalizedImageRequest, route: unknown, context: ImageCallContext) {
    this.requests.push(request);
    return super.generate(request, route, context);
  }
}

/** Test models: input-image pricing both ways, a model that does not edit, a 2-image cap, a scripted upstream. */
function editCatalog(): string {
  const catalog = JSON.parse(testCatalogJson());
  const sketch = catalog.models.find((model: { id: string }) => model.id === 'deepshi-sketch');
  const clone = (id: string, changes: Record<string, unknown>) => ({ ...structuredClone(sketch), id, name: id, ...changes });
  catalog.models.push(
    clone('edit-per-image', { pricing: { unit: 'image', base: '0.01', input_image: '0.002' }, edit: { supported: true, max_images: 3 } }),
    clone('edit-megapixel', { pricing: { unit: 'megapixel', first: '0.03', additional: '0.015', input: '0.015' } }),
    clone('no-edit', { edit: { supported: false, max_images: 0 } }),
    clone('scripted-edit', {
      max_partial_images: 0,
      pricing: { unit: 'image', base: '0.01', input_image: '0.005' },
      edit: { supported: true, max_images: 2 },
      routes: [{ provider: 'scripted' }],
    }),
  );
  return JSON.stringify(catalog);
}

const MiB = 1024 * 1024;
/** A Blob of these bytes (copied into plain ArrayBuffers, which is what the DOM typings want). */
const blob = (parts: Array<Buffer | string>) => new Blob(parts.map((part) => (typeof part === 'string' ? part : new Uint8Array(part))));
const LIMITS = { file: 2 * MiB, request: 5 * MiB, pixels: 5_000_000 };

const png = (width = 320, height = 240, seed = 1) => renderSketch({ prompt: 'reference', seed, width, height, format: 'png' });
/** A PNG whose IHDR claims `width`×`height`, with no image data at all: the shape of a decompression bomb's header. */
function pngHeaderClaiming(width: number, height: number): Buffer {
  const header = Buffer.alloc(33);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(header, 0);
  header.writeUInt32BE(13, 8);
  header.write('IHDR', 12, 'latin1');
  header.writeUInt32BE(width, 16);
  header.writeUInt32BE(height, 20);
  header.set([8, 6, 0, 0, 0], 24); // 8-bit RGBA: 40 GB once decoded at 100000²
  return header;
}

describe('POST /v1/images/edits', () => {
  let t: TestServer;
  let account: { accountId: string; key: string };
  const upstream = new RecordingAdapter();
  let reference: Buffer;

  before(async () => {
    t = await startTestServer({
      catalog: editCatalog(),
      adapters: [upstream],
      env: {
        DEEPSHI_EDIT_MAX_FILE_BYTES: String(LIMITS.file),
        DEEPSHI_EDIT_MAX_REQUEST_BYTES: String(LIMITS.request),
        DEEPSHI_EDIT_MAX_PIXELS: String(LIMITS.pixels),
        DEEPSHI_KEEPALIVE_MS: '40',
      },
    });
    account = await t.createAccount('10');
    reference = await png();
  });
  after(() => t.close());

  /** An SDK client whose requests' form field names are recorded (the spec validation stays on). */
  function recordingClient(key: string, fieldNames: string[][]): OpenAI {
    return new OpenAI({
      apiKey: key,
      baseURL: `${t.url}/v1`,
      maxRetries: 0,
      fetch: async (input: string | URL | Request, init?: RequestInit) => {
        if (init?.body instanceof FormData) fieldNames.push([...init.body.keys()]);
        return fetch(input, init);
      },
    });
  }

  /** A hand-built form, for what the SDK cannot send. */
  async function postForm(key: string | undefined, build: (form: FormData) => void) {
    const form = new FormData();
    build(form);
    return rawRequest(t.url, {
      path: '/v1/images/edits',
      method: 'POST',
      headers: key ? { authorization: `Bearer ${key}` } : {},
      body: form,
    });
  }

  describe('with the openai SDK', () => {
    it('one file goes as `image`; the edit has the generation shape and its exact cost', async () => {
      const fields: string[][] = [];
      const before = await t.balance(account.accountId);
      const { data: result, response } = await recordingClient(account.key, fields)
        .images.edit({ model: 'deepshi-sketch', prompt: 'make it night', image: await toFile(reference, 'ref.png', { type: 'image/png' }) })
        .withResponse();
      assert.deepEqual(fields, [['model', 'prompt', 'image']]);
      assert.equal(result.data!.length, 1);
      const bytes = Buffer.from(result.data![0].b64_json!, 'base64');
      // No size asked for: the reference's 4:3 shape, at no more pixels than the default 1024x1024 (multiples of 8).
      assert.deepEqual(probeImage(bytes), { format: 'png', width: 1176, height: 880 });
      assert.equal((result as any).size, '1176x880');
      assert.equal((result as any).output_format, 'png');
      assert.equal((result as any).model, 'deepshi-sketch');
      assert.equal((result.data![0] as any).index, 0);
      assert.equal((result.usage as any).cost.total_cost, 0.001);
      assert.equal(response.headers.get('x-request-cost'), '0.001');
      assert.equal(Math.round((Number(before) - Number(await t.balance(account.accountId))) * 1e9), 1_000_000);
    });

    it('several files go as `image[]` and reach the upstream in order, byte for byte, typed from their bytes', async () => {
      const fields: string[][] = [];
      const second = await sharp(await png(200, 100, 2))
        .jpeg()
        .toBuffer();
      upstream.requests = [];
      const result = await recordingClient(account.key, fields).images.edit({
        model: 'scripted-edit',
        prompt: 'combine them',
        // The declared types are wrong on purpose: the server reads the bytes, not the part's Content-Type.
        image: [await toFile(reference, 'one.png', { type: 'image/jpeg' }), await toFile(second, 'two.jpg', { type: 'image/png' })],
      });
      assert.deepEqual(fields, [['model', 'prompt', 'image[]', 'image[]']]);
      assert.equal(result.data!.length, 1);
      const [request] = upstream.requests;
      assert.equal(request.inputImages.length, 2);
      assert.ok(request.inputImages[0].bytes.equals(reference));
      assert.ok(request.inputImages[1].bytes.equals(second));
      assert.deepEqual(
        request.inputImages.map(({ mediaType, width, height, filename }) => ({ mediaType, width, height, filename })),
        [
          { mediaType: 'image/png', width: 320, height: 240, filename: 'one.png' },
          { mediaType: 'image/jpeg', width: 200, height: 100, filename: 'two.jpg' },
        ],
      );
      assert.equal(request.prompt, 'combine them');
    });

    it('takes the generation fields as strings (n, seed, sizing, output_format, response_format, extras)', async () => {
      upstream.requests = [];
      const webp = await sharp(reference).webp().toBuffer();
      const result = await t.client(account.key).images.edit(
        withExtras(
          {
            model: 'scripted-edit',
            prompt: 'p',
            image: await toFile(webp, 'w.webp'),
            n: 2,
            response_format: 'url' as const,
            output_format: 'webp' as const,
          },
          { seed: 42, width: 512, height: 256, style_strength: 0.5 },
        ),
      );
      const [request] = upstream.requests;
      assert.equal(request.n, 2);
      assert.equal(request.seed, 42);
      assert.deepEqual([request.width, request.height], [512, 256]);
      assert.equal(request.outputFormat, 'webp');
      assert.deepEqual(request.extra, { style_strength: '0.5' }, 'extras are forwarded as the strings the form carried');
      assert.equal(request.inputImages[0].mediaType, 'image/webp');
      assert.equal(result.data!.length, 2);
      assert.match(result.data![0].url!, /^data:image\/webp;base64,/);
      assert.equal((result.usage as any).cost.total_cost, 0.025, '2 × $0.01 + 1 input image × $0.005');
    });

    it('stream: true sends image_edit.partial_image events and image_edit.completed', async () => {
      const stream = await t.client(account.key).images.edit(
        withExtras(
          {
            model: 'deepshi-sketch',
            prompt: 'a comet',
            image: await toFile(reference, 'r.png'),
            stream: true as const,
            partial_images: 2,
          },
          { seed: 3, width: 256, height: 256 },
        ),
      );
      const events: any[] = [];
      for await (const event of stream) events.push(event);
      assert.deepEqual(
        events.map((event) => event.type),
        ['image_edit.partial_image', 'image_edit.partial_image', 'image_edit.completed'],
      );
      assert.deepEqual(
        events.slice(0, 2).map((event) => event.partial_image_index),
        [0, 1],
      );
      const final = events[2];
      assert.equal(final.size, '256x256');
      assert.equal(final.usage.cost.total_cost, 0.001);
      const nonStreamed = await t
        .client(account.key)
        .images.edit(
          withExtras(
            { model: 'deepshi-sketch', prompt: 'a comet', image: await toFile(reference, 'r.png') },
            { seed: 3, width: 256, height: 256 },
          ),
        );
      assert.equal(final.b64_json, nonStreamed.data![0].b64_json, 'the streamed edit equals the non-streamed one');
    });

    it('a slow streamed edit receives `: keepalive` comments first', async () => {
      upstream.behaviour = { delayMs: 200 };
      const form = new FormData();
      form.append('model', 'scripted-edit');
      form.append('prompt', 'slow');
      form.append('stream', 'true');
      form.append('image[]', blob([reference]), 'r.png');
      const response = await fetch(`${t.url}/v1/images/edits`, {
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}` },
        body: form,
      });
      upstream.behaviour = {};
      const text = await response.text();
      assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
      assert.ok(text.indexOf(': keepalive\n\n') >= 0 && text.indexOf(': keepalive\n\n') < text.indexOf('event: '));
      assert.match(text, /event: image_edit.completed\ndata: \{"type":"image_edit.completed"/);
    });
  });

  describe('deepshi-sketch edits offline, deterministically', () => {
    const edit = async (image: Buffer, prompt: string, seed: number) =>
      (
        await t
          .client(account.key)
          .images.edit(
            withExtras({ model: 'deepshi-sketch', prompt, image: await toFile(image, 'r.png') }, { seed, width: 256, height: 256 }),
          )
      ).data![0].b64_json!;

    it('same image, prompt and seed → the same bytes; any of the three changed → different bytes', async () => {
      const first = await edit(reference, 'make it autumn', 7);
      assert.equal(await edit(reference, 'make it autumn', 7), first);
      assert.notEqual(await edit(reference, 'make it autumn', 8), first);
      assert.notEqual(await edit(reference, 'make it winter', 7), first);
      assert.notEqual(await edit(await png(320, 240, 99), 'make it autumn', 7), first);
    });

    it('the output is the reference transformed, not a fresh sketch', async () => {
      const fresh = (
        await t
          .client(account.key)
          .images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'make it autumn' }, { seed: 7, width: 256, height: 256 }))
      ).data![0].b64_json;
      assert.notEqual(await edit(reference, 'make it autumn', 7), fresh);
    });
  });

  describe('input images are priced, held and charged exactly', () => {
    it('per image: $0.01 per output + $0.002 per reference; the hold covers the references', async () => {
      const images = [await toFile(reference, 'a.png'), await toFile(reference, 'b.png')];
      // Exactly the price succeeds...
      const exact = await t.createAccount('0.014');
      const result = await t.client(exact.key).images.edit({ model: 'edit-per-image', prompt: 'p', image: images });
      assert.equal((result.usage as any).cost.total_cost, 0.014);
      await expectBalance(t, exact, '0');
      // ...one nano-dollar less cannot cover the hold (output + inputs): 402, nothing changes.
      const short = await t.createAccount('0.013999999');
      const error = await t
        .client(short.key)
        .images.edit({ model: 'edit-per-image', prompt: 'p', image: images })
        .catch((caught) => caught);
      assert.equal(error.status, 402);
      await expectBalance(t, short, '0.013999999');
    });

    it('per megapixel (BFL style): $0.03 first output MP + $0.015 per started input MP', async () => {
      const input = await png(1500, 1000); // 1.43 MP → 2 started megapixels
      const fresh = await t.createAccount('1');
      const result = await t.client(fresh.key).images.edit({ model: 'edit-megapixel', prompt: 'p', image: await toFile(input, 'a.png') });
      assert.equal((result.usage as any).cost.total_cost, 0.06);
      assert.equal(await t.balance(fresh.accountId), '0.94');
    });

    it('streamed: the completed events split the charge (outputs plus inputs) and sum to it', async () => {
      const fresh = await t.createAccount('1');
      const stream = await t.client(fresh.key).images.edit({
        model: 'edit-per-image',
        prompt: 'p',
        image: [await toFile(reference, 'a.png'), await toFile(reference, 'b.png')],
        n: 2,
        stream: true,
      });
      const costs: number[] = [];
      for await (const event of stream) if (event.type === 'image_edit.completed') costs.push((event.usage as any).cost.total_cost);
      assert.deepEqual(costs, [0.012, 0.012]);
      assert.equal(await t.balance(fresh.accountId), '0.976');
    });

    it('a failed edit costs nothing, and neither does a refused one', async () => {
      const fresh = await t.createAccount('1');
      for (const [error, status] of [
        [new ProviderError('failed', 'the upstream broke after accepting', { accepted: true }), 502],
        [new ProviderError('refused', 'the reference image was refused by the safety system'), 400],
      ] as const) {
        upstream.behaviour = { error };
        const caught = await t
          .client(fresh.key)
          .images.edit({ model: 'scripted-edit', prompt: 'p', image: await toFile(reference, 'a.png') })
          .catch((e) => e);
        upstream.behaviour = {};
        assert.equal(caught.status, status);
        await expectBalance(t, fresh, '1');
      }
    });
  });

  describe('rejections: the right status and param, before any money moves', () => {
    // A fresh $1 account per test, so one test's failure cannot show up as another's balance change.
    let payer: { accountId: string; key: string };
    beforeEach(async () => {
      payer = await t.createAccount('1');
    });

    const cases: Array<[string, () => Promise<(form: FormData) => void>, number, string | null, string]> = [
      ['no image', async () => (form) => form.append('prompt', 'p'), 400, 'image', 'missing_required_parameter'],
      [
        'a GIF',
        async () => (form) =>
          form.append('image', blob([Buffer.from('GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00')]), 'a.gif'),
        400,
        'image',
        'unsupported_file_type',
      ],
      [
        'a text file',
        async () => (form) => form.append('image[]', blob(['just some text, not an image']), 'a.png'),
        400,
        'image',
        'unsupported_file_type',
      ],
      ['an empty file', async () => (form) => form.append('image[]', blob([]), 'a.png'), 400, 'image', 'invalid_image'],
      [
        'a PNG with a corrupt header',
        async () => (form) =>
          form.append('image[]', blob([Buffer.concat([reference.subarray(0, 12), Buffer.from('XXXX'), reference.subarray(16)])]), 'a.png'),
        400,
        'image',
        'invalid_image',
      ],
      [
        'a truncated PNG (valid header, data cut short)',
        async () => {
          const cut = reference.subarray(0, Math.floor(reference.length / 2));
          return (form) => form.append('image[]', blob([cut]), 'a.png');
        },
        400,
        'image',
        'invalid_image',
      ],
      [
        'a JPEG cut short in its scan data',
        async () => {
          const jpeg = await sharp(reference).jpeg().toBuffer();
          return (form) => form.append('image[]', blob([jpeg.subarray(0, Math.floor(jpeg.length * 0.6))]), 'a.jpg');
        },
        400,
        'image',
        'invalid_image',
      ],
      [
        'more images than the model takes (2)',
        async () => (form) => {
          for (let i = 0; i < 3; i++) form.append('image[]', blob([reference]), `${i}.png`);
        },
        400,
        'image',
        'too_many_images',
      ],
      [
        'more than 14 images',
        async () => (form) => {
          for (let i = 0; i < 15; i++) form.append('image[]', blob([reference.subarray(0, 33)]), `${i}.png`);
        },
        400,
        'image',
        'too_many_images',
      ],
      ['`image` sent as text', async () => (form) => form.append('image', 'https://example.com/cat.png'), 400, 'image', 'invalid_type'],
      [
        'a mask',
        async () => (form) => {
          form.append('image', blob([reference]), 'a.png');
          form.append('mask', blob([reference]), 'm.png');
        },
        400,
        'mask',
        'unsupported_parameter',
      ],
      [
        'an unknown file field',
        async () => (form) => form.append('picture', blob([reference]), 'a.png'),
        400,
        'picture',
        'unknown_parameter',
      ],
      [
        'a file over the per-file cap',
        async () => {
          const big = Buffer.concat([reference, Buffer.alloc(LIMITS.file)]);
          return (form) => form.append('image[]', blob([big]), 'a.png');
        },
        413,
        'image',
        'file_too_large',
      ],
      [
        'a request over the per-request cap (declared length)',
        async () => {
          const big = Buffer.concat([reference, Buffer.alloc(LIMITS.request)]);
          return (form) => form.append('image[]', blob([big]), 'a.png');
        },
        413,
        'image',
        'request_too_large',
      ],
    ];

    for (const [name, makeForm, status, param, code] of cases) {
      it(`${name} → ${status} param ${param} (${code})`, async () => {
        const build = await makeForm();
        const response = await postForm(payer.key, (form) => {
          form.append('model', 'scripted-edit');
          if (name !== 'no image') form.append('prompt', 'p');
          build(form);
        });
        assert.equal(response.status, status, JSON.stringify(response.body));
        assert.equal(response.body.error.param, param);
        assert.equal(response.body.error.code, code);
        await expectBalance(t, payer, '1');
      });
    }

    it('a decompression bomb (a PNG header claiming 100000×100000) is refused from its header, without decoding', async () => {
      // The header alone has no pixel data: had anything tried to decode it, the error would be invalid_image.
      const bomb = pngHeaderClaiming(100_000, 100_000);
      // Followed by a megabyte the server never needs to read: the verdict comes from the first bytes.
      const response = await postForm(payer.key, (form) => {
        form.append('model', 'scripted-edit');
        form.append('prompt', 'p');
        form.append('image[]', blob([bomb, Buffer.alloc(MiB)]), 'bomb.png');
      });
      assert.equal(response.status, 400);
      assert.equal(response.body.error.param, 'image');
      assert.equal(response.body.error.code, 'image_too_large');
      assert.match(response.body.error.message, /100000x100000/);
      await expectBalance(t, payer, '1');
      // Under the pixel cap the same header-only file reaches the decode check and fails there instead.
      const small = await postForm(payer.key, (form) => {
        form.append('model', 'scripted-edit');
        form.append('prompt', 'p');
        form.append('image[]', blob([pngHeaderClaiming(100, 100)]), 'tiny.png');
      });
      assert.equal(small.body.error.code, 'invalid_image');
    });

    it('several files each under the file cap but over the request cap → 413, also without a declared length', async () => {
      const part = Buffer.concat([reference, Buffer.alloc(LIMITS.file - reference.length - 1024)]);
      const build = (form: FormData) => {
        form.append('model', 'scripted-edit');
        form.append('prompt', 'p');
        for (let i = 0; i < 3; i++) form.append('image[]', blob([part]), `${i}.png`);
      };
      const declared = await postForm(payer.key, build);
      assert.equal(declared.status, 413);
      assert.equal(declared.body.error.code, 'request_too_large');
      // Chunked transfer (no Content-Length): counted as it streams.
      const form = new FormData();
      build(form);
      const encoded = new Response(form);
      const response = await fetch(`${t.url}/v1/images/edits`, {
        method: 'POST',
        headers: { authorization: `Bearer ${payer.key}`, 'content-type': encoded.headers.get('content-type')! },
        body: encoded.body,
        duplex: 'half',
      } as RequestInit);
      assert.equal(response.status, 413);
      assert.equal((await response.json()).error.code, 'request_too_large');
      await expectBalance(t, payer, '1');
    });

    it('a chunked upload without a length works too', async () => {
      const form = new FormData();
      form.append('model', 'deepshi-sketch');
      form.append('prompt', 'p');
      form.append('width', '64');
      form.append('height', '64');
      form.append('image', blob([reference]), 'r.png');
      const encoded = new Response(form);
      const response = await fetch(`${t.url}/v1/images/edits`, {
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}`, 'content-type': encoded.headers.get('content-type')! },
        body: encoded.body,
        duplex: 'half',
      } as RequestInit);
      assert.equal(response.status, 200);
      assert.equal((await response.json()).size, '64x64');
    });

    it('a model that does not edit → 400 param model', async () => {
      const response = await postForm(payer.key, (form) => {
        form.append('model', 'no-edit');
        form.append('prompt', 'p');
        form.append('image', blob([reference]), 'a.png');
      });
      assert.equal(response.status, 400);
      assert.equal(response.body.error.param, 'model');
      assert.match(response.body.error.message, /does not edit/);
      await expectBalance(t, payer, '1');
    });

    it('validation of the generation fields applies (unknown model, missing prompt, bad n) → 400 naming the field', async () => {
      for (const [fields, param] of [
        [{ model: 'no-such-model', prompt: 'p' }, 'model'],
        [{ model: 'scripted-edit' }, 'prompt'],
        [{ model: 'scripted-edit', prompt: 'p', n: '9' }, 'n'],
        [{ model: 'scripted-edit', prompt: 'p', n: 'two' }, 'n'],
        [{ model: 'scripted-edit', prompt: 'p', output_format: 'gif' }, 'output_format'],
      ] as const) {
        const response = await postForm(payer.key, (form) => {
          for (const [key, value] of Object.entries(fields)) form.append(key, value);
          form.append('image', blob([reference]), 'a.png');
        });
        assert.equal(response.status, 400, JSON.stringify(fields));
        assert.equal(response.body.error.param, param);
      }
      await expectBalance(t, payer, '1');
    });

    it('the SDK surfaces a rejection as BadRequestError with the param', async () => {
      const error = await t
        .client(payer.key)
        .images.edit({ model: 'scripted-edit', prompt: 'p', image: await toFile(Buffer.from('GIF89a0000000000'), 'a.gif') })
        .catch((e) => e);
      assert.ok(error instanceof OpenAI.BadRequestError);
      assert.equal(error.param, 'image');
      await expectBalance(t, payer, '1');
    });

    it('no key → 401 and a JSON body → 415, neither reading the upload', async () => {
      const unauthenticated = await postForm(undefined, (form) => form.append('image', blob([reference]), 'a.png'));
      assert.equal(unauthenticated.status, 401);
      const json = await rawRequest(t.url, {
        path: '/v1/images/edits',
        method: 'POST',
        headers: { authorization: `Bearer ${payer.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'scripted-edit', prompt: 'p' }),
      });
      assert.equal(json.status, 415);
      await expectBalance(t, payer, '1');
    });

    it("GET /v1/models reports each model's edit block", async () => {
      const models = await t.client(account.key).models.list();
      const byId = new Map(models.data.map((model: any) => [model.id, model.edit]));
      assert.deepEqual(byId.get('scripted-edit'), { supported: true, max_images: 2 });
      assert.deepEqual(byId.get('no-edit'), { supported: false, max_images: 0 });
    });
  });
});

/**
 * Memory: the server runs in a child process (so the client's copies of the upload do not count) with the default
 * limits. After warm-up edits, the child's peak RSS (getrusage maxRSS, a high-water mark the kernel keeps, so no
 * sampling can miss a peak) is read; then a ~20 MB PNG (incompressible noise, 2600×2600) is edited; the peak's rise
 * is what that request cost at its worst moment. Bounded generously at 6× the upload.
 */
describe('POST /v1/images/edits memory', () => {
  it("a 20 MB upload raises the server's peak RSS by less than 6× its size", async (context) => {
    const child = fork(path.join(import.meta.dirname, 'images-edits-memory-child.ts'), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const replies: Array<(message: any) => void> = [];
    child.on('message', (message) => replies.shift()?.(message));
    const ask = (message: string) =>
      new Promise<any>((resolve) => {
        replies.push(resolve);
        if (message) child.send(message);
      });
    try {
      const { url, key } = await ask('');
      child.on('exit', registerDeepshiServer(url));
      const client = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 });
      const edit = async (image: Buffer) =>
        client.images.edit(
          withExtras({ model: 'deepshi-sketch', prompt: 'p', image: await toFile(image, 'r.png') }, { seed: 1, width: 256, height: 256 }),
        );

      const side = 2600;
      const upload = await sharp(randomBytes(side * side * 3), { raw: { width: side, height: side, channels: 3 } })
        .png({ compressionLevel: 0 })
        .toBuffer();
      assert.ok(upload.length > 20_000_000 && upload.length < 20 * MiB, `upload is ${upload.length} bytes`);
      // Warm-up: the same path with a smaller image of the same kind, twice (lazy initialisation, thread pools, JIT).
      const warm = await sharp(randomBytes(800 * 800 * 3), { raw: { width: 800, height: 800, channels: 3 } })
        .png({ compressionLevel: 0 })
        .toBuffer();
      await edit(warm);
      await edit(warm);
      const before = await ask('stats');
      const result = await edit(upload);
      assert.equal((result as any).size, '256x256');
      const afterStats = await ask('stats');
      const rise = afterStats.maxRss - before.maxRss;
      context.diagnostic(
        `upload ${(upload.length / MiB).toFixed(1)} MiB; peak RSS ${(before.maxRss / MiB).toFixed(0)} → ${(afterStats.maxRss / MiB).toFixed(0)} MiB (+${(rise / MiB).toFixed(1)} MiB, ${(rise / upload.length).toFixed(2)}×)`,
      );
      assert.ok(rise < 6 * upload.length, `peak RSS rose by ${rise} bytes for a ${upload.length}-byte upload`);
    } finally {
      child.send('close');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
});
