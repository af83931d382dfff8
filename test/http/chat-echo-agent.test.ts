import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type OpenAI from 'openai';
import { charged } from '../helpers/assertions.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';
import { MATH_RESPONSE } from '../helpers/schemas.ts';

/**
 * deepshi-echo as an offline stand-in for an agent: structured output and tool calls through the openai SDK, with no
 * network. JSON mode parses, schema answers validate (ajv), a tool round trip (tool call with schema-valid arguments,
 * tool result, text answer using it) works streamed and not, the SDK's own runTools loop runs to its end, the same
 * request and seed give the same answer, and every turn is billed by the documented token approximation.
 */

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
const ajv = addFormats(new Ajv2020({ strict: false }));

const WEATHER_PARAMETERS = {
  type: 'object',
  properties: {
    city: { type: 'string', minLength: 1 },
    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
    days: { type: 'integer', minimum: 1, maximum: 14 },
  },
  required: ['city', 'unit', 'days'],
  additionalProperties: false,
};
const WEATHER = {
  type: 'function' as const,
  function: { name: 'get_weather', description: 'Forecast for a city', parameters: WEATHER_PARAMETERS, strict: true },
};
const TIME = {
  type: 'function' as const,
  function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string' } }, required: ['zone'] } },
};
/** deepshi-echo's rates in nanos per token (catalog/models.yaml) and its token rule (docs/chat.md). */
const RATES = { input: 100n, output: 400n };
const tokens = (text: string) => Math.ceil([...text].length / 4);

describe('deepshi-echo: structured output and tool calls, an agent loop offline', () => {
  let t: TestServer;
  let account: { accountId: string; key: string };
  let client: OpenAI;

  before(async () => {
    t = await startTestServer();
    account = await t.createAccount('1');
    client = t.client(account.key);
  });
  after(() => t.close());

  async function streamed(body: Record<string, unknown>) {
    const stream = await client.chat.completions.create({ model: 'deepshi-echo', ...body, stream: true } as any);
    const chunks: any[] = [];
    for await (const chunk of stream as any) chunks.push(chunk);
    return chunks;
  }

  it('response_format json_object: the answer is JSON, streamed and not, and nothing is warned', async () => {
    const messages = [{ role: 'user' as const, content: 'Give me a JSON object about foxes' }];
    const completion = await client.chat.completions.create({ model: 'deepshi-echo', messages, response_format: { type: 'json_object' } });
    assert.deepEqual(JSON.parse(completion.choices[0].message.content!), { echo: 'Give me a JSON object about foxes' });
    assert.equal((completion as any).warnings, undefined);
    const chunks = await streamed({ messages, response_format: { type: 'json_object' } });
    assert.equal(chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join(''), completion.choices[0].message.content);
  });

  it("response_format json_schema (the docs' math_response, strict): the answer validates against the schema, streamed and not", async () => {
    const validate = ajv.compile(MATH_RESPONSE);
    const response_format = { type: 'json_schema' as const, json_schema: { name: 'math_response', strict: true, schema: MATH_RESPONSE } };
    for (const content of ['solve 8x + 7 = -23', 'how many legs do three foxes have', 'x']) {
      const completion = await client.chat.completions.create({
        model: 'deepshi-echo',
        messages: [{ role: 'user', content }],
        response_format,
      });
      const value = JSON.parse(completion.choices[0].message.content!);
      assert.ok(validate(value), `${JSON.stringify(value)}: ${ajv.errorsText(validate.errors)}`);
      const chunks = await streamed({ messages: [{ role: 'user', content }], response_format });
      const text = chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('');
      assert.ok(validate(JSON.parse(text)));
    }
    // The SDK's parse helper reads it as structured output.
    const parsed = await client.chat.completions.parse({
      model: 'deepshi-echo',
      messages: [{ role: 'user', content: 'solve it' }],
      response_format,
    });
    assert.ok(validate(parsed.choices[0].message.parsed));
  });

  it('a tool round trip with tool_choice "required": a call with schema-valid arguments, then a text answer that uses the result; billed by the token rule', async () => {
    const validate = ajv.compile(WEATHER_PARAMETERS);
    const messages: any[] = [{ role: 'user', content: 'What will the weather be in Oslo?' }];
    const { result: first, charge } = await charged(t, account, () =>
      client.chat.completions.create({ model: 'deepshi-echo', messages, tools: [WEATHER, TIME], tool_choice: 'required' }),
    );
    const choice = first.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls!.length, 1);
    const call = choice.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.match(call.id, /^call_/);
    const args = JSON.parse(call.function.arguments);
    assert.ok(validate(args), ajv.errorsText(validate.errors));
    // Prompt: 4 + the message's tokens + the tools' and tool_choice's JSON; completion: the call's name and arguments.
    const prompt = 4 + tokens(messages[0].content) + tokens(JSON.stringify([WEATHER, TIME])) + tokens(JSON.stringify('required'));
    const completion = tokens('get_weather') + tokens(call.function.arguments);
    assert.deepEqual([first.usage!.prompt_tokens, first.usage!.completion_tokens], [prompt, completion]);
    assert.equal(
      charge,
      (BigInt(prompt) * RATES.input * 1_000_000n + BigInt(completion) * RATES.output * 1_000_000n + 999_999n) / 1_000_000n,
    );

    const result = JSON.stringify({ city: args.city, forecast: 'snow', high: -3 });
    messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: result });
    const answer = await client.chat.completions.create({
      model: 'deepshi-echo',
      messages,
      tools: [WEATHER, TIME],
      tool_choice: 'required',
    });
    assert.equal(answer.choices[0].finish_reason, 'stop');
    assert.equal(answer.choices[0].message.content, `Echo: get_weather returned ${result}`);
    assert.equal(answer.choices[0].message.tool_calls, undefined);
  });

  it('the same round trip streamed: delta.tool_calls pieces the SDK accumulates, then the answer streamed', async () => {
    const validate = ajv.compile(WEATHER_PARAMETERS);
    const messages: any[] = [{ role: 'user', content: 'weather for Bergen please' }];
    const runner = client.chat.completions.stream({ model: 'deepshi-echo', messages, tools: [WEATHER], tool_choice: 'required' });
    const pieces: any[] = [];
    runner.on('chunk', (chunk) => pieces.push(chunk));
    const final = await runner.finalChatCompletion();
    const calls = pieces.flatMap((chunk) => chunk.choices[0]?.delta?.tool_calls ?? []);
    assert.ok(calls.length > 2, 'the arguments arrive in pieces');
    assert.deepEqual(Object.keys(calls[0]).sort(), ['function', 'id', 'index', 'type']);
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
    const call = final.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    assert.ok(validate(JSON.parse(call.function.arguments)));
    const nonStreamed = await client.chat.completions.create({
      model: 'deepshi-echo',
      messages,
      tools: [WEATHER],
      tool_choice: 'required',
    });
    const plain = (calls: any[] | undefined) =>
      calls?.map((item) => ({ id: item.id, name: item.function.name, arguments: item.function.arguments }));
    assert.deepEqual(
      plain(final.choices[0].message.tool_calls),
      plain(nonStreamed.choices[0].message.tool_calls),
      'streamed and not agree',
    );

    messages.push(final.choices[0].message, { role: 'tool', tool_call_id: call.id, content: 'rain' });
    const chunks = await streamed({ messages, tools: [WEATHER] });
    assert.equal(chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join(''), 'Echo: get_weather returned rain');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
  });

  it('a named tool_choice calls that tool; with "auto" a tool named in the message is called, else the model answers in text', async () => {
    const named = await client.chat.completions.create({
      model: 'deepshi-echo',
      messages: [{ role: 'user', content: 'anything' }],
      tools: [WEATHER, TIME],
      tool_choice: { type: 'function', function: { name: 'get_time' } },
    });
    assert.deepEqual(
      named.choices[0].message.tool_calls!.map((call: any) => call.function.name),
      ['get_time'],
    );
    const mentioned = await client.chat.completions.create({
      model: 'deepshi-echo',
      messages: [{ role: 'user', content: 'call get_time for Tokyo and get_weather' }],
      tools: [WEATHER, TIME],
    });
    assert.deepEqual(
      mentioned.choices[0].message.tool_calls!.map((call: any) => call.function.name),
      ['get_time', 'get_weather'],
    );
    assert.equal(JSON.parse((mentioned.choices[0].message.tool_calls![0] as any).function.arguments).zone.length > 0, true);
    const plain = await client.chat.completions.create({
      model: 'deepshi-echo',
      messages: [{ role: 'user', content: 'just chat' }],
      tools: [WEATHER, TIME],
    });
    assert.equal(plain.choices[0].message.content, 'Echo: just chat');
    const bad = await client.chat.completions
      .create({
        model: 'deepshi-echo',
        messages: [{ role: 'user', content: 'x' }],
        tools: [WEATHER],
        tool_choice: { type: 'function', function: { name: 'nope' } },
      })
      .then(
        () => undefined,
        (error) => error,
      );
    assert.equal(bad?.status, 400);
    assert.equal(bad?.param, 'tool_choice');
  });

  it('deterministic: the same request and seed give the same calls and arguments; another seed may choose other values', async () => {
    const body = { model: 'deepshi-echo', messages: [{ role: 'user' as const, content: 'get_weather' }], tools: [WEATHER] };
    const one = await client.chat.completions.create({ ...body, seed: 1 });
    const again = await client.chat.completions.create({ ...body, seed: 1 });
    assert.deepEqual(again.choices[0].message.tool_calls, one.choices[0].message.tool_calls);
    const seeds = await Promise.all([2, 3, 4, 5, 6].map((seed) => client.chat.completions.create({ ...body, seed })));
    const distinct = new Set(seeds.map((completion) => (completion.choices[0].message.tool_calls![0] as any).function.arguments));
    assert.ok(distinct.size > 1, 'the seed reaches the generated values');
    assert.equal((one as any).warnings, undefined, 'seed is honoured, not warned about');
  });

  it('legacy functions / function_call: mapped to tools, answered as message.function_call (finish "function_call"), streamed as delta.function_call; a "function" message is a tool result', async () => {
    const validate = ajv.compile(WEATHER_PARAMETERS);
    const functions = [
      { name: 'get_weather', parameters: WEATHER_PARAMETERS },
      { name: 'get_time', parameters: TIME.function.parameters },
    ];
    const body = {
      model: 'deepshi-echo',
      messages: [{ role: 'user', content: 'weather in Rome' }],
      functions,
      function_call: { name: 'get_weather' },
    };
    const completion = (await client.chat.completions.create(body as any)) as any;
    assert.equal(completion.choices[0].finish_reason, 'function_call');
    const message = completion.choices[0].message;
    assert.equal(message.tool_calls, undefined);
    assert.equal(message.content, null);
    assert.equal(message.function_call.name, 'get_weather');
    assert.ok(validate(JSON.parse(message.function_call.arguments)));
    const chunks = await streamed(body);
    const pieces = chunks.map((chunk) => chunk.choices[0]?.delta?.function_call).filter(Boolean);
    assert.equal(pieces[0].name, 'get_weather');
    assert.equal(pieces.map((piece: any) => piece.arguments ?? '').join(''), message.function_call.arguments);
    assert.ok(chunks.every((chunk) => chunk.choices[0]?.delta?.tool_calls === undefined));
    assert.equal(chunks.find((chunk) => chunk.choices[0]?.finish_reason).choices[0].finish_reason, 'function_call');
    const answer = await client.chat.completions.create({
      model: 'deepshi-echo',
      functions,
      messages: [
        { role: 'user', content: 'weather in Rome' },
        { role: 'assistant', content: null, function_call: message.function_call },
        { role: 'function', name: 'get_weather', content: 'hot' },
      ],
    } as any);
    assert.equal(answer.choices[0].message.content, 'Echo: get_weather returned hot');
    const both = await client.chat.completions.create({ ...body, tools: [WEATHER] } as any).then(
      () => undefined,
      (error) => error,
    );
    assert.equal(both?.status, 400);
    assert.equal(both?.param, 'functions');
  });

  it("a whole agent loop with the SDK's runTools: the model calls the tool, the SDK runs it, the model answers with its result", async () => {
    const seen: unknown[] = [];
    const runner = client.chat.completions.runTools({
      model: 'deepshi-echo',
      messages: [{ role: 'user', content: 'Use get_weather for Lisbon' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            parameters: WEATHER_PARAMETERS,
            parse: JSON.parse,
            function: async (args: { city: string; days: number }) => {
              seen.push(args);
              return { city: args.city, days: args.days, forecast: 'sunny' };
            },
          },
        },
      ] as any,
    });
    const content = await runner.finalContent();
    assert.equal(seen.length, 1);
    assert.ok(ajv.compile(WEATHER_PARAMETERS)(seen[0]));
    const args = seen[0] as { city: string; days: number };
    assert.equal(content, `Echo: get_weather returned ${JSON.stringify({ city: args.city, days: args.days, forecast: 'sunny' })}`);
    const roles = runner.messages.map((message: any) => message.role);
    assert.deepEqual(roles, ['user', 'assistant', 'tool', 'assistant']);
  });
});
