import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { JsonInstanceBuilder, SeededRandom, wordsOf } from '../../src/providers/offline/echo-json.ts';
import { planEcho } from '../../src/providers/offline/echo-plan.ts';
import { MATH_RESPONSE } from '../helpers/schemas.ts';

/**
 * deepshi-echo's structured output (echo-json.ts, echo-plan.ts): values built from a JSON Schema validate against it
 * (checked with ajv, a real validator, formats included), are made of the caller's words, and are the same for the
 * same request and seed.
 */

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
const ajv = addFormats(new Ajv2020({ strict: false, allErrors: true }));

const SCHEMAS: Record<string, unknown> = {
  "the docs' math_response": MATH_RESPONSE,
  'scalars with bounds': {
    type: 'object',
    properties: {
      age: { type: 'integer', minimum: 18, maximum: 120 },
      score: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
      price: { type: 'number', minimum: 0.5, maximum: 3, multipleOf: 0.1 },
      even: { type: 'integer', multipleOf: 2, minimum: 7, maximum: 9 },
      flag: { type: 'boolean' },
      nothing: { type: 'null' },
      maybe: { type: ['string', 'null'] },
    },
    required: ['age', 'score', 'price', 'even', 'flag', 'nothing', 'maybe'],
    additionalProperties: false,
  },
  'strings: lengths, formats, enum, const, pattern': {
    type: 'object',
    properties: {
      code: { type: 'string', minLength: 3, maxLength: 3 },
      long: { type: 'string', minLength: 40 },
      email: { type: 'string', format: 'email' },
      when: { type: 'string', format: 'date-time' },
      day: { type: 'string', format: 'date' },
      id: { type: 'string', format: 'uuid' },
      site: { type: 'string', format: 'uri' },
      unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
      kind: { const: 'weather' },
      slug: { type: 'string', pattern: '^[a-z]+$' },
      digits: { type: 'string', pattern: '^[0-9]+$' },
    },
    required: ['code', 'long', 'email', 'when', 'day', 'id', 'site', 'unit', 'kind', 'slug', 'digits'],
  },
  'arrays: bounds, unique, tuples': {
    type: 'object',
    properties: {
      tags: { type: 'array', items: { type: 'string' }, minItems: 3, maxItems: 5, uniqueItems: true },
      pair: { type: 'array', prefixItems: [{ type: 'integer' }, { type: 'string' }], items: false },
      none: { type: 'array', maxItems: 0 },
      flags: { type: 'array', items: { type: 'boolean' }, uniqueItems: true, minItems: 2 },
    },
    required: ['tags', 'pair', 'none', 'flags'],
  },
  'refs, anyOf, oneOf, allOf, nesting': {
    $defs: {
      point: {
        type: 'object',
        properties: { x: { type: 'number' }, y: { type: 'number' } },
        required: ['x', 'y'],
        additionalProperties: false,
      },
      tree: {
        type: 'object',
        properties: { name: { type: 'string' }, children: { type: 'array', items: { $ref: '#/$defs/tree' }, maxItems: 2 } },
        required: ['name'],
      },
    },
    type: 'object',
    properties: {
      at: { $ref: '#/$defs/point' },
      shape: { anyOf: [{ type: 'null' }, { $ref: '#/$defs/point' }] },
      either: { oneOf: [{ type: 'string', maxLength: 5 }, { type: 'integer' }] },
      both: {
        allOf: [
          { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] },
          { properties: { b: { type: 'integer' } }, required: ['b'] },
        ],
      },
      tree: { $ref: '#/$defs/tree' },
      free: { type: 'object', minProperties: 2, additionalProperties: { type: 'integer' } },
    },
    required: ['at', 'shape', 'either', 'both', 'tree', 'free'],
  },
  'a bare array of enums': { type: 'array', items: { enum: ['a', 'b', 'c'] }, minItems: 2, maxItems: 3, uniqueItems: true },
  'no type at all': {},
};

describe('deepshi-echo JSON from a schema', () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(`validates against ${name}, for many seeds`, () => {
      const validate = ajv.compile(schema as object);
      for (let seed = 0; seed < 40; seed++) {
        const value = new JsonInstanceBuilder(
          schema,
          new SeededRandom('test', seed),
          wordsOf('the quick brown fox jumps over the lazy dog'),
        ).build();
        assert.ok(validate(value), `seed ${seed}: ${JSON.stringify(value)} → ${ajv.errorsText(validate.errors)}`);
      }
    });
  }

  it("takes strings from the caller's words, and gives the same value for the same request and seed", () => {
    const build = (seed: number) =>
      new JsonInstanceBuilder(MATH_RESPONSE, new SeededRandom('same', seed), wordsOf('solve eight x plus seven')).build();
    const value = build(1) as { final_answer: string };
    assert.deepEqual(build(1), value);
    for (const word of value.final_answer.split(' ')) assert.ok(['solve', 'eight', 'x', 'plus', 'seven'].includes(word), word);
    const values = new Set(Array.from({ length: 8 }, (_, seed) => JSON.stringify(build(seed))));
    assert.ok(values.size > 1, 'the seed changes the value');
  });

  it('plans tool calls by the documented rules: named choice, required, names in the message, none, parallel_tool_calls false', () => {
    const tools = [
      {
        type: 'function',
        function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
      },
      {
        type: 'function',
        function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { type: 'string' } }, required: ['zone'] } },
      },
    ];
    const plan = (text: string, extra: Record<string, unknown> = {}) =>
      planEcho({ messages: [{ role: 'user', content: text }], extra: { tools, ...extra }, sampling: {} });
    const names = (text: string, extra: Record<string, unknown> = {}) => {
      const result = plan(text, extra);
      return result.kind === 'tools' ? result.calls.map((call) => call.function.name) : result.content;
    };
    assert.equal(names('hello'), 'Echo: hello', 'auto, no tool named: text');
    assert.deepEqual(names('hello', { tool_choice: 'required' }), ['get_weather'], 'required: the first tool');
    assert.deepEqual(names('hello', { tool_choice: { type: 'function', function: { name: 'get_time' } } }), ['get_time']);
    assert.deepEqual(names('use get_time then get_weather for Oslo'), ['get_time', 'get_weather'], 'in the order named');
    assert.deepEqual(names('use get_time then get_weather', { parallel_tool_calls: false }), ['get_time']);
    assert.equal(names('use get_weather', { tool_choice: 'none' }), 'Echo: use get_weather');
    assert.equal(names('get_weathering is not a name'), 'Echo: get_weathering is not a name');
    const call = plan('get_weather for Oslo');
    assert.ok(call.kind === 'tools');
    assert.deepEqual(
      JSON.parse(call.calls[0].function.arguments)
        .city.split(' ')
        .every((word: string) => ['for', 'Oslo'].includes(word)),
      true,
    );
  });

  it('answers tool results in text that uses them, naming the tool each answers', () => {
    const result = planEcho({
      messages: [
        { role: 'user', content: 'weather and time?' },
        {
          role: 'assistant',
          content: '',
          toolCalls: [
            { id: 'a', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
            { id: 'b', type: 'function', function: { name: 'get_time', arguments: '{}' } },
          ],
        },
        { role: 'tool', toolCallId: 'a', content: '{"temp":3}' },
        { role: 'tool', toolCallId: 'b', content: '12:00' },
      ],
      extra: { tools: [], tool_choice: 'required' },
      sampling: {},
    });
    assert.deepEqual(result, { kind: 'text', content: 'Echo: get_weather returned {"temp":3}; get_time returned 12:00' });
  });
});
