import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { isAscii } from 'node:buffer';
import { describe, it } from 'node:test';
import { parseUpstreamJson } from '../../../src/providers/shared/large-json.ts';

/**
 * parseUpstreamJson must return what JSON.parse returns, for every shape an upstream may send, except that large
 * image payloads are Buffer views of the body holding the same characters.
 */
const big = (bytes = 300_000) => randomBytes(bytes).toString('base64');
const asStrings = (value: unknown): unknown => {
  if (Buffer.isBuffer(value)) return value.toString('latin1');
  if (Array.isArray(value)) return value.map(asStrings);
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, asStrings(item)]));
  return value;
};
const same = (text: string) => {
  const body = Buffer.from(text);
  const parsed = parseUpstreamJson(body, isAscii(body));
  assert.deepEqual(asStrings(parsed), JSON.parse(text));
  return { body, parsed };
};

describe('parseUpstreamJson', () => {
  it('OpenAI-style responses, compact and with spaces, one or several images', () => {
    same(JSON.stringify({ created: 1, data: [{ b64_json: big(), revised_prompt: 'a "quoted" prompt' }], usage: { input_tokens: 3 } }));
    same(JSON.stringify({ data: [{ b64_json: big() }, { b64_json: big() }, { b64_json: 'short' }] }, null, 2));
    same(`{"data": [ {"b64_json" :  "${big()}" , "index": 0} ]}`);
  });

  it('lifts large payloads as views of the body (no copy); small values and other keys stay strings', () => {
    const payload = big();
    const { body, parsed } = same(JSON.stringify({ data: [{ b64_json: payload, revised_prompt: 'p' }, { b64_json: 'short' }] }));
    const [first, second] = (parsed as { data: Array<{ b64_json: unknown; revised_prompt?: unknown }> }).data;
    assert.ok(Buffer.isBuffer(first.b64_json));
    assert.equal(first.b64_json.buffer, body.buffer, "shares the body's memory");
    assert.equal(first.b64_json.toString('latin1'), payload);
    assert.equal(first.revised_prompt, 'p');
    assert.equal(second.b64_json, 'short');
  });

  it("Gemini's inlineData.data alongside text parts", () => {
    same(
      JSON.stringify({
        candidates: [{ content: { parts: [{ text: 'here is "data": "x"' }, { inlineData: { mimeType: 'image/png', data: big() } }] } }],
      }),
    );
  });

  it('falls back to JSON.parse (plain strings) for escaped values, non-ASCII bodies and small bodies', () => {
    const plain = (text: string) => {
      const body = Buffer.from(text);
      assert.deepEqual(parseUpstreamJson(body, isAscii(body)), JSON.parse(text));
    };
    plain(`{"data":[{"b64_json":"${big().replace(/\//g, '\\/')}"}]}`);
    plain(JSON.stringify({ data: [{ b64_json: big(), revised_prompt: 'un café ☕' }] }));
    plain('{"data":[{"b64_json":"abc"}]}');
  });

  it('keeps key-like text inside strings and arrays untouched', () => {
    same(JSON.stringify({ note: '"b64_json":"not a key"', list: ['data', big()], data: [{ b64_json: big() }] }));
  });

  it('throws like JSON.parse on malformed input', () => {
    const body = Buffer.from(`{"data":[{"b64_json":"${big()}"`);
    assert.throws(() => parseUpstreamJson(body, true), SyntaxError);
  });
});
