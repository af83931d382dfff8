import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { parseUsd } from '../../src/domain/money.ts';
import { charged, collect, expectBalance, expectError } from '../helpers/assertions.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/**
 * POST /v1/chat/completions with the offline text model, through the official SDK over real HTTP: the answer, the
 * stream, the exact per-token charge, and the same keys, permissions, limits and balance as the image endpoints.
 */

/** deepshi-echo's documented token approximation (docs/chat.md): ceil(characters / 4), plus 4 per prompt message. */
const tokens = (text: string) => Math.ceil([...text].length / 4);
const promptTokens = (...contents: string[]) => contents.reduce((sum, content) => sum + 4 + tokens(content), 0);

describe('POST /v1/chat/completions (deepshi-echo)', () => {
  let t: TestServer;
  let rates: { input: bigint; cachedInput: bigint; output: bigint };

  /** The catalog's price of a usage, from the rates GET /v1/models publishes: Σ tokens × rate / 1M, rounded up. */
  const price = (prompt: number, completion: number) => {
    const total = BigInt(prompt) * rates.input + BigInt(completion) * rates.output;
    return (total + 999_999n) / 1_000_000n;
  };

  before(async () => {
    t = await startTestServer();
    const account = await t.createAccount('1');
    const card = (await t.client(account.key).models.retrieve('deepshi-echo')) as any;
    rates = {
      input: parseUsd(card.pricing.input_per_million),
      cachedInput: parseUsd(card.pricing.cached_input_per_million),
      output: parseUsd(card.pricing.output_per_million),
    };
  });
  after(() => t.close());

  it('answers a chat.completion echoing the last user message, charging exactly the catalog rates × tokens (body, header and balance agree)', async () => {
    const account = await t.createAccount('1');
    const client = t.client(account.key);
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'first question' },
      { role: 'assistant' as const, content: 'first answer' },
      { role: 'user' as const, content: [{ type: 'text' as const, text: 'a red fox' }] },
    ];
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'deepshi-echo', messages }).withResponse(),
    );
    const completion = result.data as any;
    assert.match(completion.id, /^chatcmpl-[0-9a-f]{32}$/);
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, 'deepshi-echo');
    assert.ok(Math.abs(completion.created - Date.now() / 1000) < 300);
    assert.equal(completion.choices.length, 1);
    assert.deepEqual(completion.choices[0].message, { role: 'assistant', content: 'Echo: a red fox', refusal: null });
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assert.equal(completion.choices[0].index, 0);

    const prompt = promptTokens('You are terse.', 'first question', 'first answer', 'a red fox');
    const output = tokens('Echo: a red fox');
    const cost = price(prompt, output);
    assert.deepEqual(completion.usage, {
      prompt_tokens: prompt,
      completion_tokens: output,
      total_tokens: prompt + output,
      prompt_tokens_details: { cached_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0 },
      cost: { total_cost: Number(cost) / 1e9 },
    });
    assert.equal(charge, cost);
    assert.equal(parseUsd(result.response.headers.get('x-request-cost')), cost);
    assert.equal(result.response.headers.get('x-request-id'), result.request_id);

    // One hold, one settle; the request is recorded as a chat completion.
    const ledger = await t.admin('GET', `/admin/v1/accounts/${account.accountId}/ledger`);
    const own = ledger.data.filter((entry: any) => entry.request_id === result.request_id);
    assert.deepEqual(own.map((entry: any) => entry.kind).sort(), ['hold', 'settle']);
    const usage = await (await fetch(`${t.url}/v1/account/usage`, { headers: { authorization: `Bearer ${account.key}` } })).json();
    assert.equal(usage.data[0].endpoint, 'chat.completions');
    assert.equal(usage.data[0].status, 'settled');
    assert.equal(parseUsd(usage.data[0].cost), cost);
    assert.equal(usage.data[0].images, 0);
  });

  it('streams chat.completion.chunk deltas, then finish_reason, then a usage chunk with the settled cost, then [DONE]', async () => {
    const account = await t.createAccount('1');
    const client = t.client(account.key);
    const content = 'streaming is honest about being an echo';
    const { result: chunks, charge } = await charged(t, account, async () => {
      const stream = await client.chat.completions.create({
        model: 'deepshi-echo',
        messages: [{ role: 'user', content }],
        stream: true,
        stream_options: { include_usage: true },
      });
      return collect(stream);
    });
    const ids = new Set(chunks.map((chunk) => chunk.id));
    assert.equal(ids.size, 1);
    assert.match([...ids][0], /^chatcmpl-/);
    assert.ok(chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && chunk.model === 'deepshi-echo'));
    assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
    const text = chunks.flatMap((chunk) => chunk.choices.map((choice: any) => choice.delta.content ?? '')).join('');
    assert.equal(text, `Echo: ${content}`);
    assert.ok(chunks.length > 5, 'the answer arrives in several deltas');

    const finish = chunks[chunks.length - 2];
    assert.equal(finish.choices[0].finish_reason, 'stop');
    assert.deepEqual(finish.choices[0].delta, {});
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    const prompt = promptTokens(content);
    const output = tokens(`Echo: ${content}`);
    assert.equal(last.usage.prompt_tokens, prompt);
    assert.equal(last.usage.completion_tokens, output);
    assert.equal(last.usage.total_tokens, prompt + output);
    assert.equal(charge, price(prompt, output));
    assert.equal(Math.round(last.usage.cost.total_cost * 1e9), Number(charge));
    // Every chunk before the last carries usage: null (OpenAI's shape with include_usage).
    assert.ok(chunks.slice(0, -1).every((chunk) => chunk.usage === null));
  });

  it('on the wire: text/event-stream of bare data: frames ending with data: [DONE]; no usage chunk without include_usage', async () => {
    const account = await t.createAccount('1');
    const response = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    const body = await response.text();
    const frames = body.split('\n\n').filter(Boolean);
    assert.ok(
      frames.every((frame) => frame.startsWith('data: ')),
      body,
    );
    assert.equal(frames[frames.length - 1], 'data: [DONE]');
    const objects = frames.slice(0, -1).map((frame) => JSON.parse(frame.slice(6)));
    assert.ok(objects.every((chunk) => !('usage' in chunk) && chunk.choices.length === 1));
    assert.equal(objects[objects.length - 1].choices[0].finish_reason, 'stop');
    await expectBalance(t, account, (1 - Number(price(promptTokens('hi'), tokens('Echo: hi'))) / 1e9).toFixed(9).replace(/0+$/, ''));
  });

  it('max_tokens / max_completion_tokens cut the answer (finish_reason "length") and the charge; stop ends it before the sequence', async () => {
    const account = await t.createAccount('1');
    const client = t.client(account.key);
    const content = 'one two three four five six seven';
    const full = await charged(t, account, () =>
      client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content }] }),
    );
    const cut = await charged(t, account, () =>
      client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content }], max_tokens: 3 }),
    );
    assert.equal(cut.result.choices[0].finish_reason, 'length');
    assert.equal(cut.result.choices[0].message.content, 'Echo: one tw');
    assert.equal(cut.result.usage!.completion_tokens, 3);
    assert.equal(cut.charge, price(promptTokens(content), 3));
    assert.ok(cut.charge < full.charge);

    const alias = await client.chat.completions.create({
      model: 'deepshi-echo',
      messages: [{ role: 'user', content }],
      max_completion_tokens: 3,
    });
    assert.equal(alias.choices[0].message.content, 'Echo: one tw');
    assert.equal(alias.choices[0].finish_reason, 'length');

    const stopped = await client.chat.completions.create({
      model: 'deepshi-echo',
      messages: [{ role: 'user', content }],
      stop: [' four', ' two'],
    });
    assert.equal(stopped.choices[0].message.content, 'Echo: one');
    assert.equal(stopped.choices[0].finish_reason, 'stop');
    assert.equal(stopped.usage!.completion_tokens, tokens('Echo: one'));

    const streamed = await client.chat.completions.create({
      model: 'deepshi-echo',
      messages: [{ role: 'user', content }],
      max_tokens: 2,
      stream: true,
    });
    const pieces: any[] = [];
    for await (const chunk of streamed) pieces.push(chunk);
    assert.equal(pieces.map((chunk) => chunk.choices[0]?.delta.content ?? '').join(''), 'Echo: on');
    assert.equal(pieces[pieces.length - 1].choices[0].finish_reason, 'length');
  });

  it('ignores what deepshi-echo does not support, with warnings in the body and x-deepshi-warnings', async () => {
    const account = await t.createAccount('1');
    const { data, response } = await t
      .client(account.key)
      .chat.completions.create({
        model: 'deepshi-echo',
        messages: [{ role: 'user', content: 'x' }],
        temperature: 0.2,
        seed: 7,
        logprobs: true,
        reasoning_effort: 'low',
        unknown_field: 1,
      } as any)
      .withResponse();
    assert.equal(data.choices[0].message.content, 'Echo: x');
    assert.deepEqual(
      (data as any).warnings.map((warning: any) => warning.param),
      ['temperature', 'logprobs', 'reasoning_effort'],
    );
    assert.equal(response.headers.get('x-deepshi-warnings'), 'temperature,logprobs,reasoning_effort');
  });

  it('402 insufficient_quota when the balance cannot cover the hold (prompt + most completion tokens); nothing changes', async () => {
    const content = 'not enough';
    // Enough for what the answer will cost, not for the hold of the default 4096 completion tokens.
    const account = await t.createAccount('0.0001');
    const client = t.client(account.key);
    await expectError(
      client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content }] }),
      402,
      'insufficient_quota',
    );
    await expectError(
      client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content }], stream: true }),
      402,
      'insufficient_quota',
    );
    await expectBalance(t, account, '0.0001');
    const ledger = await t.admin('GET', `/admin/v1/accounts/${account.accountId}/ledger`);
    assert.deepEqual(
      ledger.data.map((entry: any) => entry.kind),
      ['credit'],
    );
    // A request whose hold fits goes through.
    const ok = await client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content }], max_tokens: 8 });
    assert.equal(ok.choices[0].finish_reason, 'stop');
  });

  it('400s name the param, and bad input is never billed', async () => {
    const account = await t.createAccount('1');
    const client = t.client(account.key);
    const create = (body: Record<string, unknown>) =>
      client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x' }], ...body } as any);
    await expectError(client.chat.completions.create({ model: 'deepshi-echo' } as any), 400, 'missing_required_parameter', 'messages');
    await expectError(create({ messages: [] }), 400, 'empty_array', 'messages');
    await expectError(create({ messages: 'hello' }), 400, 'invalid_type', 'messages');
    await expectError(create({ messages: [{ role: 'robot', content: 'x' }] }), 400, 'invalid_value', 'messages[0].role');
    await expectError(
      create({ messages: [{ role: 'user', content: 'x' }, { role: 'user' }] }),
      400,
      'missing_required_parameter',
      'messages[1].content',
    );
    await expectError(
      create({ messages: [{ role: 'tool', content: 'x' }] }),
      400,
      'missing_required_parameter',
      'messages[0].tool_call_id',
    );
    await expectError(
      create({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:,' } }] }] }),
      400,
      'invalid_value',
      'messages[0].content[0].type',
    );
    await expectError(create({ max_tokens: 0 }), 400, 'integer_below_min_value', 'max_tokens');
    await expectError(create({ max_tokens: 1.5 }), 400, 'invalid_type', 'max_tokens');
    await expectError(create({ max_completion_tokens: 4097 }), 400, 'integer_above_max_value', 'max_completion_tokens');
    await expectError(create({ max_tokens: 5, max_completion_tokens: 6 }), 400, 'invalid_value', 'max_tokens');
    await expectError(create({ temperature: 3 }), 400, 'invalid_value', 'temperature');
    await expectError(create({ top_p: -0.1 }), 400, 'invalid_value', 'top_p');
    await expectError(create({ stop: ['a', 'b', 'c', 'd', 'e'] }), 400, 'array_above_max_length', 'stop');
    await expectError(create({ n: 0 }), 400, 'integer_below_min_value', 'n');
    await expectError(create({ n: 1.5 }), 400, 'invalid_type', 'n');
    await expectError(create({ stream: 'yes' }), 400, 'invalid_type', 'stream');
    // The context window: 16384 tokens of prompt and completion together.
    await expectError(
      create({ messages: [{ role: 'user', content: 'x'.repeat(4 * 12_300) }], max_tokens: 4096 }),
      400,
      'context_length_exceeded',
      'max_tokens',
    );
    await expectError(
      create({ messages: [{ role: 'user', content: 'x'.repeat(4 * 16_400) }] }),
      400,
      'context_length_exceeded',
      'messages',
    );
    // Models: unknown, missing, and of the wrong kind for the endpoint.
    await expectError(create({ model: 'no-such-model' }), 400, 'model_not_found', 'model');
    await expectError(create({ model: undefined }), 400, 'missing_required_parameter', 'model');
    const wrongKind = await expectError(create({ model: 'deepshi-sketch' }), 400, 'model_not_supported', 'model');
    assert.match(wrongKind.message, /image model/);
    const textOnImages = await expectError(
      client.images.generate({ model: 'deepshi-echo', prompt: 'a fox' }),
      400,
      'model_not_supported',
      'model',
    );
    assert.match(textOnImages.message, /chat\/completions/);
    await expectBalance(t, account, '1');
  });

  it('the same keys and permissions as images: 401 without a valid key, 403 for a revoked key or a model the key may not use', async () => {
    const noKey = new OpenAI({ apiKey: 'sk-bf-nope', baseURL: `${t.url}/v1`, maxRetries: 0 });
    await expectError(
      noKey.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x' }] }),
      401,
      'invalid_api_key',
    );

    const sketchOnly = await t.createAccount('1', { models: ['deepshi-sketch'] });
    const denied = t.client(sketchOnly.key);
    await expectError(
      denied.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x' }] }),
      403,
      'model_not_found',
    );
    const listed = [];
    for await (const model of denied.models.list()) listed.push(model.id);
    assert.deepEqual(listed, ['deepshi-sketch']);

    const echoOnly = await t.createAccount('1', { models: ['deepshi-echo'] });
    const allowed = t.client(echoOnly.key);
    const models = [];
    for await (const model of allowed.models.list()) models.push(model as any);
    assert.deepEqual(
      models.map((model) => model.id),
      ['deepshi-echo'],
    );
    assert.equal(models[0].kind, 'text');
    assert.deepEqual(models[0].modalities, { input: ['text'], output: ['text'] });
    assert.equal(models[0].pricing.unit, 'token');
    assert.equal(
      (await allowed.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x' }] })).choices[0].message
        .content,
      'Echo: x',
    );
    await expectError(allowed.images.generate({ model: 'deepshi-sketch', prompt: 'x' }), 403, 'model_not_found');

    await t.admin('POST', `/admin/v1/keys/${echoOnly.keyId}/revoke`);
    await expectError(
      allowed.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x' }] }),
      403,
      'api_key_revoked',
    );
  });

  it('the same per-key rate limits: over requests per minute is a 429 with Retry-After, before any hold', async () => {
    const account = await t.createAccount('1');
    await t.admin('POST', `/admin/v1/keys/${account.keyId}/limits`, {
      requests_per_minute: 1,
      images_per_minute: null,
      max_in_flight: null,
    });
    const client = t.client(account.key);
    const first = await client.chat.completions
      .create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x' }] })
      .withResponse();
    assert.equal(first.response.headers.get('x-ratelimit-limit-requests'), '1');
    const refused = await expectError(
      client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x' }] }),
      429,
      'rate_limit_exceeded',
    );
    assert.ok(Number(refused.headers?.get('retry-after')) >= 1);
    const ledger = await t.admin('GET', `/admin/v1/accounts/${account.accountId}/ledger`);
    assert.equal(ledger.data.filter((entry: any) => entry.kind === 'hold').length, 1);
  });

  it("tokens per minute: admitted at the request's upper bound (prompt + max_tokens), the unused part given back, 429 with Retry-After past it", async () => {
    const account = await t.createAccount('1');
    await t.admin('POST', `/admin/v1/keys/${account.keyId}/limits`, { tokens_per_minute: 1000 });
    const client = t.client(account.key);
    const ask = (max_tokens: number) =>
      client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }], max_tokens }).withResponse();
    const first = await ask(700);
    assert.equal(first.response.headers.get('x-ratelimit-limit-tokens'), '1000');
    assert.equal(first.response.headers.get('x-ratelimit-remaining-tokens'), String(1000 - (promptTokens('hi') + 700)));
    assert.match(first.response.headers.get('x-ratelimit-reset-tokens')!, /s$/);
    // The answer used 6 + 2 tokens: the other 698 came back, so another bound of 706 fits.
    const second = await ask(700);
    assert.ok(Number(second.response.headers.get('x-ratelimit-remaining-tokens')) >= 1000 - 8 - 706);
    // Requests that use their whole bound (an answer longer than max_tokens): two of 404 fit, the third does not.
    const long = () =>
      client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x'.repeat(800) }], max_tokens: 200 });
    await long();
    await long();
    const refused = await expectError(long(), 429, 'rate_limit_exceeded');
    assert.ok(Number(refused.headers?.get('retry-after')) >= 1);
    assert.equal(refused.headers?.get('x-ratelimit-limit-tokens'), '1000');
    assert.match(refused.message, /tokens per minute/);
    const tooLarge = await expectError(ask(1000), 429, 'rate_limit_exceeded');
    assert.equal(tooLarge.headers?.get('x-should-retry'), 'false');
    // Image requests are not counted against tokens.
    const image = await client.images.generate({ model: 'deepshi-sketch', prompt: 'x', size: '64x64' } as any).withResponse();
    assert.equal(image.response.headers.get('x-ratelimit-limit-tokens'), null);
  });

  it('N concurrent chats against a balance covering exactly k holds: exactly k succeed, the rest get 402, the ledger sums', async () => {
    // max_tokens 2 on an answer longer than 8 characters: every completion uses its whole hold, so the outcome cannot
    // depend on the order in which holds and settlements interleave.
    const content = 'hello world';
    const hold = price(promptTokens(content), 2);
    const k = 23;
    const n = 60;
    const account = await t.createAccount((Number(hold * BigInt(k)) / 1e9).toFixed(9));
    const client = t.client(account.key);
    const results = await Promise.allSettled(
      Array.from({ length: n }, () =>
        client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content }], max_tokens: 2 }),
      ),
    );
    const ok = results.filter((result) => result.status === 'fulfilled');
    const rejected = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    assert.equal(ok.length, k);
    for (const failure of rejected) assert.equal((failure.reason as InstanceType<typeof OpenAI.APIError>).status, 402);
    await expectBalance(t, account, '0');
    const ledger = await t.admin('GET', `/admin/v1/accounts/${account.accountId}/ledger?limit=1000`);
    assert.equal(ledger.data.filter((entry: any) => entry.kind === 'hold').length, k);
    assert.equal(ledger.data.filter((entry: any) => entry.kind === 'settle').length, k);
  });

  it('Idempotency-Key: a retry gets the first completion back without a second charge', async () => {
    const account = await t.createAccount('1');
    const client = t.client(account.key);
    const body = { model: 'deepshi-echo', messages: [{ role: 'user' as const, content: 'once only' }] };
    const first = await client.chat.completions.create(body, { headers: { 'Idempotency-Key': 'chat-1' } }).withResponse();
    const balance = await t.balance(account.accountId);
    const again = await client.chat.completions.create(body, { headers: { 'Idempotency-Key': 'chat-1' } }).withResponse();
    assert.equal(again.response.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.data, first.data);
    assert.equal(await t.balance(account.accountId), balance);
    await expectError(
      client.chat.completions.create(
        { ...body, messages: [{ role: 'user', content: 'something else' }] },
        { headers: { 'Idempotency-Key': 'chat-1' } },
      ),
      422,
      'idempotency_key_reused',
    );
  });
});
