import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type OpenAI from 'openai';
import { parseUsd } from '../../src/domain/money.ts';
import { charged, collect } from '../helpers/assertions.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';
import {
  SIM_REFUSAL,
  simPromptTokens,
  simReasoning,
  simTokenLogprobs,
  simTokens,
  startChatSimulator,
  type ChatSimulator,
} from '../simulators/openai-chat-simulator.ts';

/**
 * The launch text models of the shipped catalog (catalog/models.yaml): deepshi-2.0 and deepshi-3.0 on the operator's
 * OpenAI-compatible servers (DEEPSHI_2_0_* / DEEPSHI_3_0_*), gpt-4o on OpenAI (OPENAI_*), each behind its own
 * simulator. deepshi-3.0's is a vLLM-style reasoning server (`reasoning_content`). Through the openai SDK: exactly
 * what each upstream receives (and what it does not), the normalised reasoning (message.reasoning /
 * reasoning_details, delta.reasoning, usage.completion_tokens_details.reasoning_tokens), logprobs, refusals, and
 * charges equal to the upstream's usage at the catalog's rates.
 */

const KEYS = { two: 'sk-deepshi-2-0123456789', three: 'sk-deepshi-3-0123456789', openai: 'sk-openai-0123456789' };
/** Catalog rates in nanos per token (catalog/models.yaml). */
const RATES = {
  'deepshi-2.0': { input: 500n, cached: 250n, output: 1500n },
  'deepshi-3.0': { input: 2500n, cached: 1250n, output: 10_000n },
  'gpt-4o': { input: 2500n, cached: 1250n, output: 10_000n },
};
const price = (model: keyof typeof RATES, prompt: number, cached: number, completion: number) => {
  const rates = RATES[model];
  return (
    (BigInt(prompt - cached) * rates.input * 1_000_000n +
      BigInt(cached) * rates.cached * 1_000_000n +
      BigInt(completion) * rates.output * 1_000_000n +
      999_999n) /
    1_000_000n
  );
};

const WEATHER_TOOL = {
  type: 'function' as const,
  function: { name: 'weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
};

describe('the launch text models: deepshi-2.0, deepshi-3.0 (reasoning) and gpt-4o through their upstreams', () => {
  let two: ChatSimulator;
  let three: ChatSimulator;
  let openai: ChatSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };
  let client: OpenAI;

  before(async () => {
    [two, three, openai] = await Promise.all([
      startChatSimulator({ apiKey: KEYS.two }),
      startChatSimulator({ apiKey: KEYS.three }),
      startChatSimulator({ apiKey: KEYS.openai }),
    ]);
    t = await startTestServer({
      env: {
        DEEPSHI_2_0_API_KEY: KEYS.two,
        DEEPSHI_2_0_BASE_URL: two.url,
        DEEPSHI_3_0_API_KEY: KEYS.three,
        DEEPSHI_3_0_BASE_URL: `${three.url}/v1`,
        OPENAI_API_KEY: KEYS.openai,
        OPENAI_BASE_URL: `${openai.url}/v1`,
      },
    });
    account = await t.createAccount('10');
    client = t.client(account.key);
  });
  beforeEach(() => {
    for (const sim of [two, three, openai]) sim.reset();
    three.reasoning = 'reasoning_content';
    three.reportReasoningTokens = true;
  });
  after(async () => {
    await t.close();
    await Promise.all([two.close(), three.close(), openai.close()]);
  });

  it('lists the three models with their limits, features and sampling parameters once their keys are set', async () => {
    for (const [id, features] of [
      ['deepshi-2.0', ['json', 'structured']],
      ['deepshi-3.0', ['tools', 'reasoning', 'json', 'structured', 'logprobs']],
      ['gpt-4o', ['tools', 'json', 'structured', 'logprobs']],
    ] as const) {
      const card = (await client.models.retrieve(id)) as any;
      assert.equal(card.kind, 'text');
      assert.deepEqual(card.supported_features, features);
      assert.ok(card.context_window > card.max_output_tokens);
      assert.ok(card.supported_sampling_parameters.includes('temperature'));
      assert.equal(card.pricing.unit, 'token');
    }
  });

  it('deepshi-2.0: the exact upstream request; tools, reasoning and logprobs (not supported) are not forwarded but reported as ignored', async () => {
    const { data, response } = await client.chat.completions
      .create({
        model: 'deepshi-2.0',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'hello' },
        ],
        temperature: 0.2,
        top_p: 0.9,
        seed: 3,
        stop: ['END'],
        max_tokens: 40,
        frequency_penalty: 0.1,
        presence_penalty: 0.2,
        logit_bias: { '42': -100 },
        response_format: { type: 'json_object' },
        tools: [WEATHER_TOOL],
        tool_choice: 'auto',
        reasoning_effort: 'high',
        logprobs: true,
        top_logprobs: 2,
        user: 'end-user-1',
      })
      .withResponse();
    assert.equal(two.requests.length, 1);
    const [upstream] = two.requests;
    assert.equal(upstream.path, '/v1/chat/completions');
    assert.equal(upstream.headers.authorization, `Bearer ${KEYS.two}`);
    assert.deepEqual(upstream.body, {
      response_format: { type: 'json_object' },
      model: 'deepshi-2.0',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hello' },
      ],
      max_tokens: 40,
      stop: ['END'],
      temperature: 0.2,
      top_p: 0.9,
      seed: 3,
      frequency_penalty: 0.1,
      presence_penalty: 0.2,
      logit_bias: { '42': -100 },
      stream: false,
    });
    assert.deepEqual(
      (data as any).warnings.map((warning: any) => warning.param),
      ['tools', 'tool_choice', 'logprobs', 'top_logprobs', 'reasoning_effort'],
    );
    assert.equal(response.headers.get('x-deepshi-warnings'), 'tools,tool_choice,logprobs,top_logprobs,reasoning_effort');
    assert.equal(data.choices[0].message.content, 'Reply: hello');
    assert.equal((data.choices[0].message as any).reasoning, undefined);
    assert.equal(openai.requests.length + three.requests.length, 0, 'each model goes to its own server');
  });

  it('deepshi-3.0: the exact upstream request; reasoning_effort, tools, logprobs and logit_bias forwarded, reasoning.max_tokens reported as ignored', async () => {
    const { data } = await client.chat.completions
      .create({
        model: 'deepshi-3.0',
        messages: [{ role: 'user', content: 'weather in Oslo?' }],
        max_completion_tokens: 200,
        temperature: 0.6,
        logit_bias: { '7': 5 },
        logprobs: true,
        top_logprobs: 2,
        tools: [WEATHER_TOOL],
        tool_choice: 'auto',
        parallel_tool_calls: false,
        reasoning: { effort: 'low', max_tokens: 50 },
      } as any)
      .withResponse();
    const [upstream] = three.requests;
    assert.equal(upstream.headers.authorization, `Bearer ${KEYS.three}`);
    assert.deepEqual(upstream.body, {
      tools: [WEATHER_TOOL],
      tool_choice: 'auto',
      parallel_tool_calls: false,
      logprobs: true,
      top_logprobs: 2,
      reasoning_effort: 'low',
      model: 'deepshi-3.0',
      messages: [{ role: 'user', content: 'weather in Oslo?' }],
      max_tokens: 200,
      temperature: 0.6,
      logit_bias: { '7': 5 },
      stream: false,
    });
    assert.deepEqual(
      (data as any).warnings.map((warning: any) => warning.param),
      ['reasoning.max_tokens'],
    );
    assert.equal((data.choices[0].message as any).reasoning, simReasoning('weather in Oslo?', 'low'));
  });

  it('gpt-4o: the exact upstream request, streaming with include_usage; reasoning_effort is not forwarded (not a reasoning model)', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      reasoning_effort: 'high',
      n: 1,
      seed: 9,
      user: 'u1',
      metadata: { a: 'b' },
    } as any);
    const chunks: any[] = [];
    for await (const chunk of stream as any) chunks.push(chunk);
    const [upstream] = openai.requests;
    // Not forwarded: `user` (the caller's end-user id stays with Deepshi, docs §5), `n: 1` (the default), reasoning_effort.
    assert.equal(upstream.headers.authorization, `Bearer ${KEYS.openai}`);
    assert.deepEqual(upstream.body, {
      metadata: { a: 'b' },
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 16384,
      seed: 9,
      stream: true,
      stream_options: { include_usage: true },
    });
    const finish = chunks.find((chunk) => chunk.choices[0]?.finish_reason);
    assert.deepEqual(
      finish.warnings.map((warning: any) => warning.param),
      ['reasoning_effort'],
    );
    assert.equal(chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join(''), 'Reply: hi');
  });

  it('deepshi-3.0 (vLLM reasoning_content): message.reasoning and reasoning_details; reasoning tokens reported and billed as completion tokens, cached at the cached rate', async () => {
    three.cachedTokens = 4;
    const content = 'why is the sky blue?';
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'deepshi-3.0', messages: [{ role: 'user', content }] }).withResponse(),
    );
    const completion = result.data as any;
    const trace = simReasoning(content);
    assert.deepEqual(completion.choices[0].message, {
      role: 'assistant',
      content: `Reply: ${content}`,
      refusal: null,
      reasoning: trace,
      reasoning_details: [{ type: 'reasoning.text', text: trace, format: 'unknown', index: 0 }],
    });
    const prompt = simPromptTokens(content);
    const reasoningTokens = simTokens(trace);
    const completionTokens = reasoningTokens + simTokens(`Reply: ${content}`);
    assert.equal(three.sentUsages[0].completion_tokens, completionTokens);
    const cost = price('deepshi-3.0', prompt, 4, completionTokens);
    assert.deepEqual(completion.usage, {
      prompt_tokens: prompt,
      completion_tokens: completionTokens,
      total_tokens: prompt + completionTokens,
      prompt_tokens_details: { cached_tokens: 4 },
      completion_tokens_details: { reasoning_tokens: reasoningTokens },
      cost: { total_cost: Number(cost) / 1e9 },
    });
    assert.equal(charge, cost);
    assert.equal(parseUsd(result.response.headers.get('x-request-cost')!), cost);
  });

  it('deepshi-3.0 streamed: the trace arrives as delta.reasoning before the content; the usage chunk and the charge match the upstream usage', async () => {
    three.cachedTokens = 2;
    const content = 'count to three';
    const { result: chunks, charge } = await charged(t, account, async () => {
      const stream = await client.chat.completions.create({
        model: 'deepshi-3.0',
        messages: [{ role: 'user', content }],
        stream: true,
        stream_options: { include_usage: true },
        reasoning_effort: 'high',
      });
      return collect(stream);
    });
    const deltas = chunks.filter((chunk) => chunk.choices.length > 0).map((chunk) => chunk.choices[0].delta);
    const reasoningPieces = deltas.filter((delta) => delta.reasoning !== undefined);
    assert.ok(reasoningPieces.length > 1, 'streamed in pieces');
    const trace = simReasoning(content, 'high');
    assert.equal(reasoningPieces.map((delta) => delta.reasoning).join(''), trace);
    assert.ok(deltas.findIndex((delta) => delta.reasoning) < deltas.findIndex((delta) => delta.content), 'reasoning first');
    assert.ok(
      deltas.every((delta) => delta.reasoning_content === undefined),
      'one spelling only',
    );
    assert.equal(deltas.map((delta) => delta.content ?? '').join(''), `Reply: ${content}`);
    const usage = chunks.at(-1).usage;
    const completionTokens = simTokens(trace) + simTokens(`Reply: ${content}`);
    assert.equal(usage.completion_tokens, completionTokens);
    assert.equal(usage.completion_tokens_details.reasoning_tokens, simTokens(trace));
    assert.equal(charge, price('deepshi-3.0', simPromptTokens(content), 2, completionTokens));
    assert.equal(three.requests[0].body.reasoning_effort, 'high');
  });

  it('every upstream spelling (reasoning_content, reasoning, reasoning_details) gives the caller the same shape, streamed and not', async () => {
    const content = 'spell it';
    const trace = simReasoning(content);
    for (const spelling of ['reasoning_content', 'reasoning', 'reasoning_details'] as const) {
      three.reasoning = spelling;
      const completion = (await client.chat.completions.create({ model: 'deepshi-3.0', messages: [{ role: 'user', content }] })) as any;
      assert.equal(completion.choices[0].message.reasoning, trace, spelling);
      assert.deepEqual(
        completion.choices[0].message.reasoning_details,
        [{ type: 'reasoning.text', text: trace, format: 'unknown', index: 0 }],
        spelling,
      );
      assert.equal(completion.choices[0].message.reasoning_content, undefined);
      const stream = await client.chat.completions.create({ model: 'deepshi-3.0', messages: [{ role: 'user', content }], stream: true });
      let streamed = '';
      for await (const chunk of stream) streamed += (chunk.choices[0]?.delta as any)?.reasoning ?? '';
      assert.equal(streamed, trace, spelling);
    }
  });

  it('a vLLM server that reports no reasoning token count: the charge is still its completion tokens; reasoning_tokens 0 (not reported)', async () => {
    three.reportReasoningTokens = false;
    const content = 'short';
    const { result, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'deepshi-3.0', messages: [{ role: 'user', content }] }),
    );
    const completionTokens = simTokens(simReasoning(content)) + simTokens(`Reply: ${content}`);
    assert.equal(result.usage!.completion_tokens, completionTokens);
    assert.equal(result.usage!.completion_tokens_details!.reasoning_tokens, 0);
    assert.equal(charge, price('deepshi-3.0', simPromptTokens(content), 0, completionTokens));
  });

  it('reasoning and answer share max_tokens: a budget spent on reasoning is a normal 200 with empty content and finish "length"', async () => {
    const content = 'a question that needs thought';
    const completion = await client.chat.completions.create({ model: 'deepshi-3.0', messages: [{ role: 'user', content }], max_tokens: 3 });
    assert.equal(completion.choices[0].finish_reason, 'length');
    assert.equal(completion.choices[0].message.content, '');
    assert.equal((completion.choices[0].message as any).reasoning, [...simReasoning(content)].slice(0, 12).join(''));
    assert.equal(completion.usage!.completion_tokens, 3);
  });

  it('reasoning.exclude: the model reasons (and is billed for it) but the trace stays out of the answer', async () => {
    const content = 'keep it to yourself';
    const completion = (await client.chat.completions.create({
      model: 'deepshi-3.0',
      messages: [{ role: 'user', content }],
      reasoning: { exclude: true },
    } as any)) as any;
    assert.equal(completion.choices[0].message.reasoning, undefined);
    assert.equal(completion.choices[0].message.reasoning_details, undefined);
    assert.equal(completion.usage.completion_tokens_details.reasoning_tokens, simTokens(simReasoning(content)));
    const stream = await client.chat.completions.create({
      model: 'deepshi-3.0',
      messages: [{ role: 'user', content }],
      stream: true,
      reasoning: { exclude: true },
    } as any);
    const deltas: any[] = [];
    for await (const chunk of stream as any) deltas.push(chunk.choices[0]?.delta ?? {});
    assert.ok(deltas.every((delta) => delta.reasoning === undefined));
    assert.equal(deltas.map((delta) => delta.content ?? '').join(''), `Reply: ${content}`);
  });

  it("logprobs / top_logprobs: forwarded and returned in OpenAI's shape, streamed and not", async () => {
    three.reasoning = undefined;
    const content = 'hello there';
    const completion = await client.chat.completions.create({
      model: 'deepshi-3.0',
      messages: [{ role: 'user', content }],
      logprobs: true,
      top_logprobs: 2,
    });
    assert.deepEqual(completion.choices[0].logprobs, { content: simTokenLogprobs(`Reply: ${content}`, 2), refusal: null });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content }],
      logprobs: true,
      top_logprobs: 1,
      stream: true,
    });
    const tokens: any[] = [];
    for await (const chunk of stream) {
      const piece = chunk.choices[0];
      if (piece?.delta.content) tokens.push(...piece.logprobs!.content!);
    }
    assert.deepEqual(tokens, simTokenLogprobs(`Reply: ${content}`, 1));
    assert.deepEqual(openai.requests[0].body.logprobs, true);
    assert.deepEqual(openai.requests[0].body.top_logprobs, 1);
  });

  it("legacy functions to gpt-4o: sent upstream as tools (one call at a time), answered in the caller's shape", async () => {
    const functions = [{ name: 'lookup', parameters: { type: 'object', properties: { query: { type: 'string' } } } }];
    const completion = (await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'call: foxes' }],
      functions,
      function_call: 'auto',
    } as any)) as any;
    assert.deepEqual(openai.requests[0].body, {
      tools: [{ type: 'function', function: functions[0] }],
      parallel_tool_calls: false,
      tool_choice: 'auto',
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'call: foxes' }],
      max_tokens: 16384,
      stream: false,
    });
    assert.equal(completion.choices[0].finish_reason, 'function_call');
    assert.deepEqual(completion.choices[0].message.function_call, { name: 'lookup', arguments: JSON.stringify({ query: 'foxes', n: 0 }) });
    assert.equal(completion.choices[0].message.tool_calls, undefined);
  });

  it('a refusal is passed through as message.refusal (content null), and streamed as delta.refusal', async () => {
    const content = 'refuse: something bad';
    const completion = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content }] });
    assert.equal(completion.choices[0].message.refusal, SIM_REFUSAL);
    assert.equal(completion.choices[0].message.content, null);
    assert.equal((completion as any).warnings, undefined);
    const stream = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content }], stream: true });
    let refusal = '';
    for await (const chunk of stream) refusal += (chunk.choices[0]?.delta as any)?.refusal ?? '';
    assert.equal(refusal, SIM_REFUSAL);
  });
});
