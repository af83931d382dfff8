import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type OpenAI from 'openai';
import { parseUsd } from '../../src/domain/money.ts';
import { promptTokenBound } from '../../src/providers/openai-compatible/openai-compatible-chat-adapter.ts';
import { ChatStreamReader, readChatCompletion } from '../../src/providers/openai-compatible/openai-chat-wire.ts';
import { charged, collect, expectBalance, expectError } from '../helpers/assertions.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';
import {
  simPromptTokens,
  simReasoning,
  simTokenLogprobs,
  simTokens,
  simToolCallTokens,
  startChatSimulator,
  type ChatSimulator,
} from '../simulators/openai-chat-simulator.ts';

/**
 * `n` > 1 through the OpenAI-compatible adapter (src/providers/openai-compatible/), with the openai SDK over HTTP:
 * gpt-4o on an OpenAI simulator and deepshi-3.0 on a vLLM-style reasoning simulator, each serving n choices as OpenAI
 * does (streamed interleaved, each chunk naming its index; usage: the prompt once, every choice's completion tokens).
 * What holds: `n` reaches the upstream in the exact body; every choice comes back under its index with its message,
 * finish reason, logprobs, tool calls and reasoning; the hold covers the prompt bound once plus n × max_tokens; the
 * charge is the upstream's reported usage at the catalog rates and the ledger sums to it; a failure is not charged.
 */

const KEYS = { three: 'sk-deepshi-3-0123456789', openai: 'sk-openai-0123456789' };
/** Catalog rates in nanos per token (catalog/models.yaml): the same for both models here. */
const price = (prompt: number, cached: number, completion: number) =>
  BigInt(prompt - cached) * 2500n + BigInt(cached) * 1250n + BigInt(completion) * 10_000n;
const signed = (usd: string) => (usd.startsWith('-') ? -parseUsd(usd.slice(1)) : parseUsd(usd));

describe('n > 1 on OpenAI-compatible upstreams (gpt-4o, deepshi-3.0)', () => {
  let three: ChatSimulator;
  let openai: ChatSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };
  let client: OpenAI;

  /** The request's ledger entries: the hold's amount, and the sums of every entry (available side, held side). */
  const ledgerOf = async (requestId: string) => {
    const ledger = await t.admin('GET', `/admin/v1/accounts/${account.accountId}/ledger?limit=1000`);
    const own = ledger.data.filter((entry: any) => entry.request_id === requestId);
    const sum = (field: string) => own.reduce((total: bigint, entry: any) => total + signed(entry[field]), 0n);
    const hold = own.find((entry: any) => entry.kind === 'hold');
    return {
      kinds: own.map((entry: any) => entry.kind).sort(),
      hold: signed(hold.held_delta),
      available: sum('available_delta'),
      held: sum('held_delta'),
    };
  };

  before(async () => {
    [three, openai] = await Promise.all([startChatSimulator({ apiKey: KEYS.three }), startChatSimulator({ apiKey: KEYS.openai })]);
    t = await startTestServer({
      env: {
        DEEPSHI_3_0_API_KEY: KEYS.three,
        DEEPSHI_3_0_BASE_URL: three.url,
        OPENAI_API_KEY: KEYS.openai,
        OPENAI_BASE_URL: `${openai.url}/v1`,
      },
    });
    account = await t.createAccount('10');
    client = t.client(account.key);
  });
  beforeEach(() => {
    for (const sim of [three, openai]) sim.reset();
    three.reasoning = 'reasoning_content';
  });
  after(async () => {
    await t.close();
    await Promise.all([three.close(), openai.close()]);
  });

  it('GET /v1/models lists how many choices each serves: gpt-4o 128, deepshi-3.0 8', async () => {
    for (const [id, max] of [
      ['gpt-4o', 128],
      ['deepshi-3.0', 8],
    ] as const) {
      const card = (await client.models.retrieve(id)) as any;
      assert.equal(card.max_choices, max, id);
      assert.equal(card.parameters.n.max, max, id);
    }
  });

  it('gpt-4o n=2: n in the exact upstream body; both choices back; charged the upstream usage; the hold was the prompt bound + 2 × max_tokens; the ledger sums', async () => {
    openai.cachedTokens = 2;
    const messages = [{ role: 'user' as const, content: 'hello' }];
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'gpt-4o', messages, n: 2, max_tokens: 30, logprobs: true, top_logprobs: 1 }).withResponse(),
    );
    assert.deepEqual(openai.requests[0].body, {
      logprobs: true,
      top_logprobs: 1,
      model: 'gpt-4o',
      messages,
      max_tokens: 30,
      n: 2,
      stream: false,
    });
    const completion = result.data;
    assert.deepEqual(
      completion.choices.map((choice) => [choice.index, choice.message.content, choice.finish_reason]),
      [
        [0, 'Reply: hello', 'stop'],
        [1, 'Reply 2: hello', 'stop'],
      ],
    );
    assert.deepEqual(completion.choices[1].logprobs, { content: simTokenLogprobs('Reply 2: hello', 1), refusal: null });
    const sent = openai.sentUsages[0];
    assert.equal(sent.completion_tokens, simTokens('Reply: hello') + simTokens('Reply 2: hello'));
    assert.equal(completion.usage!.prompt_tokens, sent.prompt_tokens);
    assert.equal(completion.usage!.completion_tokens, sent.completion_tokens);
    const cost = price(sent.prompt_tokens, 2, sent.completion_tokens);
    assert.equal(charge, cost);
    assert.equal(parseUsd(result.response.headers.get('x-request-cost')!), cost);
    const ledger = await ledgerOf(result.request_id!);
    assert.deepEqual(ledger.kinds, ['hold', 'settle']);
    assert.equal(
      ledger.hold,
      price(promptTokenBound([{ role: 'user', content: 'hello' }], { logprobs: true, top_logprobs: 1 }), 0, 2 * 30),
    );
    assert.equal(ledger.available, -cost);
    assert.equal(ledger.held, 0n);
  });

  it('gpt-4o n=2 streamed: chunks interleaved under each index, each choice finishes, the usage chunk (all choices) at the end', async () => {
    const content = 'stream two';
    const { result: chunks, charge } = await charged(t, account, async () => {
      const stream = await client.chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content }],
        n: 2,
        max_tokens: 40,
        stream: true,
        stream_options: { include_usage: true },
      });
      return collect(stream);
    });
    assert.deepEqual(openai.requests[0].body, {
      model: 'gpt-4o',
      messages: [{ role: 'user', content }],
      max_tokens: 40,
      n: 2,
      stream: true,
      stream_options: { include_usage: true },
    });
    const pieces = chunks.filter((chunk) => chunk.choices.length > 0);
    const contentIndices = pieces.filter((chunk) => chunk.choices[0].delta.content).map((chunk) => chunk.choices[0].index);
    assert.deepEqual(contentIndices.slice(0, 4), [0, 1, 0, 1], 'interleaved as the upstream sent them');
    const text = (index: number) =>
      pieces
        .filter((chunk) => chunk.choices[0].index === index)
        .map((chunk) => chunk.choices[0].delta.content ?? '')
        .join('');
    assert.deepEqual([text(0), text(1)], [`Reply: ${content}`, `Reply 2: ${content}`]);
    assert.deepEqual(
      pieces.filter((chunk) => chunk.choices[0].finish_reason).map((chunk) => [chunk.choices[0].index, chunk.choices[0].finish_reason]),
      [
        [0, 'stop'],
        [1, 'stop'],
      ],
    );
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    const sent = openai.sentUsages[0];
    assert.equal(last.usage.completion_tokens, sent.completion_tokens);
    assert.equal(charge, price(sent.prompt_tokens, 0, sent.completion_tokens));
  });

  it('gpt-4o n=2 tool calls: each choice its own calls (ids as the upstream gave them), streamed and not; billed for both', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'search', parameters: { type: 'object', properties: {} } } }];
    const body = { model: 'gpt-4o', messages: [{ role: 'user' as const, content: 'call: cats' }], tools, n: 2 };
    const { result, charge } = await charged(t, account, () => client.chat.completions.create(body));
    assert.deepEqual(
      result.choices.map((choice) => [choice.finish_reason, (choice.message.tool_calls as any[]).map((call) => call.id)]),
      [
        ['tool_calls', ['call_sim_0']],
        ['tool_calls', ['call_sim_0_c1']],
      ],
    );
    assert.equal((result.choices[1].message.tool_calls as any[])[0].function.arguments, '{"query":"cats","n":0}');
    const calls = result.choices.flatMap((choice) => choice.message.tool_calls as any[]);
    assert.equal(result.usage!.completion_tokens, simToolCallTokens(calls));
    assert.equal(charge, price(openai.sentUsages[0].prompt_tokens, 0, openai.sentUsages[0].completion_tokens));

    const stream = await client.chat.completions.create({ ...body, stream: true });
    const ids = new Map<number, string>();
    const args = new Map<number, string>();
    for await (const chunk of stream) {
      for (const choice of chunk.choices) {
        for (const call of choice.delta.tool_calls ?? []) {
          if (call.id) ids.set(choice.index, call.id);
          args.set(choice.index, (args.get(choice.index) ?? '') + (call.function?.arguments ?? ''));
        }
      }
    }
    assert.deepEqual([...ids.entries()].sort(), [
      [0, 'call_sim_0'],
      [1, 'call_sim_0_c1'],
    ]);
    assert.deepEqual([args.get(0), args.get(1)], ['{"query":"cats","n":0}', '{"query":"cats","n":0}']);
  });

  it('deepshi-3.0 n=2 (vLLM reasoning_content): n forwarded; each choice has its reasoning; usage (reasoning included, cached tokens) charged at the rates', async () => {
    three.cachedTokens = 3;
    const content = 'why is the sky blue?';
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'deepshi-3.0', messages: [{ role: 'user', content }], n: 2, max_tokens: 100 }).withResponse(),
    );
    assert.deepEqual(three.requests[0].body, {
      model: 'deepshi-3.0',
      messages: [{ role: 'user', content }],
      max_tokens: 100,
      n: 2,
      stream: false,
    });
    const trace = simReasoning(content);
    assert.deepEqual(
      result.data.choices.map((choice) => [choice.index, choice.message.content, (choice.message as any).reasoning]),
      [
        [0, `Reply: ${content}`, trace],
        [1, `Reply 2: ${content}`, trace],
      ],
    );
    const sent = three.sentUsages[0];
    const completionTokens = 2 * simTokens(trace) + simTokens(`Reply: ${content}`) + simTokens(`Reply 2: ${content}`);
    assert.equal(sent.completion_tokens, completionTokens);
    assert.equal(sent.prompt_tokens, simPromptTokens(content), 'the prompt once');
    assert.equal(result.data.usage!.completion_tokens_details!.reasoning_tokens, 2 * simTokens(trace));
    const cost = price(sent.prompt_tokens, 3, completionTokens);
    assert.equal(charge, cost);
    const ledger = await ledgerOf(result.request_id!);
    assert.equal(ledger.hold, price(promptTokenBound([{ role: 'user', content }], {}), 0, 2 * 100));
    assert.equal(ledger.available, -cost);
    assert.equal(ledger.held, 0n);
  });

  it('deepshi-3.0 n=2 streamed: delta.reasoning then content for each choice under its index; charge = the upstream usage', async () => {
    const content = 'count';
    const { result: chunks, charge } = await charged(t, account, async () => {
      const stream = await client.chat.completions.create({
        model: 'deepshi-3.0',
        messages: [{ role: 'user', content }],
        n: 2,
        stream: true,
        stream_options: { include_usage: true },
      });
      return collect(stream);
    });
    assert.equal(three.requests[0].body.n, 2);
    const pieces = chunks.filter((chunk) => chunk.choices.length > 0);
    const of = (index: number, field: string) =>
      pieces
        .filter((chunk) => chunk.choices[0].index === index)
        .map((chunk) => chunk.choices[0].delta[field] ?? '')
        .join('');
    const trace = simReasoning(content);
    assert.deepEqual([of(0, 'reasoning'), of(1, 'reasoning')], [trace, trace]);
    assert.deepEqual([of(0, 'content'), of(1, 'content')], [`Reply: ${content}`, `Reply 2: ${content}`]);
    const sent = three.sentUsages[0];
    assert.equal(chunks.at(-1).usage.completion_tokens, sent.completion_tokens);
    assert.equal(charge, price(sent.prompt_tokens, 0, sent.completion_tokens));
  });

  it('an upstream that reports no usage: each choice billed at its UTF-8 bytes (within max_tokens), with a warning', async () => {
    openai.setFault({ kind: 'no-usage' });
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], n: 2, max_tokens: 10 }),
    );
    const bytes = Buffer.byteLength('Reply: hi') + Math.min(Buffer.byteLength('Reply 2: hi'), 10);
    assert.equal(result.usage!.completion_tokens, bytes);
    assert.equal(charge, price(promptTokenBound([{ role: 'user', content: 'hi' }], {}), 0, bytes));
    assert.ok((result as any).warnings.some((warning: any) => warning.param === 'usage'));
  });

  it('an upstream answering fewer choices than n: what it answered, a warning on n, charged its usage; streamed, no choice opens without finishing', async () => {
    openai.setFault({ kind: 'fewer-choices' });
    const messages = [{ role: 'user' as const, content: 'three please' }];
    const { result, charge } = await charged(t, account, () => client.chat.completions.create({ model: 'gpt-4o', messages, n: 3 }));
    assert.deepEqual(
      result.choices.map((choice) => choice.index),
      [0, 1],
    );
    assert.ok((result as any).warnings.some((warning: any) => warning.param === 'n'));
    const sent = openai.sentUsages[0];
    assert.equal(charge, price(sent.prompt_tokens, 0, sent.completion_tokens));

    const { result: chunks, charge: streamedCharge } = await charged(t, account, async () => {
      const stream = await client.chat.completions.create({
        model: 'gpt-4o',
        messages,
        n: 3,
        stream: true,
        stream_options: { include_usage: true },
      });
      return collect(stream);
    });
    const pieces = chunks.filter((chunk) => chunk.choices.length > 0).map((chunk) => chunk.choices[0]);
    const opened = pieces.filter((choice) => choice.delta.role === 'assistant').map((choice) => choice.index);
    const finished = pieces.filter((choice) => choice.finish_reason).map((choice) => choice.index);
    assert.deepEqual(opened, [0, 1], 'only the answered choices open');
    assert.deepEqual(finished, [0, 1], 'and each of them finishes');
    const streamedUsage = openai.sentUsages[1];
    assert.equal(chunks.at(-1).usage.completion_tokens, streamedUsage.completion_tokens);
    assert.equal(streamedCharge, price(streamedUsage.prompt_tokens, 0, streamedUsage.completion_tokens));
  });

  it('a stream that fails mid-way is not charged and leaves no hold; n above max_choices is a 400 that never reaches the upstream', async () => {
    const start = await t.balance(account.accountId);
    openai.setFault({ kind: 'stream-error' });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'a longer answer' }],
      n: 2,
      stream: true,
    });
    await assert.rejects(async () => {
      for await (const _ of stream);
    });
    await expectBalance(t, account, start);

    openai.reset();
    await expectError(
      client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }], n: 129 }),
      400,
      'integer_above_max_value',
      'n',
    );
    await expectError(
      client.chat.completions.create({ model: 'deepshi-3.0', messages: [{ role: 'user', content: 'x' }], n: 9 }),
      400,
      'integer_above_max_value',
      'n',
    );
    assert.equal(openai.requests.length + three.requests.length, 0);
    await expectBalance(t, account, start);
  });
});

describe('reading several choices off the wire (openai-chat-wire.ts)', () => {
  const sse = (...events: unknown[]) =>
    Buffer.from(events.map((event) => `data: ${typeof event === 'string' ? event : JSON.stringify(event)}\n\n`).join(''));
  const piece = (index: number, delta: Record<string, unknown>, finish: string | null = null) => ({
    choices: [{ index, delta, finish_reason: finish }],
  });

  it('a completion: choices in the order of their index, renumbered, at most n', () => {
    const body = {
      choices: [
        { index: 2, message: { content: 'third' }, finish_reason: 'stop' },
        { index: 0, message: { content: 'first' }, finish_reason: 'length' },
        { index: 1, message: { content: 'second' }, finish_reason: 'stop' },
      ],
      usage: { prompt_tokens: 5, completion_tokens: 9 },
    };
    const answer = readChatCompletion({ json: () => body } as any, 2);
    assert.deepEqual(
      answer.choices.map((choice) => [choice.content, choice.finishReason]),
      [
        ['first', 'length'],
        ['second', 'stop'],
      ],
    );
    assert.deepEqual(answer.usage, { promptTokens: 5, completionTokens: 9 });
  });

  it('a stream: each piece passed on under its choice (numbered as they first appear), choices past n dropped, each must finish', () => {
    const seen: Array<[number, string]> = [];
    const reader = new ChatStreamReader({ onDelta: (choice, text) => seen.push([choice, text]) }, 2);
    reader.push(sse(piece(5, { content: 'a' }), piece(7, { content: 'b' }), piece(9, { content: 'dropped' }), piece(5, { content: 'c' })));
    reader.push(
      sse(piece(5, {}, 'stop'), piece(7, {}, 'length'), { choices: [], usage: { prompt_tokens: 1, completion_tokens: 3 } }, '[DONE]'),
    );
    assert.deepEqual(seen, [
      [0, 'a'],
      [1, 'b'],
      [0, 'c'],
    ]);
    const answer = reader.finish();
    assert.deepEqual(
      answer.choices.map((choice) => [choice.content, choice.finishReason]),
      [
        ['ac', 'stop'],
        ['b', 'length'],
      ],
    );

    const cut = new ChatStreamReader({ onDelta: () => {} }, 2);
    cut.push(sse(piece(0, { content: 'a' }), piece(1, { content: 'b' }), piece(0, {}, 'stop')));
    assert.throws(() => cut.finish(), /ended the stream before the answer was complete/);
  });
});
