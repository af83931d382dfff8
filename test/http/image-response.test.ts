import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { costHeaders, imageResponseParts, imageSettings, usageObject } from '../../src/http/image-response.ts';
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
      const body = JSON.parse(
        Buffer.concat(imageResponseParts(outcome(base64), { model: 'm/x', created: 7, responseFormat: 'b64_json' })).toString('utf8'),
      );
      assert.deepEqual(body, {
        created: 7,
        model: 'm/x',
        size: '1024x768',
        output_format: 'png',
        data: [{ b64_json: payload, revised_prompt: 'un phare «au crépuscule»', index: 0 }],
        usage: {
          input_tokens: 10,
          input_tokens_details: { text_tokens: 10, image_tokens: 0 },
          output_tokens: 20,
          output_tokens_details: { text_tokens: 0, image_tokens: 20 },
          total_tokens: 30,
          prompt_tokens: 10,
          prompt_tokens_details: { cached_tokens: 0, cached_read_tokens: 0, image_tokens: 0 },
          completion_tokens: 20,
          completion_tokens_details: { reasoning_tokens: 0, image_tokens: 20 },
          cost: { total_cost: 0.001234567 },
        },
        warnings: [{ type: 'unsupported', param: 'quality', message: 'ignored' }],
      });
    }
  });

  it('response_format url gives data URIs', () => {
    const body = JSON.parse(
      Buffer.concat(imageResponseParts(outcome(lifted, { warnings: [] }), { model: 'm', created: 7, responseFormat: 'url' })).toString(
        'utf8',
      ),
    );
    assert.equal(body.data[0].url, `data:image/png;base64,${payload}`);
    assert.equal(body.warnings, undefined);
  });

  it('usage: every token count an integer, 0 where the model reported none (SDK code sums them)', () => {
    assert.deepEqual(usageObject(undefined, 1_000_000n), {
      input_tokens: 0,
      input_tokens_details: { text_tokens: 0, image_tokens: 0 },
      output_tokens: 0,
      output_tokens_details: { text_tokens: 0, image_tokens: 0 },
      total_tokens: 0,
      prompt_tokens: 0,
      prompt_tokens_details: { cached_tokens: 0, cached_read_tokens: 0, image_tokens: 0 },
      completion_tokens: 0,
      completion_tokens_details: { reasoning_tokens: 0, image_tokens: 0 },
      cost: { total_cost: 0.001 },
    });
    const partial = usageObject({ inputTokens: 50, inputImageTokens: 30 }, 0n);
    assert.deepEqual(
      [partial.input_tokens, partial.input_tokens_details, partial.output_tokens, partial.total_tokens],
      [50, { text_tokens: 20, image_tokens: 30 }, 0, 50],
    );
  });

  it('settings: the delivered format, and quality and background when known and honoured', () => {
    const images = outcome(payload).images;
    assert.deepEqual(imageSettings({ quality: 'high', background: 'transparent' }, { images, warnings: [] }), {
      output_format: 'png',
      quality: 'high',
      background: 'transparent',
    });
    assert.deepEqual(imageSettings({ quality: 'auto', background: 'auto' }, { images, warnings: [] }), { output_format: 'png' });
    const jpeg = [{ ...images[0], mediaType: 'image/jpeg' }];
    assert.deepEqual(imageSettings({ background: 'transparent' }, { images: jpeg, warnings: [] }), {
      output_format: 'jpeg',
      background: 'opaque',
    });
    assert.deepEqual(
      imageSettings({ background: 'transparent' }, { images, warnings: [{ type: 'unsupported', param: 'background', message: 'x' }] }),
      { output_format: 'png' },
    );
  });

  it('cost headers: the exact cost, and the ignored params', () => {
    assert.deepEqual(costHeaders(1_234_567n, [{ type: 'unsupported', param: 'quality', message: 'x' }]), {
      'x-request-cost': '0.001234567',
      'x-deepshi-warnings': 'quality',
    });
  });
});
