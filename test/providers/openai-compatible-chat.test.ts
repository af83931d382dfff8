import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import { parseUsd } from '../../src/domain/money.ts';
import {
  buildChatRequestBody,
  chatEndpoint,
  MESSAGE_OVERHEAD,
  promptTokenBound,
  REPLY_OVERHEAD,
} from '../../src/providers/openai-compatible/openai-compatible-chat-adapter.ts';
import type { NormalizedChatRequest } from '../../src/providers/types.ts';
import { parse as parseYaml } from 'yaml';
import { charged, expectBalanceOnceSettled, failsWith, settledState } from '../helpers/assertions.ts';
import { deadPort } from '../helpers/ports.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';
import {
  simPromptTokens,
  simToolCallTokens,
  simTokens,
  startChatSimulator,
  type ChatSimulator,
} from '../simulators/openai-chat-simulator.ts';

/**
 * The openai-compatible chat adapter end to end: openai SDK → Deepshi → a local OpenAI chat completions simulator.
 * Exact upstream bodies, exact answers, exact charges (the upstream's tokens × the catalog rates), streaming, faults,
 * failover and the hold's upper bound.
 */

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');
const KEY = 'sk-chat-sim-0123456789';
const TIMEOUTS = { connect_ms: 1000, first_byte_ms: 1500, total_ms: 5000 };
/** chat-sim's rates in nanos per token: $2.50 / $1.25 / $10 per 1M. */
const RATES = { input: 2500n, cached: 1250n, output: 10_000n };

const price = (prompt: number, cached: number, completion: number) =>
  (BigInt(prompt - cached) * RATES.input * 1_000_000n +
    BigInt(cached) * RATES.cached * 1_000_000n +
    BigInt(completion) * RATES.output * 1_000_000n +
    999_999n) /
  1_000_000n;

function textModel(id: string, overrides: Record<string, unknown>, routes: unknown[]) {
  return {
    id,
    owned_by: 'test',
    modalities: { input: ['text'], output: ['text'] },
    context_window: 4096,
    max_output_tokens: 1024,
    streaming: true,
    supported_sampling_parameters: [
      'temperature',
      'top_p',
      'max_tokens',
      'max_completion_tokens',
      'stop',
      'seed',
      'frequency_penalty',
      'presence_penalty',
    ],
    supported_features: ['tools', 'json', 'structured'],
    pricing: { unit: 'token', input_per_million: '2.5', cached_input_per_million: '1.25', output_per_million: '10' },
    routes,
    ...overrides,
  };
}

const simRoute = (options: Record<string, unknown> = {}) => ({
  provider: 'openai-compatible',
  upstream_model: 'sim-model',
  credentials_env: 'CHAT_SIM_KEY',
  base_url_env: 'CHAT_SIM_URL',
  options: { timeouts: TIMEOUTS, ...options },
});

function catalogJson(dead: number): string {
  const catalog = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
  catalog.models.push(
    textModel('chat-sim', {}, [simRoute()]),
    textModel('chat-sim-plain', { supported_sampling_parameters: [], supported_features: [] }, [simRoute()]),
    textModel('chat-sim-mct', {}, [simRoute({ max_tokens_field: 'max_completion_tokens' })]),
    textModel('chat-failover', {}, [
      {
        provider: 'openai-compatible',
        upstream_model: 'dead-model',
        base_url: `http://127.0.0.1:${dead}/v1`,
        options: { timeouts: TIMEOUTS },
      },
      simRoute(),
    ]),
  );
  return JSON.stringify(catalog);
}

describe('openai-compatible chat adapter through POST /v1/chat/completions', () => {
  let sim: ChatSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };
  let client: OpenAI;

  before(async () => {
    sim = await startChatSimulator({ apiKey: KEY });
    t = await startTestServer({
      env: { CHAT_SIM_KEY: KEY, CHAT_SIM_URL: sim.url, OPENAI_API_KEY: KEY, OPENAI_BASE_URL: `${sim.url}/v1` },
      catalog: catalogJson(await deadPort()),
    });
    account = await t.createAccount('10');
    client = t.client(account.key);
  });
  beforeEach(() => sim.reset());
  after(async () => {
    await t.close();
    await sim.close();
  });

  async function failsUncharged(call: () => Promise<unknown>, expected: Parameters<typeof failsWith>[1]) {
    const { result, charge } = await charged(t, account, () => failsWith(call, expected));
    assert.equal(charge, 0n, 'nothing charged');
    return result;
  }

  /** Reads a stream to its end or its error: the content deltas in order, every chunk, and the error if any. */
  async function collect(stream: AsyncIterable<any>) {
    const deltas: string[] = [];
    const chunks: any[] = [];
    let error: unknown;
    try {
      for await (const chunk of stream) {
        chunks.push(chunk);
        const text = chunk.choices[0]?.delta?.content;
        if (text) deltas.push(text);
      }
    } catch (caught) {
      error = caught;
    }
    return { deltas, chunks, error };
  }

  it('a plain request: exact upstream request, exact answer, cost = upstream tokens × catalog rates (body, header and balance agree)', async () => {
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'hello there' },
    ];
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'chat-sim', messages }).withResponse(),
    );
    assert.equal(sim.requests.length, 1);
    const [upstream] = sim.requests;
    assert.equal(upstream.method, 'POST');
    assert.equal(upstream.path, '/v1/chat/completions');
    assert.equal(upstream.headers.authorization, `Bearer ${KEY}`);
    assert.equal(upstream.headers['content-type'], 'application/json');
    assert.deepEqual(upstream.body, { model: 'sim-model', messages, max_tokens: 1024, stream: false });

    const completion = result.data as any;
    assert.deepEqual(completion.choices[0].message, { role: 'assistant', content: 'Reply: hello there', refusal: null });
    assert.equal(completion.choices[0].finish_reason, 'stop');
    const prompt = simPromptTokens('Be brief.', 'hello there');
    const output = simTokens('Reply: hello there');
    const cost = price(prompt, 0, output);
    assert.deepEqual(completion.usage, {
      prompt_tokens: prompt,
      completion_tokens: output,
      total_tokens: prompt + output,
      prompt_tokens_details: { cached_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0 },
      cost: { total_cost: Number(cost) / 1e9 },
    });
    assert.equal(completion.usage.prompt_tokens, sim.sentUsages[0].prompt_tokens);
    assert.equal(charge, cost);
    assert.equal(parseUsd(result.response.headers.get('x-request-cost')!), cost);
    assert.equal(completion.warnings, undefined);
  });

  it('cached prompt tokens are billed at the cached rate', async () => {
    sim.cachedTokens = 5;
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'a longer question to cache' }] }),
    );
    const prompt = simPromptTokens('a longer question to cache');
    assert.deepEqual(result.usage!.prompt_tokens_details, { cached_tokens: 5 });
    assert.equal(charge, price(prompt, 5, simTokens('Reply: a longer question to cache')));
  });

  it('sampling parameters, stop and max_tokens are sent exactly as given; max_tokens cuts the answer (finish length)', async () => {
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({
        model: 'chat-sim',
        messages: [{ role: 'user', content: 'tell me everything about foxes' }],
        temperature: 0.3,
        top_p: 0.9,
        seed: 7,
        frequency_penalty: 0.5,
        presence_penalty: -0.5,
        stop: ['STOP', 'END'],
        max_tokens: 3,
      }),
    );
    assert.deepEqual(sim.requests[0].body, {
      model: 'sim-model',
      messages: [{ role: 'user', content: 'tell me everything about foxes' }],
      max_tokens: 3,
      stop: ['STOP', 'END'],
      temperature: 0.3,
      top_p: 0.9,
      seed: 7,
      frequency_penalty: 0.5,
      presence_penalty: -0.5,
      stream: false,
    });
    assert.equal(result.choices[0].message.content, 'Reply: tell ');
    assert.equal(result.choices[0].finish_reason, 'length');
    assert.equal(charge, price(simPromptTokens('tell me everything about foxes'), 0, 3));
  });

  it('stop ends the answer upstream; max_completion_tokens from the caller is sent as max_tokens by default', async () => {
    const result = await client.chat.completions.create({
      model: 'chat-sim',
      messages: [{ role: 'user', content: 'one STOP two' }],
      stop: 'STOP',
      max_completion_tokens: 50,
    });
    assert.deepEqual(sim.requests[0].body, {
      model: 'sim-model',
      messages: [{ role: 'user', content: 'one STOP two' }],
      max_tokens: 50,
      stop: ['STOP'],
      stream: false,
    });
    assert.equal(result.choices[0].message.content, 'Reply: one ');
    assert.equal(result.choices[0].finish_reason, 'stop');
  });

  it('a route with max_tokens_field: max_completion_tokens sends that field instead', async () => {
    await client.chat.completions.create({ model: 'chat-sim-mct', messages: [{ role: 'user', content: 'hi' }], max_tokens: 20 });
    assert.deepEqual(sim.requests[0].body, {
      model: 'sim-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_completion_tokens: 20,
      stream: false,
    });
  });

  it('a model that honours no sampling parameter: none is sent, each is reported back as ignored', async () => {
    const { data, response } = await client.chat.completions
      .create({
        model: 'chat-sim-plain',
        messages: [{ role: 'user', content: 'hi' }],
        temperature: 1,
        top_p: 0.5,
        seed: 1,
        stop: 'x',
        response_format: { type: 'json_object' },
      })
      .withResponse();
    assert.deepEqual(sim.requests[0].body, {
      model: 'sim-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 1024,
      stream: false,
    });
    assert.deepEqual(
      (data as any).warnings.map((warning: any) => warning.param),
      ['temperature', 'top_p', 'seed', 'stop', 'response_format'],
    );
    assert.equal(response.headers.get('x-deepshi-warnings'), 'temperature,top_p,seed,stop,response_format');
  });

  it('messages keep their roles, names, tool calls and tool results; content parts are joined', async () => {
    const toolCalls = [{ id: 'call_1', type: 'function' as const, function: { name: 'weather', arguments: '{"city":"Oslo"}' } }];
    await client.chat.completions.create({
      model: 'chat-sim',
      messages: [
        { role: 'developer', content: 'Use tools.' },
        {
          role: 'user',
          name: 'ana',
          content: [
            { type: 'text', text: 'weather' },
            { type: 'text', text: 'in Oslo?' },
          ],
        },
        { role: 'assistant', content: null, tool_calls: toolCalls },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 3}' },
      ],
    });
    assert.deepEqual(sim.requests[0].body.messages, [
      { role: 'developer', content: 'Use tools.' },
      { role: 'user', content: 'weather\nin Oslo?', name: 'ana' },
      { role: 'assistant', content: null, tool_calls: toolCalls },
      { role: 'tool', content: '{"temp": 3}', tool_call_id: 'call_1' },
    ]);
  });

  it('features the model lists and unknown extras are forwarded; URL-carrying extras are dropped with a warning', async () => {
    const schema = {
      type: 'json_schema' as const,
      json_schema: { name: 'answer', schema: { $id: 'https://example.com/answer.json', type: 'object' } },
    };
    const data = await client.chat.completions.create({
      model: 'chat-sim',
      messages: [{ role: 'user', content: 'hi' }],
      response_format: schema,
      metadata: { topic: 'foxes' },
      service_tier: 'flex',
      prediction: { type: 'content', content: 'http://evil.example/' },
    } as any);
    assert.deepEqual(sim.requests[0].body, {
      metadata: { topic: 'foxes' },
      service_tier: 'flex',
      response_format: schema,
      model: 'sim-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 1024,
      stream: false,
    });
    assert.deepEqual(
      (data as any).warnings.map((warning: any) => warning.param),
      ['prediction'],
    );
  });

  describe('tool calls', () => {
    const weather = {
      type: 'function' as const,
      function: {
        name: 'get_weather',
        description: 'Weather in a city',
        parameters: { type: 'object', properties: { query: { type: 'string' } } },
      },
    };
    const time = { type: 'function' as const, function: { name: 'get_time', parameters: { type: 'object', properties: {} } } };
    const call = (index: number, name: string, query: string) => ({
      id: `call_sim_${index}`,
      type: 'function' as const,
      function: { name, arguments: JSON.stringify({ query, n: index }) },
    });
    const toolsPrompt = (tools: unknown[]) => simTokens(JSON.stringify(tools));

    /** Every tool call piece of a stream, and the calls they add up to (OpenAI's accumulation rule: by index). */
    function toolCallsOf(chunks: any[]) {
      const pieces = chunks.flatMap((chunk) => chunk.choices[0]?.delta?.tool_calls ?? []);
      const calls: any[] = [];
      for (const piece of pieces) {
        if (piece.id)
          calls[piece.index] = {
            id: piece.id,
            type: piece.type,
            function: { name: piece.function.name, arguments: piece.function.arguments },
          };
        else calls[piece.index].function.arguments += piece.function.arguments;
      }
      return { pieces, calls };
    }

    it('non-streaming: tool_calls exactly, content null, finish tool_calls; tools, tool_choice, parallel_tool_calls forwarded; billed on the upstream usage', async () => {
      const messages = [{ role: 'user' as const, content: 'call: weather in Oslo' }];
      const { result, charge } = await charged(t, account, () =>
        client.chat.completions
          .create({
            model: 'chat-sim',
            messages,
            tools: [weather, time],
            tool_choice: 'auto',
            parallel_tool_calls: true,
          })
          .withResponse(),
      );
      assert.deepEqual(sim.requests[0].body, {
        tools: [weather, time],
        tool_choice: 'auto',
        parallel_tool_calls: true,
        model: 'sim-model',
        messages,
        max_tokens: 1024,
        stream: false,
      });
      const expected = [call(0, 'get_weather', 'weather in Oslo'), call(1, 'get_time', 'weather in Oslo')];
      const completion = result.data;
      assert.deepEqual(completion.choices[0].message, { role: 'assistant', content: null, refusal: null, tool_calls: expected });
      assert.equal(completion.choices[0].finish_reason, 'tool_calls');
      const prompt = simPromptTokens(messages[0].content) + toolsPrompt([weather, time]);
      const output = simToolCallTokens(expected);
      assert.equal(completion.usage!.prompt_tokens, prompt);
      assert.equal(completion.usage!.completion_tokens, output);
      assert.equal(charge, price(prompt, 0, output));
      assert.equal(parseUsd(result.response.headers.get('x-request-cost')!), charge);
      assert.equal((completion as any).warnings, undefined);
    });

    it('a specific tool_choice and parallel_tool_calls false are forwarded as given (one call each)', async () => {
      const named = await client.chat.completions.create({
        model: 'chat-sim',
        messages: [{ role: 'user', content: 'call: now' }],
        tools: [weather, time],
        tool_choice: { type: 'function', function: { name: 'get_time' } },
      });
      assert.deepEqual(sim.requests[0].body.tool_choice, { type: 'function', function: { name: 'get_time' } });
      assert.deepEqual(named.choices[0].message.tool_calls, [call(0, 'get_time', 'now')]);
      const single = await client.chat.completions.create({
        model: 'chat-sim',
        messages: [{ role: 'user', content: 'call: x' }],
        tools: [weather, time],
        parallel_tool_calls: false,
        tool_choice: 'required',
      });
      assert.equal(sim.requests[1].body.parallel_tool_calls, false);
      assert.equal(sim.requests[1].body.tool_choice, 'required');
      assert.deepEqual(single.choices[0].message.tool_calls, [call(0, 'get_weather', 'x')]);
      const none = await client.chat.completions.create({
        model: 'chat-sim',
        messages: [{ role: 'user', content: 'call: x' }],
        tools: [weather],
        tool_choice: 'none',
      });
      assert.equal(none.choices[0].message.content, 'Reply: call: x');
      assert.equal(none.choices[0].message.tool_calls, undefined);
      assert.equal(none.choices[0].finish_reason, 'stop');
    });

    it('streaming: OpenAI-shaped delta.tool_calls pieces (first with id, type, name and arguments "", then argument fragments), finish tool_calls, exact charge', async () => {
      sim.pieceTokens = 2;
      const messages = [{ role: 'user' as const, content: 'call: weather in Oslo' }];
      const { result, charge } = await charged(t, account, async () =>
        collect(
          await client.chat.completions.create({
            model: 'chat-sim',
            messages,
            tools: [weather, time],
            stream: true,
            stream_options: { include_usage: true },
          }),
        ),
      );
      assert.equal(result.error, undefined);
      assert.deepEqual(sim.requests[0].body, {
        tools: [weather, time],
        model: 'sim-model',
        messages,
        max_tokens: 1024,
        stream: true,
        stream_options: { include_usage: true },
      });
      const expected = [call(0, 'get_weather', 'weather in Oslo'), call(1, 'get_time', 'weather in Oslo')];
      const { pieces, calls } = toolCallsOf(result.chunks);
      assert.deepEqual(calls, expected);
      // The upstream's pieces, passed on one by one in OpenAI's shape: 8-character argument fragments.
      const expectedPieces = expected.flatMap((tool, index) => [
        { index, id: tool.id, type: 'function', function: { name: tool.function.name, arguments: '' } },
        ...tool.function.arguments.match(/.{1,8}/g)!.map((fragment) => ({ index, function: { arguments: fragment } })),
      ]);
      assert.deepEqual(pieces, expectedPieces);
      assert.deepEqual(result.deltas, []);
      const finish = result.chunks.find((chunk) => chunk.choices[0]?.finish_reason);
      assert.equal(finish.choices[0].finish_reason, 'tool_calls');
      const prompt = simPromptTokens(messages[0].content) + toolsPrompt([weather, time]);
      const cost = price(prompt, 0, simToolCallTokens(expected));
      assert.equal(result.chunks.at(-1).usage.completion_tokens, simToolCallTokens(expected));
      assert.equal(charge, cost);
    });

    it("a server streaming odd pieces (indices 10, 20; id before name): renumbered 0, 1 and passed on in OpenAI's shape", async () => {
      sim.setFault({ kind: 'odd-tool-stream' });
      const result = await collect(
        await client.chat.completions.create({
          model: 'chat-sim',
          messages: [{ role: 'user', content: 'call: z' }],
          tools: [weather, time],
          stream: true,
        }),
      );
      assert.equal(result.error, undefined);
      const expected = [call(0, 'get_weather', 'z'), call(1, 'get_time', 'z')];
      assert.deepEqual(
        toolCallsOf(result.chunks).pieces,
        expected.flatMap((tool, index) => [
          { index, id: tool.id, type: 'function', function: { name: tool.function.name, arguments: '' } },
          { index, function: { arguments: tool.function.arguments } },
        ]),
      );
    });

    it("streaming through the SDK's stream helper: finalChatCompletion() reassembles the tool call", async () => {
      const stream = client.chat.completions.stream({
        model: 'chat-sim',
        messages: [{ role: 'user', content: 'call: Bergen' }],
        tools: [weather],
      });
      const final = await stream.finalChatCompletion();
      assert.deepEqual(final.choices[0].message.tool_calls, [call(0, 'get_weather', 'Bergen')]);
      assert.equal(final.choices[0].finish_reason, 'tool_calls');
    });

    it('the round trip: tool call, then the tool result message, then a text answer; both turns billed exactly', async () => {
      const question = { role: 'user' as const, content: 'call: weather in Oslo' };
      const first = await charged(t, account, () =>
        client.chat.completions.create({ model: 'chat-sim', messages: [question], tools: [weather] }),
      );
      const assistant = first.result.choices[0].message;
      assert.deepEqual(assistant.tool_calls, [call(0, 'get_weather', 'weather in Oslo')]);
      assert.equal(
        first.charge,
        price(simPromptTokens(question.content) + toolsPrompt([weather]), 0, simToolCallTokens(assistant.tool_calls as any)),
      );

      const toolResult = { role: 'tool' as const, tool_call_id: assistant.tool_calls![0].id, content: '{"temp": 3}' };
      const second = await charged(t, account, async () =>
        collect(
          await client.chat.completions.create({
            model: 'chat-sim',
            messages: [question, assistant as any, toolResult],
            tools: [weather],
            stream: true,
          }),
        ),
      );
      assert.equal(second.result.error, undefined);
      assert.deepEqual(sim.requests[1].body.messages, [
        question,
        { role: 'assistant', content: null, tool_calls: assistant.tool_calls },
        { role: 'tool', content: '{"temp": 3}', tool_call_id: 'call_sim_0' },
      ]);
      assert.equal(second.result.deltas.join(''), 'Tool said: {"temp": 3}');
      assert.equal(second.result.chunks.find((chunk) => chunk.choices[0]?.finish_reason).choices[0].finish_reason, 'stop');
      const prompt = simPromptTokens(question.content, JSON.stringify(assistant.tool_calls), '{"temp": 3}') + toolsPrompt([weather]);
      assert.equal(second.charge, price(prompt, 0, simTokens('Tool said: {"temp": 3}')));
    });

    it('an Idempotency-Key replay returns the same tool calls (JSON and stream) without a second call or charge', async () => {
      const body = { model: 'chat-sim', messages: [{ role: 'user' as const, content: 'call: replay me' }], tools: [weather] };
      const once = await client.chat.completions.create(body, { headers: { 'Idempotency-Key': 'tools-json-1' } });
      const { result: again, charge } = await charged(t, account, () =>
        client.chat.completions.create(body, { headers: { 'Idempotency-Key': 'tools-json-1' } }),
      );
      assert.equal(charge, 0n);
      assert.deepEqual(again, once);
      assert.deepEqual(again.choices[0].message.tool_calls, [call(0, 'get_weather', 'replay me')]);

      const streamed = await collect(
        await client.chat.completions.create({ ...body, stream: true }, { headers: { 'Idempotency-Key': 'tools-stream-1' } }),
      );
      const replay = await charged(t, account, async () =>
        collect(await client.chat.completions.create({ ...body, stream: true }, { headers: { 'Idempotency-Key': 'tools-stream-1' } })),
      );
      assert.equal(replay.charge, 0n);
      assert.deepEqual(replay.result.chunks, streamed.chunks);
      assert.deepEqual(toolCallsOf(replay.result.chunks).calls, [call(0, 'get_weather', 'replay me')]);
      assert.equal(sim.requests.length, 2);
    });

    it("an upstream without usage: the tool calls' JSON counts toward the completion bound", async () => {
      sim.setFault({ kind: 'no-usage' });
      const messages = [{ role: 'user' as const, content: 'call: Oslo' }];
      const { result, charge } = await charged(t, account, () =>
        client.chat.completions.create({ model: 'chat-sim', messages, tools: [weather] }),
      );
      const completion = Buffer.byteLength(JSON.stringify([call(0, 'get_weather', 'Oslo')]));
      const prompt = promptTokenBound(messages, { tools: [weather] });
      assert.equal(result.usage!.completion_tokens, completion);
      assert.equal(charge, price(prompt, 0, completion));
    });

    it('a model that does not list tools ignores them with a warning, and the upstream never sees them', async () => {
      const plain = await client.chat.completions.create({
        model: 'chat-sim-plain',
        messages: [{ role: 'user', content: 'call: x' }],
        tools: [weather],
        tool_choice: 'auto',
      });
      assert.equal(sim.requests[0].body.tools, undefined);
      assert.equal(plain.choices[0].message.content, 'Reply: call: x');
      assert.deepEqual(
        (plain as any).warnings.map((warning: any) => warning.param),
        ['tools', 'tool_choice'],
      );
      assert.equal(sim.requests.length, 1);
    });

    it('the shipped gpt-4o-mini lists tools and answers tool calls', async () => {
      const card = (await client.models.retrieve('gpt-4o-mini')) as any;
      assert.ok(card.supported_features.includes('tools'));
      const result = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'call: Oslo' }],
        tools: [weather],
        tool_choice: 'auto',
      });
      assert.deepEqual(sim.requests[0].body.tools, [weather]);
      assert.deepEqual(result.choices[0].message.tool_calls, [call(0, 'get_weather', 'Oslo')]);
      assert.equal(result.choices[0].finish_reason, 'tool_calls');
    });
  });

  it('extras can never override the model, messages, streaming or the token budget (adapter level)', () => {
    const request: NormalizedChatRequest = {
      model: 'chat-sim',
      messages: [{ role: 'user', content: 'ours' }],
      maxOutputTokens: 10,
      stop: [],
      sampling: {},
      extra: {
        model: 'theirs',
        messages: [],
        stream: false,
        stream_options: { include_usage: false },
        max_tokens: 99999,
        max_completion_tokens: 99999,
        n: 3,
        top_k: 40,
      },
    };
    const { body, warnings } = buildChatRequestBody(
      request,
      { upstreamModel: 'up', baseUrl: 'http://x', credential: undefined, options: {} },
      true,
    );
    assert.deepEqual(body, {
      top_k: 40,
      model: 'up',
      messages: [{ role: 'user', content: 'ours' }],
      max_tokens: 10,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.deepEqual(
      warnings.map((warning) => warning.param),
      ['model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'n'],
    );
  });

  it('the endpoint URL: base with or without /v1, path prefixes kept', () => {
    assert.equal(chatEndpoint('https://api.openai.com/v1'), 'https://api.openai.com/v1/chat/completions');
    assert.equal(chatEndpoint('https://api.deepseek.com'), 'https://api.deepseek.com/v1/chat/completions');
    assert.equal(chatEndpoint('https://openrouter.ai/api/v1/'), 'https://openrouter.ai/api/v1/chat/completions');
  });

  it('the prompt bound is UTF-8 bytes plus per-message overhead, and always at least the upstream count', () => {
    const messages = [{ role: 'user' as const, content: 'héllo 🦊' }];
    assert.equal(promptTokenBound(messages, {}), REPLY_OVERHEAD + MESSAGE_OVERHEAD + 4 + Buffer.byteLength('héllo 🦊'));
    assert.ok(promptTokenBound(messages, {}) >= simPromptTokens('héllo 🦊'));
    assert.equal(promptTokenBound(messages, { tools: [] }), promptTokenBound(messages, {}) + 'tools'.length + 2);
  });

  it('streaming: include_usage is always asked upstream; deltas arrive in order; the usage chunk carries the settled cost', async () => {
    const { result, charge } = await charged(t, account, async () =>
      collect(
        await client.chat.completions.create({
          model: 'chat-sim',
          messages: [{ role: 'user', content: 'stream this answer please' }],
          stream: true,
          stream_options: { include_usage: true },
        }),
      ),
    );
    assert.equal(result.error, undefined);
    assert.deepEqual(sim.requests[0].body, {
      model: 'sim-model',
      messages: [{ role: 'user', content: 'stream this answer please' }],
      max_tokens: 1024,
      stream: true,
      stream_options: { include_usage: true },
    });
    const answer = 'Reply: stream this answer please';
    const pieces = answer.match(/.{1,4}/g)!;
    assert.deepEqual(result.deltas, pieces);
    const finish = result.chunks.find((chunk) => chunk.choices[0]?.finish_reason);
    assert.equal(finish.choices[0].finish_reason, 'stop');
    const last = result.chunks.at(-1);
    assert.deepEqual(last.choices, []);
    const cost = price(simPromptTokens('stream this answer please'), 0, simTokens(answer));
    assert.equal(last.usage.prompt_tokens, sim.sentUsages[0].prompt_tokens);
    assert.equal(last.usage.completion_tokens, simTokens(answer));
    assert.equal(last.usage.cost.total_cost, Number(cost) / 1e9);
    assert.equal(charge, cost);
  });

  it('streaming without include_usage from the caller still asks upstream for usage and bills on it', async () => {
    const { result, charge } = await charged(t, account, async () =>
      collect(
        await client.chat.completions.create({
          model: 'chat-sim',
          messages: [{ role: 'user', content: 'hi' }],
          stream: true,
        }),
      ),
    );
    assert.deepEqual(sim.requests[0].body.stream_options, { include_usage: true });
    assert.equal(result.deltas.join(''), 'Reply: hi');
    assert.ok(result.chunks.every((chunk) => chunk.usage === undefined));
    assert.equal(charge, price(simPromptTokens('hi'), 0, simTokens('Reply: hi')));
  });

  it('an upstream that reports no usage: billed our upper bounds (prompt bound, completion bytes) with a warning, within the hold', async () => {
    sim.setFault({ kind: 'no-usage' });
    const content = 'hi fox';
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content }] }),
    );
    const bound = promptTokenBound([{ role: 'user', content }], {});
    const completionBytes = Buffer.byteLength('Reply: hi fox');
    assert.equal(result.usage!.prompt_tokens, bound);
    assert.equal(result.usage!.completion_tokens, completionBytes);
    assert.equal(charge, price(bound, 0, completionBytes));
    assert.deepEqual(
      (result as any).warnings.map((warning: any) => warning.param),
      ['usage'],
    );

    const streamed = await charged(t, account, async () =>
      collect(
        await client.chat.completions.create({
          model: 'chat-sim',
          messages: [{ role: 'user', content }],
          stream: true,
          stream_options: { include_usage: true },
        }),
      ),
    );
    assert.equal(streamed.charge, price(bound, 0, completionBytes));
    assert.equal(streamed.result.chunks.at(-1).usage.completion_tokens, completionBytes);
  });

  it('a 500 before acceptance is retried on the route: one success, charged once', async () => {
    sim.setFault({ kind: 'status500' }, 1);
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'hi' }] }),
    );
    assert.equal(sim.requests.length, 2);
    assert.equal(result.choices[0].message.content, 'Reply: hi');
    assert.equal(charge, price(simPromptTokens('hi'), 0, simTokens('Reply: hi')));
  });

  it('a persistent 500: tried twice, then a clean 503 to the caller, nothing charged', async () => {
    sim.setFault({ kind: 'status500' });
    const error = await failsUncharged(
      () => client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'hi' }] }),
      { status: 503 },
    );
    assert.equal(sim.requests.length, 2);
    assert.doesNotMatch(error.message, /Sorry about that/);
  });

  it('a persistent 429 with Retry-After: retried after it, then 429 with Retry-After to the caller, nothing charged', async () => {
    sim.setFault({ kind: 'rate429', retryAfter: '1' });
    const started = Date.now();
    const error = await failsUncharged(
      () => client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'hi' }] }),
      { status: 429 },
    );
    assert.ok(Date.now() - started >= 900, 'waited for Retry-After');
    assert.equal(sim.requests.length, 2);
    assert.ok(Number(error.headers?.get('retry-after')) >= 1);
  });

  it('an upstream that never answers: the first-byte timeout ends it (sent once: it may have been accepted), 502, nothing charged', async () => {
    sim.setFault({ kind: 'hang' });
    await failsUncharged(() => client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'hi' }] }), {
      status: 502,
      message: /did not answer in time/,
    });
    assert.equal(sim.requests.length, 1);
  });

  it('a malformed JSON answer: 502, nothing charged', async () => {
    sim.setFault({ kind: 'malformed' });
    await failsUncharged(() => client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'hi' }] }), {
      status: 502,
      message: /not a chat completion/,
    });
    assert.equal(sim.requests.length, 1);
  });

  it('a malformed chunk mid-stream: an error chunk, nothing charged', async () => {
    sim.setFault({ kind: 'malformed' });
    const { result, charge } = await charged(t, account, async () =>
      collect(await client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'hi' }], stream: true })),
    );
    assert.ok(result.error instanceof OpenAI.APIError);
    assert.match((result.error as Error).message, /not JSON/);
    assert.equal(charge, 0n);
  });

  it('a connection reset mid-stream: the deltas already sent arrive, then an error chunk; nothing charged (no [DONE])', async () => {
    sim.setFault({ kind: 'reset-mid-stream', pieces: 2 });
    const { result, charge } = await charged(t, account, async () =>
      collect(
        await client.chat.completions.create({
          model: 'chat-sim',
          messages: [{ role: 'user', content: 'a long answer' }],
          stream: true,
          stream_options: { include_usage: true },
        }),
      ),
    );
    assert.deepEqual(result.deltas, ['Repl', 'y: a']);
    assert.ok(result.error instanceof OpenAI.APIError);
    assert.equal(charge, 0n);
    assert.equal(sim.requests.length, 1, 'not retried once streamed');
  });

  it('an error event mid-stream: failed after acceptance, sanitised message, nothing charged, not retried', async () => {
    sim.setFault({ kind: 'stream-error' });
    const { result, charge } = await charged(t, account, async () =>
      collect(
        await client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'a long answer' }], stream: true }),
      ),
    );
    assert.deepEqual(result.deltas, ['Repl']);
    const message = (result.error as Error).message;
    assert.match(message, /failed mid-stream/);
    assert.doesNotMatch(message, /https?:|sk-abcdefghijklmnop/);
    assert.equal(charge, 0n);
    assert.equal(sim.requests.length, 1);
  });

  it('a connection reset before any answer: 502 (sent once), nothing charged', async () => {
    sim.setFault({ kind: 'reset' });
    await failsUncharged(() => client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'hi' }] }), {
      status: 502,
    });
    assert.equal(sim.requests.length, 1);
  });

  it('an upstream 400 names its param; nothing charged', async () => {
    await failsUncharged(
      () => client.chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'hi' }], bogus_flag: true } as any),
      { status: 400, param: 'bogus_flag', message: /Unrecognized request argument supplied: bogus_flag/ },
    );
  });

  it('two routes: the dead first route fails over to the second, which answers; charged once', async () => {
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'chat-failover', messages: [{ role: 'user', content: 'hi' }] }),
    );
    assert.equal(result.choices[0].message.content, 'Reply: hi');
    assert.equal(sim.requests.length, 1);
    assert.equal(charge, price(simPromptTokens('hi'), 0, simTokens('Reply: hi')));
  });

  it('the hold is the upper bound: a balance below it gets 402 before any upstream call; just above it, the real cost is charged', async () => {
    const content = 'hello';
    const bound = promptTokenBound([{ role: 'user', content }], {});
    const hold = price(bound, 0, 10);
    const real = price(simPromptTokens(content), 0, simTokens(`Reply: ${content}`));
    assert.ok(real < hold);
    const usd = (nanos: bigint) => (Number(nanos) / 1e9).toFixed(9);
    const poor = await t.createAccount(usd(hold - 1n));
    await failsWith(
      () => t.client(poor.key).chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content }], max_tokens: 10 }),
      { status: 402, code: 'insufficient_quota' },
    );
    assert.equal(sim.requests.length, 0);
    const enough = await t.createAccount(usd(hold));
    const { charge } = await charged(t, enough, () =>
      t.client(enough.key).chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content }], max_tokens: 10 }),
    );
    assert.equal(charge, real);
  });

  it("wrong upstream credentials are the operator's fault: 502 without the upstream's message, nothing charged", async () => {
    const wrongSim = await startChatSimulator({ apiKey: 'sk-another-key-entirely' });
    const other = await startTestServer({ env: { CHAT_SIM_KEY: KEY, CHAT_SIM_URL: wrongSim.url }, catalog: catalogJson(await deadPort()) });
    try {
      const poorAccount = await other.createAccount('1');
      const error = await failsWith(
        () => other.client(poorAccount.key).chat.completions.create({ model: 'chat-sim', messages: [{ role: 'user', content: 'hi' }] }),
        { status: 502 },
      );
      assert.doesNotMatch(error.message, /platform\.openai\.com|Incorrect API key/);
      assert.equal(await other.balance(poorAccount.accountId), '1');
      assert.equal(wrongSim.requests.length, 1);
    } finally {
      await other.close();
      await wrongSim.close();
    }
  });

  it('a streaming caller that hangs up after part of the answer pays what the upstream billed: the completion runs to its end', async () => {
    const caller = await t.createAccount('1');
    sim.pieceDelayMs = 25;
    const content = 'tell me a long story about lighthouses, ships and the sea at night';
    const controller = new AbortController();
    const stream = await t
      .client(caller.key)
      .chat.completions.create(
        { model: 'chat-sim', messages: [{ role: 'user', content }], stream: true, stream_options: { include_usage: true } },
        { signal: controller.signal },
      );
    let received = '';
    // The SDK ends the iteration (or throws an abort error) once the signal fires: either way the connection is closed.
    await (async () => {
      for await (const chunk of stream) {
        received += chunk.choices[0]?.delta?.content ?? '';
        if (received.length > 0) controller.abort(); // read the first words, then hang up
      }
    })().catch(() => undefined);
    assert.ok(received.length > 0 && received.length < `Reply: ${content}`.length, 'only part of the answer was read');
    const state = await settledState(t, caller);
    assert.equal(sim.completedStreams, 1, 'the upstream generation was not cut off');
    const usage = sim.sentUsages.at(-1)!;
    assert.equal(
      parseUsd('1') - parseUsd(state.balance),
      price(usage.prompt_tokens, 0, usage.completion_tokens),
      'charged exactly the upstream usage',
    );
    const ledger = await t.admin('GET', `/admin/v1/accounts/${caller.accountId}/ledger`);
    assert.deepEqual(ledger.data.map((entry: any) => entry.kind).sort(), ['credit', 'hold', 'settle']);
  });

  it('a streaming caller that hangs up before any of the answer reached it pays nothing: the upstream call is stopped', async () => {
    const caller = await t.createAccount('1');
    sim.pieceDelayMs = 300;
    const controller = new AbortController();
    const stream = await t
      .client(caller.key)
      .chat.completions.create(
        { model: 'chat-sim', messages: [{ role: 'user', content: 'a slow start' }], stream: true },
        { signal: controller.signal },
      );
    const contents: string[] = [];
    await (async () => {
      for await (const chunk of stream) {
        contents.push(chunk.choices[0]?.delta?.content ?? '');
        controller.abort(); // hang up on the role chunk, before any content
      }
    })().catch(() => undefined);
    assert.deepEqual(contents, [''], 'only the role chunk was read');
    await expectBalanceOnceSettled(t, caller, '1');
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(sim.completedStreams, 0, 'the upstream stream was cut off');
    const ledger = await t.admin('GET', `/admin/v1/accounts/${caller.accountId}/ledger`);
    assert.deepEqual(ledger.data.map((entry: any) => entry.kind).sort(), ['credit', 'hold', 'release']);
  });

  it('the shipped gpt-4o-mini: routed to OPENAI_BASE_URL with its upstream id, charged at its catalog rates', async () => {
    const card = (await client.models.retrieve('gpt-4o-mini')) as any;
    assert.equal(card.id, 'gpt-4o-mini');
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    );
    assert.equal(sim.requests[0].body.model, 'gpt-4o-mini');
    assert.equal(sim.requests[0].body.max_tokens, 16384);
    const prompt = simPromptTokens('hi');
    const output = simTokens('Reply: hi');
    // $0.15 / $0.60 per 1M tokens: 150 and 600 nanos per token.
    assert.equal(charge, BigInt(prompt) * 150n + BigInt(output) * 600n);
    assert.equal(result.usage!.prompt_tokens, prompt);
  });
});

describe('the shipped gpt-4o-mini without OPENAI_API_KEY', () => {
  it('is not offered, and the server starts with the offline models', async () => {
    const t = await startTestServer();
    try {
      const account = await t.createAccount('1');
      const client = t.client(account.key);
      const ids = [];
      for await (const model of client.models.list()) ids.push(model.id);
      assert.ok(!ids.includes('gpt-4o-mini'));
      assert.ok(ids.includes('deepshi-echo'));
      await failsWith(() => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }), {
        status: 400,
        code: 'model_not_found',
      });
    } finally {
      await t.close();
    }
  });
});
