import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { costHeaders, imageResponseParts } from '../../src/http/image-response.ts';
import { parseUpstreamJson } from '../../src/providers/shared/large-json.ts';
import type { ImageOutcome } from '../../src/services/image-generation.ts';

/**
 * The ImageResponse body as byte parts: the same JSON a serialiser would write, with an upstream's base64 passed
 * through as the very bytes it arrived in (no copy: what keeps multi-megabyte responses off the GC, docs/bench.md).
 */
const payload = randomBytes(300_000).toString('base64');
const upstreamBody = Buffer.from(JSON.stringify({ created: 1, data: [{ b64_json: payload }] }));
const lifted = (parseUpstreamJson(upstreamBody, true) as { data: Array<{ b64_json: Buffer }> }).data[0].b64_json;

const outcome = (base64: string | Buffer, extra: Partial<ImageOutcome> = {}): ImageOutcome => ({
  images: [{ base64, mediaType: 'image/png', width: 1024, height: 768, index: 0, revisedPrompt: 'un phare «au crépuscule»' }],
  cost: 1_234_567n,
  usage: { inputTokens: 10, outputTokens: 20, outputImageTokens: 20 },
  warnings: [{ type: 'unsupported', param: 'quality', message: 'ignored' }],
  ...extra,
});

describe('imageResponseParts', () => {
  it('writes the upstream base64 view itself into the response (zero copy)', () => {
    assert.ok(Buffer.isBuffer(lifted));
    const parts = imageResponseParts(outcome(lifted), { model: 'm', created: 7, responseFormat: 'b64_json' });
    const image = parts.find((part) => part.length === payload.length);
    assert.ok(image, 'the payload is one part');
    assert.equal(image.buffer, upstreamBody.buffer, 'the same memory as the upstream body');
    assert.equal(image.byteOffset, lifted.byteOffset);
  });

  it('is exactly the JSON of the response, for views and strings alike, UTF-8 text included', () => {
    for (const base64 of [lifted, payload]) {
      const body = JSON.parse(Buffer.concat(imageResponseParts(outcome(base64), { model: 'm/x', created: 7, responseFormat: 'b64_json' })).toString('utf8'));
      assert.deepEqual(body, {
        created: 7,
        model: 'm/x',
        size: '1024x768',
        data: [{ b64_json: payload, revised_prompt: 'un phare «au crépuscule»', index: 0 }],
        usage: {
          prompt_tokens: 10, prompt_tokens_details: { cached_tokens: 0, cached_read_tokens: 0, image_tokens: 0 },
          completion_tokens: 20, completion_tokens_details: { reasoning_tokens: 0, image_tokens: 20 }, total_tokens: 30,
          cost: { total_cost: 0.001234567 },
        },
        warnings: [{ type: 'unsupported', param: 'quality', message: 'ignored' }],
      });
    }
  });

  it('response_format url gives data URIs', () => {
    const body = JSON.parse(Buffer.concat(imageResponseParts(outcome(lifted, { warnings: [] }), { model: 'm', created: 7, responseFormat: 'url' })).toString('utf8'));
    assert.equal(body.data[0].url, `data:image/png;base64,${payload}`);
    assert.equal(body.warnings, undefined);
  });

  it('cost headers: the exact cost, and the ignored params', () => {
    assert.deepEqual(costHeaders(1_234_567n, [{ type: 'unsupported', param: 'quality', message: 'x' }]), { 'x-request-cost': '0.001234567', 'x-deepshi-warnings': 'quality' });
  });
});
