import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { ProviderError } from '../../src/providers/types.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { expectBalance, expectError } from '../helpers/assertions.ts';
import { rawRequest, startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';

/** Every failure is the OpenAI envelope with the right status; the SDK raises the matching class. */
describe('errors', () => {
  let t: TestServer;
  let account: { accountId: string; keyId: string; key: string };
  const scripted = new ScriptedAdapter();

  before(async () => {
    t = await startTestServer({ catalog: testCatalogJson(), adapters: [scripted] });
    account = await t.createAccount('1');
  });
  after(() => t.close());

  /** expectError, plus the request id every error response here must carry (hence local). */
  async function expectTracedError(promise: Promise<unknown>, status: number, code: string | null, param: string | null = null) {
    const error = await expectError(promise, status, code, param);
    assert.match(error.requestID ?? '', /^req_/);
    return error;
  }

  it('no key → 401 AuthenticationError invalid_api_key, one request only', async () => {
    const client = new OpenAI({
      apiKey: 'placeholder',
      baseURL: `${t.url}/v1`,
      maxRetries: 2,
      defaultHeaders: { authorization: null as any },
    });
    const response = await fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(response.status, 401);
    assert.equal(response.headers.get('x-should-retry'), 'false');
    assert.equal((await response.json()).error.code, 'invalid_api_key');
    const error = await expectTracedError(client.images.generate({ model: 'deepshi-sketch', prompt: 'x' }), 401, 'invalid_api_key');
    assert.ok(error instanceof OpenAI.AuthenticationError);
  });

  it('malformed key (bad checksum) and unknown well-formed key → 401', async () => {
    const flipped = account.key.slice(0, -1) + (account.key.endsWith('A') ? 'B' : 'A');
    await expectTracedError(t.client(flipped).images.generate({ model: 'deepshi-sketch', prompt: 'x' }), 401, 'invalid_api_key');
    await expectTracedError(t.client('sk-bf-short').images.generate({ model: 'deepshi-sketch', prompt: 'x' }), 401, 'invalid_api_key');
    const other = await t.createAccount('1');
    await t.admin('DELETE', `/admin/v1/keys/${other.keyId}`);
    await expectTracedError(t.client(other.key).models.list(), 401, 'invalid_api_key');
  });

  it('unknown model → 400 BadRequestError model_not_found (the spec body)', async () => {
    const error = await expectTracedError(
      t.client(account.key).images.generate({ model: 'no-such-model', prompt: 'x' }),
      400,
      'model_not_found',
      'model',
    );
    assert.ok(error instanceof OpenAI.BadRequestError);
    assert.equal(error.type, 'invalid_request_error');
    assert.equal(error.message, '400 The model does not exist or you do not have access to it.');
  });

  it('a catalog model the server cannot serve (no credentials) → 400 model_not_found', async () => {
    await expectTracedError(
      t.client(account.key).images.generate({ model: 'nano-banana-pro', prompt: 'x' }),
      400,
      'model_not_found',
      'model',
    );
  });

  it('validation errors name the param', async () => {
    const client = t.client(account.key);
    await expectTracedError(client.images.generate({ model: 'deepshi-sketch' } as any), 400, 'missing_required_parameter', 'prompt');
    await expectTracedError(client.images.generate({ prompt: 'x' } as any), 400, 'missing_required_parameter', 'model');
    await expectTracedError(client.images.generate({ model: 'deepshi-sketch', prompt: 'x', n: 5 }), 400, 'invalid_value', 'n');
    await expectTracedError(client.images.generate({ model: 'deepshi-sketch', prompt: 'x', n: 0 }), 400, 'invalid_value', 'n');
    await expectTracedError(client.images.generate({ model: 'deepshi-sketch', prompt: 'x', n: 1.5 }), 400, 'invalid_type', 'n');
    await expectTracedError(
      client.images.generate({ model: 'deepshi-sketch', prompt: 'x', response_format: 'png' as any }),
      400,
      'invalid_value',
      'response_format',
    );
    await expectTracedError(
      client.images.generate({ model: 'deepshi-sketch', prompt: 'x', output_format: 'gif' as any }),
      400,
      'invalid_value',
      'output_format',
    );
    await expectTracedError(
      client.images.generate({ model: 'deepshi-sketch', prompt: 'x', width: 5000, height: 512 } as any),
      400,
      'invalid_value',
      'width',
    );
    await expectTracedError(
      client.images.generate({ model: 'deepshi-sketch', prompt: 'x', width: 513, height: 512 } as any),
      400,
      'invalid_value',
      'width',
    );
    await expectTracedError(
      client.images.generate({ model: 'deepshi-sketch', prompt: 'x', aspect_ratio: '7:3' } as any),
      400,
      'invalid_value',
      'aspect_ratio',
    );
    await expectTracedError(
      client.images.generate({ model: 'deepshi-sketch', prompt: 'x', resolution: '8K' } as any),
      400,
      'invalid_value',
      'resolution',
    );
    await expectTracedError(
      client.images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'x' }, { seed: -1 })),
      400,
      'invalid_value',
      'seed',
    );
    await expectTracedError(
      client.images.generate({ model: 'deepshi-sketch', prompt: 'x', size: 'huge' as any }),
      400,
      'invalid_value',
      'size',
    );
    await expectTracedError(client.images.generate({ model: 'deepshi-sketch', prompt: 42 as any }), 400, 'invalid_type', 'prompt');
  });

  it('a prompt longer than prompt_max_length → 400 on prompt', async () => {
    const error = await expectTracedError(
      t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'x'.repeat(4001) }),
      400,
      'string_above_max_length',
      'prompt',
    );
    assert.match(error.message, /at most 4000/);
  });

  it('malformed JSON, non-object bodies, oversized bodies, unknown routes and wrong methods are envelopes too', async () => {
    const headers = { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' };
    const malformed = await rawRequest(t.url, { path: '/v1/images/generations', method: 'POST', headers, body: '{"model":' });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.error.code, 'invalid_json');
    const array = await rawRequest(t.url, { path: '/v1/images/generations', method: 'POST', headers, body: '[1,2]' });
    assert.equal(array.status, 400);
    const huge = await rawRequest(t.url, {
      path: '/v1/images/generations',
      method: 'POST',
      headers,
      body: JSON.stringify({ model: 'deepshi-sketch', prompt: 'x'.repeat(2_000_000) }),
    });
    assert.equal(huge.status, 413);
    assert.equal(huge.body.error.code, 'request_too_large');
    const unknown = await rawRequest(t.url, { path: '/v1/nothing-here', method: 'GET', headers });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'unknown_url');
    const method = await rawRequest(t.url, { path: '/v1/images/generations', method: 'GET', headers });
    assert.equal(method.status, 405);
    assert.equal(method.headers.get('allow'), 'POST');
    const text = await rawRequest(t.url, {
      path: '/v1/images/generations',
      method: 'POST',
      headers: { ...headers, 'content-type': 'text/plain' },
      body: 'hi',
    });
    assert.equal(text.status, 415);
    assert.ok(unknown.headers.get('x-request-id'));
  });

  it('insufficient credits → 402 APIError insufficient_quota, not retried, nothing changed', async () => {
    const poor = await t.createAccount('0.0005');
    const client = new OpenAI({ apiKey: poor.key, baseURL: `${t.url}/v1`, maxRetries: 2 });
    const error = await expectTracedError(client.images.generate({ model: 'deepshi-sketch', prompt: 'x' }), 402, 'insufficient_quota');
    assert.equal(error.type, 'insufficient_quota');
    assert.equal(error.message, '402 You have insufficient credits to complete this request.');
    assert.equal(error.headers?.get('x-should-retry'), 'false');
    assert.equal(await t.balance(poor.accountId), '0.0005');
    const usage = await fetch(`${t.url}/v1/account/usage`, { headers: { authorization: `Bearer ${poor.key}` } }).then((r) => r.json());
    assert.deepEqual(usage.data, []);
  });

  it('a 402 is caught as the README shows: APIError with status 402 (no subclass, so not RateLimitError), one attempt, images and chat', async () => {
    const poor = await t.createAccount('0');
    let attempts = 0;
    const client = new OpenAI({
      apiKey: poor.key,
      baseURL: `${t.url}/v1`,
      maxRetries: 2,
      fetch: (input, init) => {
        attempts++;
        return fetch(input, init);
      },
    });
    for (const call of [
      () => client.images.generate({ model: 'deepshi-sketch', prompt: 'x' }),
      () => client.chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }] }),
      () => client.images.generate({ model: 'deepshi-sketch', prompt: 'x', stream: true }),
    ]) {
      attempts = 0;
      let caught: string | undefined;
      // The README's pattern.
      try {
        await call();
      } catch (err) {
        if (err instanceof OpenAI.RateLimitError) caught = 'rate limited';
        else if (err instanceof OpenAI.APIError && err.status === 402) caught = `out of credit: ${err.code}`;
        else throw err;
      }
      assert.equal(caught, 'out of credit: insufficient_quota');
      assert.equal(attempts, 1, 'a 402 is not retried');
    }
  });

  it('an upstream failure costs nothing and the hold is released', async () => {
    const fresh = await t.createAccount('1');
    scripted.behaviour = { error: new ProviderError('unavailable', 'boom') };
    await expectTracedError(t.client(fresh.key).images.generate({ model: 'scripted-image', prompt: 'x' }), 503, 'upstream_error');
    scripted.behaviour = { error: new ProviderError('refused', 'The prompt was refused by the provider’s safety system.') };
    await expectTracedError(t.client(fresh.key).images.generate({ model: 'scripted-image', prompt: 'x' }), 400, 'content_policy_violation');
    scripted.behaviour = { garbage: true };
    await expectTracedError(t.client(fresh.key).images.generate({ model: 'scripted-image', prompt: 'x' }), 502, 'upstream_error');
    scripted.behaviour = {};
    await expectBalance(t, fresh, '1');
  });

  it('when 1 of 3 images fails, the caller gets 2 and pays for 2', async () => {
    const fresh = await t.createAccount('1');
    scripted.behaviour = { error: new ProviderError('failed', 'third image failed', { accepted: true }), failAfter: 2 };
    const result = (await t.client(fresh.key).images.generate({ model: 'scripted-image', prompt: 'x', n: 3 })) as any;
    scripted.behaviour = {};
    assert.equal(result.data.length, 2);
    assert.equal(result.usage.cost.total_cost, 0.02);
    assert.ok(result.warnings.some((warning: { message: string }) => /Only 2 of 3/.test(warning.message)));
    assert.equal(await t.balance(fresh.accountId), '0.98');
  });
});
