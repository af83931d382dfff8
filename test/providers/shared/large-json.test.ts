import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isAscii } from 'node:buffer';
import { describe, it } from 'node:test';
import { parseUpstreamJson } from '../../../src/providers/shared/large-json.ts';

/** parseUpstreamJson must return exactly what JSON.parse returns, for every shape an upstream may send. */
const big = (bytes = 300_000) => randomBytes(bytes).toString('base64');
const same = (text: string) => {
  const body = Buffer.from(text);
  assert.deepEqual(parseUpstreamJson(body, isAscii(body)), JSON.parse(text));
};

describe('parseUpstreamJson', () => {
  it('OpenAI-style responses, compact and with spaces, one or several images', () => {
    same(JSON.stringify({ created: 1, data: [{ b64_json: big(), revised_prompt: 'a "quoted" prompt' }], usage: { input_tokens: 3 } }));
    same(JSON.stringify({ data: [{ b64_json: big() }, { b64_json: big() }, { b64_json: 'short' }] }, null, 2));
    same(`{"data": [ {"b64_json" :  "${big()}" , "index": 0} ]}`);
  });

  it("Gemini's inlineData.data alongside text parts", () => {
    same(JSON.stringify({ candidates: [{ content: { parts: [{ text: 'here is "data": "x"' }, { inlineData: { mimeType: 'image/png', data: big() } }] } }] }));
  });

  it('falls back to JSON.parse for escaped values, non-ASCII bodies and small bodies', () => {
    same(`{"data":[{"b64_json":"${big().replace(/\//g, '\\/')}"}]}`);
    same(JSON.stringify({ data: [{ b64_json: big(), revised_prompt: 'un café ☕' }] }));
    same('{"data":[{"b64_json":"abc"}]}');
  });

  it('keeps key-like text inside strings and arrays untouched', () => {
    same(JSON.stringify({ note: '"b64_json":"not a key"', list: ['data', big()], data: [{ b64_json: big() }] }));
  });

  it('throws like JSON.parse on malformed input', () => {
    const body = Buffer.from(`{"data":[{"b64_json":"${big()}"`);
    assert.throws(() => parseUpstreamJson(body, true), SyntaxError);
  });
});
