import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseUsd } from '../../src/domain/money.ts';
import { charged, collect, expectBalance, expectError } from '../helpers/assertions.ts';
import { documentedFetch } from '../helpers/openapi-responses.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/**
 * Several choices (`n`) on POST /v1/chat/completions with the offline deepshi-echo (catalog max_choices: 8), through the
 * openai SDK over HTTP: n distinct, deterministic choices, streamed interleaved under their indices; the hold covers
 * n × the completion budget plus the prompt once, the charge is the usage (prompt once, every choice's completion
 * tokens) at the catalog rates; n above the model's max is a 400 that costs nothing; a model serving one choice
 * ignores n with a warning. Upstream models with n: test/providers/launch-text-models.test.ts.
 */

/** deepshi-echo's documented token approximation (docs/chat.md): ceil(characters / 4), plus 4 per prompt message. */
const tokens = (text: string) => Math.ceil([...text].length / 4);
const promptTokens = (...contents: string[]) => contents.reduce((sum, content) => sum + 4 + tokens(content), 0);
/** deepshi-echo's rates (catalog/models.yaml: $0.10 / $0.40 per 1M tokens) are 100 and 400 nanos per token. */
const price = (prompt: number, completion: number) => BigInt(prompt) * 100n + BigInt(completion) * 400n;

/** A one-choice text model (no max_choices): what n > 1 does on a model that does not serve several. */
const SINGLE_CHOICE_CATALOG = JSON.stringify({
  version: 1,
  models: [
    {
      id: 'echo-one',
      owned_by: 'test',
      modalities: { input: ['text'], output: ['text'] },
      context_window: 1000,
      max_output_tokens: 100,
      streaming: true,
      supported_sampling_parameters: ['max_tokens', 'stop'],
      pricing: { unit: 'token', input_per_million: '0.1', output_per_million: '0.4' },
      routes: [{ provider: 'offline' }],
    },
  ],
});

describe('POST /v1/chat/completions with n > 1 (deepshi-echo)', () => {
  let t: TestServer;

  /** The ledger entries of one request, and their sums in nanos. */
  const ledgerOf = async (accountId: string, requestId: string) => {
    const ledger = await t.admin('GET', `/admin/v1/accounts/${accountId}/ledger?limit=1000`);
    const own = ledger.data.filter((entry: any) => entry.request_id === requestId);
    const signed = (usd: string) => (usd.startsWith('-') ? -parseUsd(usd.slice(1)) : parseUsd(usd));
    const sum = (field: string) => own.reduce((total: bigint, entry: any) => total + signed(entry[field]), 0n);
    return { own, available: sum('available_delta'), held: sum('held_delta') };
  };

  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  it('n=3: three distinct choices, usage = the prompt once + every choice, charged exactly that at the rates; the hold covered 3 × max_tokens', async () => {
    const account = await t.createAccount('1');
    const client = t.client(account.key);
    const body = { model: 'deepshi-echo', messages: [{ role: 'user' as const, content: 'a red fox' }], n: 3, max_tokens: 50 };
    const { result, charge } = await charged(t, account, () => client.chat.completions.create(body).withResponse());
    const completion = result.data;
    assert.deepEqual(
      completion.choices.map((choice) => [choice.index, choice.message.content, choice.finish_reason]),
      [
        [0, 'Echo: a red fox', 'stop'],
        [1, 'Echo 2: a red fox', 'stop'],
        [2, 'Echo 3: a red fox', 'stop'],
      ],
    );
    assert.equal((completion as any).warnings, undefined, 'n is served, not ignored');
    const prompt = promptTokens('a red fox');
    const completionTokens = tokens('Echo: a red fox') + tokens('Echo 2: a red fox') + tokens('Echo 3: a red fox');
    assert.equal(completion.usage!.prompt_tokens, prompt);
    assert.equal(completion.usage!.completion_tokens, completionTokens);
    assert.equal(completion.usage!.total_tokens, prompt + completionTokens);
    const cost = price(prompt, completionTokens);
    assert.equal(charge, cost);
    assert.equal(parseUsd(result.response.headers.get('x-request-cost')), cost);
    assert.equal((completion.usage as any).cost.total_cost, Number(cost) / 1e9);

    // The ledger: a hold of the prompt + 3 × 50 completion tokens, settled at the charge; it sums to the charge.
    const ledger = await ledgerOf(account.accountId, result.request_id!);
    assert.deepEqual(ledger.own.map((entry: any) => entry.kind).sort(), ['hold', 'settle']);
    const hold = ledger.own.find((entry: any) => entry.kind === 'hold');
    assert.equal(parseUsd(hold.held_delta), price(prompt, 3 * 50));
    assert.equal(hold.available_delta, `-${hold.held_delta}`);
    assert.equal(ledger.available, -cost);
    assert.equal(ledger.held, 0n);

    // Deterministic per (request, seed, choice index): the same request answers the same choices.
    const again = await client.chat.completions.create(body);
    assert.deepEqual(
      again.choices.map((choice) => choice.message.content),
      completion.choices.map((choice) => choice.message.content),
    );
  });

  it('the model card says how many choices (max_choices, parameters.n.max); a completion with 3 choices matches the served OpenAPI document', async () => {
    const account = await t.createAccount('1');
    const headers = { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' };
    const card = await documentedFetch(`${t.url}/v1/models/deepshi-echo`, { headers });
    assert.equal(card.body.max_choices, 8);
    assert.equal(card.body.parameters.n.max, 8);
    const answer = await documentedFetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }], n: 3 }),
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(
      answer.body.choices.map((choice: any) => choice.index),
      [0, 1, 2],
    );
  });

  it('n=3 streamed: every chunk names its choice, the choices interleave, each finishes, then one usage chunk for all', async () => {
    const account = await t.createAccount('1');
    const client = t.client(account.key);
    const content = 'streams several answers';
    const { result: chunks, charge } = await charged(t, account, async () => {
      const stream = await client.chat.completions.create({
        model: 'deepshi-echo',
        messages: [{ role: 'user', content }],
        n: 3,
        stream: true,
        stream_options: { include_usage: true },
      });
      return collect(stream);
    });
    const pieces = chunks.filter((chunk) => chunk.choices.length > 0);
    for (const chunk of pieces) assert.equal(chunk.choices.length, 1);
    const indices = pieces.map((chunk) => chunk.choices[0].index);
    // Each choice opens (its role chunk) just before its first piece; the pieces interleave.
    assert.deepEqual(indices.slice(0, 6), [0, 0, 1, 1, 2, 2], 'each role chunk, then its first piece, interleaved');
    for (const index of [0, 1, 2]) {
      assert.equal(pieces.find((chunk) => chunk.choices[0].index === index).choices[0].delta.role, 'assistant', `choice ${index} opens`);
    }
    const contentIndices = pieces.filter((chunk) => chunk.choices[0].delta.content).map((chunk) => chunk.choices[0].index);
    assert.deepEqual(contentIndices.slice(0, 6), [0, 1, 2, 0, 1, 2], 'the pieces interleave');
    const text = (index: number) =>
      pieces
        .filter((chunk) => chunk.choices[0].index === index)
        .map((chunk) => chunk.choices[0].delta.content ?? '')
        .join('');
    assert.deepEqual([0, 1, 2].map(text), [`Echo: ${content}`, `Echo 2: ${content}`, `Echo 3: ${content}`]);
    const finishes = pieces.filter((chunk) => chunk.choices[0].finish_reason !== null);
    assert.deepEqual(
      finishes.map((chunk) => [chunk.choices[0].index, chunk.choices[0].finish_reason]),
      [
        [0, 'stop'],
        [1, 'stop'],
        [2, 'stop'],
      ],
    );
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    const completionTokens = [0, 1, 2].reduce((sum, index) => sum + tokens(text(index)), 0);
    assert.equal(last.usage.prompt_tokens, promptTokens(content));
    assert.equal(last.usage.completion_tokens, completionTokens);
    assert.equal(charge, price(promptTokens(content), completionTokens));
  });

  it('n=2 with tools: each choice calls the tool with its own call id and schema-valid arguments', async () => {
    const account = await t.createAccount('1');
    const completion = await t.client(account.key).chat.completions.create({
      model: 'deepshi-echo',
      messages: [{ role: 'user', content: 'weather in Oslo' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
          },
        },
      ],
      tool_choice: 'required',
      n: 2,
    });
    assert.equal(completion.choices.length, 2);
    const calls = completion.choices.map((choice) => {
      assert.equal(choice.finish_reason, 'tool_calls');
      assert.equal(choice.message.content, null);
      return (choice.message.tool_calls as any[])[0];
    });
    assert.notEqual(calls[0].id, calls[1].id);
    for (const call of calls) {
      assert.equal(call.function.name, 'get_weather');
      assert.equal(typeof JSON.parse(call.function.arguments).city, 'string');
    }
  });

  it('n above the model max_choices: 400 naming n, with the limit in the message; nothing held or charged', async () => {
    const account = await t.createAccount('1');
    const error = await expectError(
      t.client(account.key).chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x' }], n: 9 }),
      400,
      'integer_above_max_value',
      'n',
    );
    assert.match(error.message, /deepshi-echo returns at most 8 choices per request; 'n' is 9\. Lower 'n' to 8 or fewer/);
    await expectBalance(t, account, '1');
    const ledger = await t.admin('GET', `/admin/v1/accounts/${account.accountId}/ledger?limit=1000`);
    assert.deepEqual(
      ledger.data.map((entry: any) => entry.kind),
      ['credit'],
    );
  });

  it('tokens per minute admit a request at prompt + n × max_tokens', async () => {
    const account = await t.createAccount('1');
    await t.admin('POST', `/admin/v1/keys/${account.keyId}/limits`, { tokens_per_minute: 1000 });
    const client = t.client(account.key);
    const ask = (n: number) =>
      client.chat.completions
        .create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }], max_tokens: 300, n })
        .withResponse();
    const first = await ask(3);
    assert.equal(first.response.headers.get('x-ratelimit-remaining-tokens'), String(1000 - (promptTokens('hi') + 3 * 300)));
    // 6 + 4 × 300 can never fit a window of 1000, though 6 + 300 would.
    const tooLarge = await expectError(ask(4), 429, 'rate_limit_exceeded');
    assert.equal(tooLarge.headers?.get('x-should-retry'), 'false');
  });

  it('Idempotency-Key: a retry gets every choice back (JSON and stream) without a second charge', async () => {
    const account = await t.createAccount('1');
    const client = t.client(account.key);
    const body = { model: 'deepshi-echo', messages: [{ role: 'user' as const, content: 'twice' }], n: 2 };
    const { result: first, charge } = await charged(t, account, () =>
      client.chat.completions.create(body, { headers: { 'Idempotency-Key': 'n-json' } }),
    );
    const { result: again, charge: none } = await charged(t, account, () =>
      client.chat.completions.create(body, { headers: { 'Idempotency-Key': 'n-json' } }),
    );
    assert.ok(charge > 0n);
    assert.equal(none, 0n);
    assert.deepEqual(again, first);
    assert.deepEqual(
      again.choices.map((choice) => choice.message.content),
      ['Echo: twice', 'Echo 2: twice'],
    );

    const streamed = async () => {
      const stream = await client.chat.completions.create({ ...body, stream: true }, { headers: { 'Idempotency-Key': 'n-sse' } });
      return collect(stream);
    };
    const { result: once } = await charged(t, account, streamed);
    const { result: replayed, charge: free } = await charged(t, account, streamed);
    assert.equal(free, 0n);
    assert.deepEqual(replayed, once);
    assert.deepEqual([...new Set(replayed.map((chunk) => chunk.choices[0]?.index))].sort(), [0, 1]);
  });
});

describe('n > 1 on a text model that serves one choice (no max_choices in the catalog)', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ catalog: SINGLE_CHOICE_CATALOG });
  });
  after(() => t.close());

  it('is ignored with a warning: one choice, billed as one', async () => {
    const account = await t.createAccount('1');
    const { result, charge } = await charged(t, account, () =>
      t
        .client(account.key)
        .chat.completions.create({ model: 'echo-one', messages: [{ role: 'user', content: 'x' }], n: 3 })
        .withResponse(),
    );
    assert.equal(result.data.choices.length, 1);
    assert.equal(result.data.choices[0].message.content, 'Echo: x');
    assert.deepEqual(
      (result.data as any).warnings.map((warning: any) => [warning.param, warning.message]),
      [['n', "echo-one returns one choice per request (asked for 3); 'n' was ignored."]],
    );
    assert.equal(result.response.headers.get('x-deepshi-warnings'), 'n');
    assert.equal(charge, price(promptTokens('x'), tokens('Echo: x')));
  });
});
