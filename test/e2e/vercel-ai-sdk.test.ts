import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { APICallError, generateImage, generateText, streamText } from 'ai';
import { issueApiKey } from '../../src/auth/api-keys.ts';
import { parseUsd } from '../../src/domain/money.ts';
import { probeImage } from '../../src/images/probe.ts';
import { charged, expectBalance } from '../helpers/assertions.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

// The SDK logs its warnings (e.g. the unsupported top-level `seed`) to the console; the tests assert them instead.
(globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;

/**
 * Deepshi with the Vercel AI SDK as the caller (ai 6 + @ai-sdk/openai-compatible 2.x), over real HTTP: images
 * (size, seed through providerOptions, n above the model's cap, errors and retries) and chat (generateText,
 * streamText with usage). Every request the SDK sends is recorded by the provider's `fetch`; every error body is
 * checked against the served /openapi.json (test/helpers/documented-http.ts, as every response in the suite).
 */

interface Sent {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: any;
  status: number;
}

/** An AI SDK provider for `key`, with the requests it sends. */
function deepshi(t: TestServer, key: string, options: { includeUsage?: boolean } = {}) {
  const sent: Sent[] = [];
  const provider = createOpenAICompatible({
    name: 'deepshi',
    baseURL: `${t.url}/v1`,
    apiKey: key,
    includeUsage: options.includeUsage,
    fetch: async (input, init) => {
      const record: Sent = {
        url: String(input instanceof Request ? input.url : input),
        method: init?.method ?? 'GET',
        headers: Object.fromEntries(new Headers(init?.headers).entries()),
        body: typeof init?.body === 'string' ? JSON.parse(init.body) : init?.body,
        status: 0,
      };
      sent.push(record);
      const response = await fetch(input, init);
      record.status = response.status;
      return response;
    },
  });
  return { provider, sent };
}

/** Awaits `promise`, which must reject with an AI SDK APICallError (not wrapped in a RetryError); returns it. */
async function apiCallError(promise: Promise<unknown>): Promise<APICallError> {
  const error = await promise.then(
    () => assert.fail('expected an error'),
    (caught: unknown) => caught,
  );
  assert.ok(APICallError.isInstance(error), `not an APICallError: ${error}`);
  return error;
}

const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

describe('Vercel AI SDK (ai 6, @ai-sdk/openai-compatible 2.x) as a Deepshi caller', () => {
  let t: TestServer;
  const scripted = new ScriptedAdapter();
  let price: bigint; // deepshi-sketch's per-image price, in nanos, as GET /v1/models publishes it
  let maxN: number;

  before(async () => {
    t = await startTestServer({ adapters: [scripted], catalog: testCatalogJson() });
    const account = await t.createAccount('1');
    const card = await (await fetch(`${t.url}/v1/models/deepshi-sketch`, { headers: { authorization: `Bearer ${account.key}` } })).json();
    price = parseUsd(card.pricing.per_image);
    maxN = card.max_n;
    assert.equal(maxN, 4);
  });
  after(() => t.close());

  it('generateImage: one PNG, sent with response_format b64_json, charged exactly the catalog price', async () => {
    const account = await t.createAccount('1');
    const { provider, sent } = deepshi(t, account.key);
    const { result, charge } = await charged(t, account, () =>
      generateImage({ model: provider.imageModel('deepshi-sketch'), prompt: 'a lighthouse at dusk', n: 1 }),
    );
    assert.equal(result.images.length, 1);
    assert.equal(result.image.mediaType, 'image/png');
    assert.deepEqual([...result.image.uint8Array.subarray(0, 8)], PNG);
    assert.equal(probeImage(Buffer.from(result.image.uint8Array))!.format, 'png');
    assert.deepEqual(result.warnings, []);

    assert.equal(sent.length, 1);
    assert.equal(sent[0].url, `${t.url}/v1/images/generations`);
    assert.equal(sent[0].method, 'POST');
    assert.deepEqual(sent[0].body, { model: 'deepshi-sketch', prompt: 'a lighthouse at dusk', n: 1, response_format: 'b64_json' });
    assert.equal(sent[0].headers.authorization, `Bearer ${account.key}`);
    assert.match(sent[0].headers['user-agent'], /^ai\/6\.0\.\d+ /); // no x-stainless-* headers: nothing Deepshi needs
    assert.equal(
      Object.keys(sent[0].headers).some((name) => name.startsWith('x-stainless')),
      false,
    );

    assert.equal(charge, price);
    // The cost is not a typed field of the AI SDK's result; it reaches the caller through the response headers.
    assert.equal(parseUsd(result.responses[0].headers!['x-request-cost']), price);
    assert.match(result.responses[0].headers!['x-request-id'], /^req_/);
  });

  it("size '512x512' and providerOptions aspect_ratio (+ output_format) give images of exactly those pixels (and format)", async () => {
    const account = await t.createAccount('1');
    const { provider, sent } = deepshi(t, account.key);
    const square = await generateImage({ model: provider.imageModel('deepshi-sketch'), prompt: 'a kite', size: '512x512' });
    assert.equal(sent[0].body.size, '512x512');
    const probe = probeImage(Buffer.from(square.image.uint8Array))!;
    assert.deepEqual([probe.width, probe.height], [512, 512]);

    // The SDK's own aspectRatio is not sent by openai-compatible (a warning); Deepshi's aspect_ratio is a provider option.
    const wide = await generateImage({
      model: provider.imageModel('deepshi-sketch'),
      prompt: 'a kite',
      providerOptions: { deepshi: { aspect_ratio: '16:9', output_format: 'webp' } },
    });
    assert.equal(sent[1].body.aspect_ratio, '16:9');
    const wideProbe = probeImage(Buffer.from(wide.image.uint8Array))!;
    assert.deepEqual([wideProbe.width, wideProbe.height], [1376, 768]); // the catalog's 1K 16:9 row
    assert.equal(wideProbe.format, 'webp');
    assert.equal(wide.image.mediaType, 'image/webp'); // the SDK reads the media type from the bytes
  });

  it('providerOptions.deepshi.seed reaches the server at the top level of the body and makes the output deterministic', async () => {
    const account = await t.createAccount('1');
    const { provider, sent } = deepshi(t, account.key);
    const draw = (seed: number) =>
      generateImage({
        model: provider.imageModel('deepshi-sketch'),
        prompt: 'a green valley',
        size: '256x256',
        providerOptions: { deepshi: { seed } },
      });
    const one = await draw(7);
    const two = await draw(7);
    const three = await draw(8);
    assert.deepEqual(
      sent.map((request) => request.body.seed),
      [7, 7, 8],
    );
    assert.deepEqual(one.image.uint8Array, two.image.uint8Array);
    assert.notDeepEqual(one.image.uint8Array, three.image.uint8Array);

    // The SDK's top-level `seed` is not sent by openai-compatible: it warns instead, and the server never sees it.
    const ignored = await generateImage({
      model: provider.imageModel('deepshi-sketch'),
      prompt: 'a green valley',
      size: '256x256',
      seed: 7,
    });
    assert.equal('seed' in sent[3].body, false);
    assert.deepEqual(ignored.warnings, [{ type: 'unsupported', feature: 'seed' }]);
  });

  it('an edit (prompt with images) is sent as multipart to /v1/images/edits, with `image` or `image[]`, and charged like a generation', async () => {
    const account = await t.createAccount('1');
    const { provider, sent } = deepshi(t, account.key);
    const base = await generateImage({ model: provider.imageModel('deepshi-sketch'), prompt: 'a cat', size: '256x256' });
    const { result, charge } = await charged(t, account, () =>
      generateImage({
        model: provider.imageModel('deepshi-sketch'),
        prompt: { text: 'make it blue', images: [base.image.uint8Array, base.image.base64] },
        n: 2,
        size: '320x256',
      }),
    );
    assert.equal(sent[1].url, `${t.url}/v1/images/edits`);
    assert.ok(sent[1].body instanceof FormData);
    assert.deepEqual([...(sent[1].body as FormData).keys()], ['model', 'prompt', 'image[]', 'image[]', 'n', 'size']);
    assert.equal(result.images.length, 2);
    for (const image of result.images) {
      const probe = probeImage(Buffer.from(image.uint8Array))!;
      assert.deepEqual([probe.format, probe.width, probe.height], ['png', 320, 256]);
    }
    assert.equal(charge, 2n * price);

    const single = await generateImage({
      model: provider.imageModel('deepshi-sketch'),
      prompt: { text: 'make it red', images: [base.image.uint8Array] },
      size: '256x256',
    });
    assert.deepEqual([...(sent[2].body as FormData).keys()], ['model', 'prompt', 'image', 'n', 'size']);
    assert.equal(single.images.length, 1);
  });

  it('n: 6 with maxImagesPerCall = the model max_n (4): two calls (4 + 2), six images, six images charged', async () => {
    const account = await t.createAccount('1');
    const { provider, sent } = deepshi(t, account.key);
    const { result, charge } = await charged(t, account, () =>
      generateImage({ model: provider.imageModel('deepshi-sketch'), prompt: 'six kites', n: 6, maxImagesPerCall: maxN, size: '256x256' }),
    );
    assert.equal(result.images.length, 6);
    assert.deepEqual(sent.map((request) => request.body.n).sort(), [2, 4]);
    assert.ok(result.images.every((image) => image.mediaType === 'image/png'));
    assert.equal(charge, 6n * price);
  });

  it('n: 6 with the default maxImagesPerCall (10): one call with n: 6 → our 400 `n` as an APICallError, nothing charged', async () => {
    const account = await t.createAccount('1');
    const { provider, sent } = deepshi(t, account.key);
    const error = await apiCallError(generateImage({ model: provider.imageModel('deepshi-sketch'), prompt: 'six kites', n: 6 }));
    assert.equal(sent.length, 1);
    assert.equal(sent[0].body.n, 6);
    assert.equal(error.statusCode, 400);
    assert.equal(error.isRetryable, false);
    assert.equal(error.message, "'n' must be between 1 and 4; got 6.");
    assert.deepEqual((error.data as any).error, {
      message: error.message,
      type: 'invalid_request_error',
      code: 'invalid_value',
      param: 'n',
    });
    await expectBalance(t, account, '1');
  });

  it('402: an account that cannot pay → APICallError, not retryable, our message, exactly one request, nothing charged', async () => {
    const account = await t.createAccount('0.0005');
    const { provider, sent } = deepshi(t, account.key);
    const error = await apiCallError(generateImage({ model: provider.imageModel('deepshi-sketch'), prompt: 'a lighthouse' }));
    assert.equal(error.statusCode, 402);
    assert.equal(error.isRetryable, false);
    const body = JSON.parse(error.responseBody!);
    assert.equal(body.error.code, 'insufficient_quota');
    assert.equal(error.message, body.error.message);
    assert.equal(sent.length, 1);
    await expectBalance(t, account, '0.0005');
  });

  it('a revoked key (403) and an unknown key (401) → APICallError, not retried (x-should-retry: false), one request each', async () => {
    const account = await t.createAccount('1');
    await t.admin('POST', `/admin/v1/keys/${account.keyId}/revoke`);
    const revoked = deepshi(t, account.key);
    const forbidden = await apiCallError(generateImage({ model: revoked.provider.imageModel('deepshi-sketch'), prompt: 'x' }));
    assert.equal(forbidden.statusCode, 403);
    assert.equal(forbidden.isRetryable, false);
    assert.equal(forbidden.responseHeaders!['x-should-retry'], 'false');
    assert.equal(forbidden.message, JSON.parse(forbidden.responseBody!).error.message);
    assert.equal(revoked.sent.length, 1);

    const unknown = deepshi(t, issueApiKey('').key); // well-formed, checksum valid, never registered
    const unauthorized = await apiCallError(generateText({ model: unknown.provider.chatModel('deepshi-echo'), prompt: 'hello' }));
    assert.equal(unauthorized.statusCode, 401);
    assert.equal(unauthorized.isRetryable, false);
    assert.equal(unauthorized.responseHeaders!['x-should-retry'], 'false');
    assert.equal(unauthorized.message, JSON.parse(unauthorized.responseBody!).error.message);
    assert.equal(unknown.sent.length, 1);
    await expectBalance(t, account, '1');
  });

  it("429 (the key's one in-flight slot is busy): the SDK waits Retry-After and retries; both images arrive, charged once each", async () => {
    // maxImagesPerCall 1 and n 2 make the SDK send two calls in parallel; the key allows one generation at a time,
    // and the scripted upstream takes 300 ms, so the second call is refused with 429 + Retry-After: 1 and retried.
    const account = await t.createAccount('1');
    await t.admin('POST', `/admin/v1/keys/${account.keyId}/limits`, {
      requests_per_minute: null,
      images_per_minute: null,
      max_in_flight: 1,
    });
    scripted.behaviour = { delayMs: 300 };
    const { provider, sent } = deepshi(t, account.key);
    const started = Date.now();
    const { result, charge } = await charged(t, account, () =>
      generateImage({ model: provider.imageModel('scripted-image'), prompt: 'two kites', n: 2, maxImagesPerCall: 1, size: '256x256' }),
    );
    assert.equal(result.images.length, 2);
    assert.deepEqual(sent.map((request) => request.status).sort(), [200, 200, 429]);
    assert.ok(sent.every((request) => request.body.n === 1));
    assert.ok(Date.now() - started >= 1_000, 'the retry waited for Retry-After');
    assert.equal(charge, 2n * 10_000_000n); // scripted-image: $0.01 per image
    scripted.behaviour = {};
  });

  describe('chat (deepshi-echo)', () => {
    // docs/chat.md: "hello" as the only user message is 4 + 2 = 6 prompt tokens; "Echo: hello" is 3 completion tokens.
    const usage = { inputTokens: 6, outputTokens: 3, totalTokens: 9 };

    it("generateText → 'Echo: hello' with the server's token usage and charge", async () => {
      const account = await t.createAccount('1');
      const { provider, sent } = deepshi(t, account.key);
      const { result, charge } = await charged(t, account, () =>
        generateText({ model: provider.chatModel('deepshi-echo'), prompt: 'hello' }),
      );
      assert.equal(result.text, 'Echo: hello');
      assert.equal(result.finishReason, 'stop');
      assert.equal(result.usage.inputTokens, usage.inputTokens);
      assert.equal(result.usage.outputTokens, usage.outputTokens);
      assert.equal(result.usage.totalTokens, usage.totalTokens);
      assert.deepEqual(result.warnings, []);
      assert.equal(sent.length, 1);
      assert.equal(sent[0].url, `${t.url}/v1/chat/completions`);
      assert.deepEqual(sent[0].body.messages, [{ role: 'user', content: 'hello' }]);
      // The cost: in the x-request-cost header, and in the raw usage the SDK keeps from the body.
      assert.equal(parseUsd(result.response.headers!['x-request-cost']), charge);
      assert.equal((result.usage.raw as any).cost.total_cost, Number(charge) / 1e9);
      assert.ok(charge > 0n);
    });

    it('streamText (includeUsage) → the same text from the textStream, and the final usage', async () => {
      const account = await t.createAccount('1');
      const { provider, sent } = deepshi(t, account.key, { includeUsage: true });
      let text = '';
      const { result, charge } = await charged(t, account, async () => {
        const stream = streamText({ model: provider.chatModel('deepshi-echo'), prompt: 'hello', onError: () => {} });
        for await (const delta of stream.textStream) text += delta;
        return { usage: await stream.usage, finishReason: await stream.finishReason };
      });
      assert.equal(text, 'Echo: hello');
      assert.equal(result.finishReason, 'stop');
      assert.equal(result.usage.inputTokens, usage.inputTokens);
      assert.equal(result.usage.outputTokens, usage.outputTokens);
      assert.equal(result.usage.totalTokens, usage.totalTokens);
      assert.equal(sent[0].body.stream, true);
      assert.deepEqual(sent[0].body.stream_options, { include_usage: true });
      assert.ok(charge > 0n);
    });
  });
});
