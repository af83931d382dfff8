/**
 * POST /v1/images/quote with multipart/form-data (docs/dashboard.md, docs/edits.md): the body of an edit, reference
 * images included, answers the price of that edit. For the offline models and for flux-2-pro and grok-imagine-quality
 * through their upstream simulators (test/simulators), the edit's quote equals the hold the same edit takes, and the
 * charge when the price is list-settled and every image is delivered (at most the quote otherwise); the reference
 * images are priced as the model's card says. An edit's quote validates like the edit (same status, code, param and
 * message), holds, charges, stores and rate-limits nothing. Every response is checked against the served /openapi.json.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import { formatUsd, parseUsd } from '../../src/domain/money.ts';
import { renderSketch } from '../../src/images/sketch.ts';
import { expectBalance } from '../helpers/assertions.ts';
import { testCatalogJson } from '../helpers/test-adapters.ts';
import { rawRequest, startTestServer, type TestServer } from '../helpers/test-server.ts';
import { BflSimulator } from '../simulators/bfl-simulator.ts';
import { startXaiSimulator } from '../simulators/xai-simulator.ts';

type Fields = Record<string, string | number>;
/** A form part: a file (Blob, with its filename) or a text value. */
type Part = [name: string, value: Blob | string, filename: string];
interface Quote {
  object: string;
  model: string;
  cost: { total_cost: number };
  basis: string;
  exact: boolean;
}

const MiB = 1024 * 1024;
const LIMITS = { file: 2 * MiB, request: 5 * MiB };

/** The shipped catalog plus two offline models: one priced per reference image, one that does not edit. */
function quoteCatalog(): string {
  const catalog = JSON.parse(testCatalogJson());
  const sketch = catalog.models.find((model: { id: string }) => model.id === 'deepshi-sketch');
  const clone = (id: string, changes: Record<string, unknown>) => ({ ...structuredClone(sketch), id, name: id, ...changes });
  catalog.models.push(
    clone('sketch-per-reference', {
      pricing: { unit: 'image', base: '0.01', input_image: '0.002' },
      edit: { supported: true, max_images: 3 },
    }),
    clone('sketch-no-edit', { edit: { supported: false, max_images: 0 } }),
  );
  return JSON.stringify(catalog);
}

const png = (width: number, height: number, seed = 1) => renderSketch({ prompt: 'reference', seed, width, height, format: 'png' });
const blob = (bytes: Buffer) => new Blob([new Uint8Array(bytes)]);

/** An edit's form: the fields as strings, the files under image[] (or image for one, as the SDK sends it). */
function editForm(fields: Fields, images: Buffer[]): FormData {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, String(value));
  for (const [index, bytes] of images.entries()) form.append(images.length === 1 ? 'image' : 'image[]', blob(bytes), `ref-${index}.png`);
  return form;
}

describe('POST /v1/images/quote with an edit (multipart/form-data)', () => {
  let t: TestServer;
  let client: OpenAI;
  let account: { accountId: string; keyId: string; key: string };
  const closers: Array<() => Promise<void>> = [];
  let small: Buffer;
  let twoMegapixels: Buffer;

  before(async () => {
    const xai = await startXaiSimulator({ apiKey: 'sk-sim' });
    const bfl = await new BflSimulator().start();
    closers.push(
      () => xai.close(),
      () => bfl.close(),
    );
    t = await startTestServer({
      catalog: quoteCatalog(),
      env: {
        XAI_API_KEY: 'sk-sim',
        XAI_BASE_URL: xai.url,
        BFL_API_KEY: bfl.key,
        BFL_BASE_URL: bfl.url,
        DEEPSHI_EDIT_MAX_FILE_BYTES: String(LIMITS.file),
        DEEPSHI_EDIT_MAX_REQUEST_BYTES: String(LIMITS.request),
      },
    });
    account = await t.createAccount('100');
    client = t.client(account.key);
    small = await png(320, 240);
    // 1,100,000 px: two started megapixels (1 MP = 1024 × 1024 px) for per-megapixel input prices.
    twoMegapixels = await png(1100, 1000, 2);
  });
  after(async () => {
    await t?.close();
    for (const close of closers) await close();
  });

  const quoteEdit = (caller: OpenAI, fields: Fields, images: Buffer[]) =>
    caller.post('/images/quote', { body: editForm(fields, images) }) as unknown as Promise<Quote>;

  /** What the card says the reference images of an edit cost on top of the generation (0 when it does not price them). */
  function referencePrice(card: Record<string, any>, images: Array<{ width: number; height: number }>): bigint {
    const pricing = card.pricing;
    if (pricing.per_input_image !== undefined) return parseUsd(pricing.per_input_image) * BigInt(images.length);
    if (pricing.input_megapixel !== undefined) {
      const megapixels = images.reduce((sum, image) => sum + Math.ceil((image.width * image.height) / MiB), 0);
      return parseUsd(pricing.input_megapixel) * BigInt(megapixels);
    }
    return 0n;
  }

  const cases: Array<{ fields: Fields; images: () => Array<{ bytes: Buffer; width: number; height: number }> }> = [
    { fields: { model: 'deepshi-sketch', prompt: 'make it night' }, images: () => [{ bytes: small, width: 320, height: 240 }] },
    {
      fields: { model: 'deepshi-sketch', prompt: 'make it night', n: 2, width: 512, height: 512 },
      images: () => [
        { bytes: small, width: 320, height: 240 },
        { bytes: twoMegapixels, width: 1100, height: 1000 },
      ],
    },
    {
      fields: { model: 'sketch-per-reference', prompt: 'combine them', n: 2 },
      images: () => [
        { bytes: small, width: 320, height: 240 },
        { bytes: small, width: 320, height: 240 },
        { bytes: twoMegapixels, width: 1100, height: 1000 },
      ],
    },
    {
      fields: { model: 'flux-2-pro', prompt: 'make it autumn', width: 1024, height: 1024 },
      images: () => [{ bytes: twoMegapixels, width: 1100, height: 1000 }],
    },
    {
      fields: { model: 'flux-2-pro', prompt: 'make it autumn', width: 2048, height: 1024, n: 2 },
      images: () => [
        { bytes: twoMegapixels, width: 1100, height: 1000 },
        { bytes: small, width: 320, height: 240 },
      ],
    },
    {
      fields: { model: 'grok-imagine-quality', prompt: 'make it winter', aspect_ratio: '1:1', resolution: '1K' },
      images: () => [{ bytes: small, width: 320, height: 240 }],
    },
    {
      fields: { model: 'grok-imagine-quality', prompt: 'make it winter', aspect_ratio: '16:9', resolution: '2K', n: 2 },
      images: () => [
        { bytes: small, width: 320, height: 240 },
        { bytes: twoMegapixels, width: 1100, height: 1000 },
        { bytes: small, width: 320, height: 240 },
      ],
    },
  ];

  for (const { fields, images } of cases) {
    const label = `${fields.model}, ${JSON.stringify(fields)}`;
    it(`quote = hold (= charge when list-settled), references priced: ${label}`, async () => {
      const references = images();
      const card = (await client.models.retrieve(String(fields.model))) as unknown as Record<string, any>;
      const quoted = await quoteEdit(
        client,
        fields,
        references.map((reference) => reference.bytes),
      );
      assert.equal(quoted.object, 'image.quote');
      assert.equal(quoted.model, fields.model);
      assert.equal(quoted.exact, card.pricing.settle === 'list', label);

      // The same fields as a generation (JSON) cost exactly the references less: they are priced, as the card says.
      const generation = (await client.post('/images/quote', { body: fields })) as Quote;
      assert.equal(
        parseUsd(String(quoted.cost.total_cost)) - parseUsd(String(generation.cost.total_cost)),
        referencePrice(card, references),
        `${label}: the edit's quote is the generation's plus its references (${quoted.basis})`,
      );

      // The edit itself, as the SDK sends it.
      const { data: edited, response } = await client.images
        .edit({
          ...fields,
          image: await Promise.all(
            references.map((reference, index) => toFile(reference.bytes, `ref-${index}.png`, { type: 'image/png' })),
          ),
        } as never)
        .withResponse();
      const request = await t.server.store.getRequest(response.headers.get('x-request-id')!);
      assert.ok(request, label);
      assert.equal(request.endpoint, 'images.edits');
      assert.equal(parseUsd(String(quoted.cost.total_cost)), request.hold, `${label}: the quote is the hold the edit took`);
      const charged = parseUsd(String((edited.usage as unknown as { cost: { total_cost: number } }).cost.total_cost));
      assert.equal(charged, request.cost, label);
      const delivered = edited.data!.length === Number(fields.n ?? 1);
      if (card.pricing.settle === 'list' && delivered) {
        assert.equal(charged, request.hold, `${label}: a list price charges exactly the quote`);
      } else {
        assert.ok(charged <= request.hold, `${label}: charged ${formatUsd(charged)} within the quote ${quoted.cost.total_cost}`);
      }
    });
  }

  describe('validates like the edit: the same status, code, param and message', () => {
    const tiny = () => small.subarray(0, 33);
    const rejections: Array<[string, Fields, () => Part[]]> = [
      ['no image', { model: 'deepshi-sketch', prompt: 'p' }, () => []],
      [
        'more images than the model takes (grok-imagine-quality: 3)',
        { model: 'grok-imagine-quality', prompt: 'p' },
        () => [0, 1, 2, 3].map((index) => ['image[]', blob(small), `${index}.png`]),
      ],
      [
        'more than 14 images',
        { model: 'deepshi-sketch', prompt: 'p' },
        () => Array.from({ length: 15 }, (_, index) => ['image[]', blob(tiny()), `${index}.png`]),
      ],
      ['a text file', { model: 'deepshi-sketch', prompt: 'p' }, () => [['image[]', new Blob(['just some text, not an image']), 'a.png']]],
      [
        'a file over the per-file cap',
        { model: 'deepshi-sketch', prompt: 'p' },
        () => [['image[]', blob(Buffer.concat([small, Buffer.alloc(LIMITS.file)])), 'a.png']],
      ],
      ['a model that does not edit', { model: 'sketch-no-edit', prompt: 'p' }, () => [['image', blob(small), 'a.png']]],
      ['an unknown model', { model: 'no-such-model', prompt: 'p' }, () => [['image', blob(small), 'a.png']]],
      ['a text model', { model: 'deepshi-echo', prompt: 'p' }, () => [['image', blob(small), 'a.png']]],
      ['a missing prompt', { model: 'flux-2-pro' }, () => [['image', blob(small), 'a.png']]],
      ['a bad size', { model: 'flux-2-pro', prompt: 'p', width: 1000 }, () => [['image', blob(small), 'a.png']]],
      ['`image` as text', { model: 'deepshi-sketch', prompt: 'p' }, () => [['image', 'https://example.com/cat.png', '']]],
    ];
    const send = (path: string, key: string | undefined, fields: Fields, files: Part[]) => {
      const form = new FormData();
      for (const [name, value] of Object.entries(fields)) form.append(name, String(value));
      for (const [name, value, filename] of files) {
        if (typeof value === 'string') form.append(name, value);
        else form.append(name, value, filename);
      }
      return rawRequest(t.url, { path, method: 'POST', headers: key ? { authorization: `Bearer ${key}` } : {}, body: form });
    };

    for (const [name, fields, files] of rejections) {
      it(name, async () => {
        const payer = await t.createAccount('1');
        const edit = await send('/v1/images/edits', payer.key, fields, files());
        const quote = await send('/v1/images/quote', payer.key, fields, files());
        assert.ok(edit.status >= 400, `the edit refuses it: ${JSON.stringify(edit.body)}`);
        assert.equal(quote.status, edit.status, JSON.stringify(quote.body));
        assert.deepEqual(quote.body, edit.body);
        await expectBalance(t, payer, '1');
      });
    }

    it('a key that may not use the model: the same 403', async () => {
      const narrow = await t.createAccount('1', { models: ['deepshi-echo'] });
      const fields = { model: 'deepshi-sketch', prompt: 'p' };
      const edit = await send('/v1/images/edits', narrow.key, fields, [['image', blob(small), 'a.png']]);
      const quote = await send('/v1/images/quote', narrow.key, fields, [['image', blob(small), 'a.png']]);
      assert.equal(edit.status, 403);
      assert.deepEqual([quote.status, quote.body], [edit.status, edit.body]);
    });

    it('no key → 401, and a declared length over the request cap → 413, both before the upload is read', async () => {
      const fields = { model: 'deepshi-sketch', prompt: 'p' };
      const unauthenticated = await send('/v1/images/quote', undefined, fields, [['image', blob(small), 'a.png']]);
      assert.equal(unauthenticated.status, 401);
      assert.equal(unauthenticated.body.error.code, 'invalid_api_key');
      const huge = [['image[]', blob(Buffer.concat([small, Buffer.alloc(LIMITS.request)])), 'a.png']] as Part[];
      const edit = await send('/v1/images/edits', account.key, fields, huge);
      const quote = await send('/v1/images/quote', account.key, fields, huge);
      assert.equal(edit.status, 413);
      assert.deepEqual([quote.status, quote.body], [edit.status, edit.body]);
    });
  });

  it('holds, charges and stores nothing, and takes no rate-limit slot', async () => {
    const fresh = await t.createAccount('0.002');
    await t.admin('POST', `/admin/v1/keys/${fresh.keyId}/limits`, { requests_per_minute: 1 });
    const caller = t.client(fresh.key);
    // Dearer than the balance: that edit would be a 402, its quote still answers, as often as asked.
    for (let i = 0; i < 3; i++) {
      const quoted = await quoteEdit(caller, { model: 'flux-2-pro', prompt: 'p', width: 1024, height: 1024 }, [twoMegapixels]);
      assert.ok(quoted.cost.total_cost > 0.002, `quoted ${quoted.cost.total_cost}`);
    }
    await expectBalance(t, fresh, '0.002');
    assert.deepEqual(await t.server.store.listRequests(fresh.accountId, 10), []);
    // The key's one request a minute is still there for the edit.
    const edited = await caller.images.edit({
      model: 'deepshi-sketch',
      prompt: 'p',
      image: await toFile(small, 'a.png', { type: 'image/png' }),
    });
    assert.equal((edited.usage as unknown as { cost: { total_cost: number } }).cost.total_cost, 0.001);
    // …and it is spent: the next edit is refused by the limit the quotes did not touch.
    const refused = await caller.images
      .edit({ model: 'deepshi-sketch', prompt: 'p', image: await toFile(small, 'a.png', { type: 'image/png' }) })
      .then(
        () => assert.fail('a second edit within the minute was accepted'),
        (error: unknown) => error,
      );
    assert.ok(refused instanceof OpenAI.APIError && refused.status === 429, String(refused));
  });
});
