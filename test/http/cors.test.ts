import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import OpenAI, { toFile } from 'openai';
import { ConfigError, loadConfig } from '../../src/config/config.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/**
 * CORS on /v1: browser apps use the OpenAI SDK (`dangerouslyAllowBrowser`) against Deepshi. The tests play the
 * browser: a preflight for the non-simple request, then the request with `Origin`, and only the CORS-safelisted and
 * exposed response headers handed to the SDK, as a browser would.
 */
const APP = 'https://app.example.com';
const SAFELISTED = new Set(['cache-control', 'content-language', 'content-length', 'content-type', 'expires', 'last-modified', 'pragma']);

/** A fetch that behaves like a browser page at `origin` calling cross-origin; throws where a browser would block. */
function browserFetch(origin: string): typeof fetch {
  return async (input, init) => {
    const request = new Request(input as string, init);
    // Headers a page may send without asking (the browser sets user-agent itself); all others need the preflight's yes.
    const simple = (name: string) =>
      ['accept', 'accept-language', 'content-language', 'user-agent'].includes(name) ||
      (name === 'content-type' &&
        /^(text\/plain|multipart\/form-data|application\/x-www-form-urlencoded)/.test(request.headers.get(name) ?? ''));
    const headerNames = [...request.headers.keys()].filter((name) => !simple(name));
    const preflight = await fetch(request.url, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': request.method, 'access-control-request-headers': headerNames.join(',') },
    });
    const allowOrigin = preflight.headers.get('access-control-allow-origin');
    if (preflight.status >= 300 || (allowOrigin !== '*' && allowOrigin !== origin))
      throw new TypeError(`CORS preflight refused (${preflight.status}, allow-origin ${allowOrigin})`);
    const allowedHeaders = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
    for (const name of headerNames) if (!allowedHeaders.includes(name)) throw new TypeError(`CORS preflight does not allow header ${name}`);
    if (!(preflight.headers.get('access-control-allow-methods') ?? '').includes(request.method))
      throw new TypeError(`CORS preflight does not allow ${request.method}`);

    const headers = new Headers(request.headers);
    headers.set('origin', origin);
    // The body as the Request holds it (a multipart body may be a one-shot stream that constructing the Request took).
    const body = request.body === null ? undefined : await request.arrayBuffer();
    const response = await fetch(request.url, { method: request.method, headers, body, signal: init?.signal });
    const responseOrigin = response.headers.get('access-control-allow-origin');
    if (responseOrigin !== '*' && responseOrigin !== origin)
      throw new TypeError(`CORS blocked the response (allow-origin ${responseOrigin})`);
    const exposed = new Set((response.headers.get('access-control-expose-headers') ?? '').toLowerCase().split(/\s*,\s*/));
    const visible = new Headers();
    response.headers.forEach((value, name) => {
      if (SAFELISTED.has(name) || exposed.has(name)) visible.set(name, value);
    });
    return new Response(response.body, { status: response.status, headers: visible });
  };
}

describe('CORS: browser callers on /v1 (any origin by default)', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  const browserClient = (key: string, origin = APP) =>
    new OpenAI({ apiKey: key, baseURL: `${t.url}/v1`, maxRetries: 0, dangerouslyAllowBrowser: true, fetch: browserFetch(origin) });

  it('the openai SDK in a browser generates an image and reads the request id, cost and rate-limit headers', async () => {
    const account = await t.createAccount('1');
    const { data, response } = await browserClient(account.key)
      .images.generate({ model: 'deepshi-sketch', prompt: 'a fox' })
      .withResponse();
    assert.equal(data.data!.length, 1);
    assert.match(response.headers.get('x-request-id') ?? '', /^req_/);
    assert.equal(response.headers.get('x-request-cost'), String((data as any).usage.cost.total_cost));
    const models = await browserClient(account.key).models.list();
    assert.ok(models.data.some((model) => model.id === 'deepshi-sketch'));
  });

  it('streams are readable too: a streamed image, a streamed edit and a streamed chat completion, each with its request id', async () => {
    const account = await t.createAccount('1');
    const client = browserClient(account.key);

    // `quality` is ignored by deepshi-sketch: the warning header is exposed; a stream never states a cost in its headers.
    const image = await client.images
      .generate({ model: 'deepshi-sketch', prompt: 'a fox', size: '256x256', quality: 'high', stream: true })
      .withResponse();
    assert.match(image.response.headers.get('x-request-id') ?? '', /^req_/);
    assert.equal(image.response.headers.get('x-deepshi-warnings'), 'quality');
    assert.equal(image.response.headers.get('x-request-cost'), null);
    const imageEvents = [];
    for await (const event of image.data) imageEvents.push(event);
    assert.equal(imageEvents.at(-1)?.type, 'image_generation.completed');

    const reference = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const edit = await client.images
      .edit({ model: 'deepshi-sketch', prompt: 'night', image: await toFile(reference, 'ref.png', { type: 'image/png' }), stream: true })
      .withResponse();
    assert.match(edit.response.headers.get('x-request-id') ?? '', /^req_/);
    assert.notEqual(edit.response.headers.get('x-request-id'), image.response.headers.get('x-request-id'));
    const editEvents = [];
    for await (const event of edit.data) editEvents.push(event);
    assert.equal(editEvents.at(-1)?.type, 'image_edit.completed');

    const chat = await client.chat.completions
      .create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } })
      .withResponse();
    assert.match(chat.response.headers.get('x-request-id') ?? '', /^req_/);
    let text = '';
    for await (const chunk of chat.data) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, 'Echo: hi');
  });

  it('a streamed request refused before its stream (402) is readable: APIError with status, code and request id', async () => {
    const poor = await t.createAccount('0');
    await assert.rejects(
      browserClient(poor.key).images.generate({ model: 'deepshi-sketch', prompt: 'x', stream: true }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.APIError && !(error instanceof OpenAI.RateLimitError), String(error));
        assert.equal(error.status, 402);
        assert.equal(error.code, 'insufficient_quota');
        assert.match(error.requestID ?? '', /^req_/);
        return true;
      },
    );
  });

  it('errors are readable too: a 401 reaches the SDK as AuthenticationError with its request id', async () => {
    await assert.rejects(browserClient('sk-bf-not-a-key').images.generate({ model: 'deepshi-sketch', prompt: 'x' }), (error: unknown) => {
      assert.ok(error instanceof OpenAI.AuthenticationError);
      assert.equal(error.code, 'invalid_api_key');
      assert.match(error.requestID ?? '', /^req_/);
      return true;
    });
  });

  it('the preflight allows the SDK headers (x-stainless-*, OpenAI-Organization, Idempotency-Key) (no key needed)', async () => {
    const preflight = await fetch(`${t.url}/v1/images/generations`, {
      method: 'OPTIONS',
      headers: {
        origin: APP,
        'access-control-request-method': 'POST',
        'access-control-request-headers':
          'authorization,content-type,x-stainless-retry-count,x-stainless-timeout,openai-organization,idempotency-key',
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
    const allowed = preflight.headers.get('access-control-allow-headers')!.split(/\s*,\s*/);
    for (const name of [
      'authorization',
      'content-type',
      'x-stainless-retry-count',
      'x-stainless-timeout',
      'openai-organization',
      'idempotency-key',
    ]) {
      assert.ok(allowed.includes(name), name);
    }
  });

  it('admin and metrics routes never answer cross-origin callers', async () => {
    for (const path of ['/admin/v1/accounts', '/metrics', '/healthz']) {
      const preflight = await fetch(`${t.url}${path}`, {
        method: 'OPTIONS',
        headers: { origin: APP, 'access-control-request-method': 'POST' },
      });
      assert.equal(preflight.headers.get('access-control-allow-origin'), null, path);
    }
  });
});

describe('CORS: DEEPSHI_CORS_ORIGINS', () => {
  let listed: TestServer;
  let off: TestServer;
  before(async () => {
    listed = await startTestServer({ env: { DEEPSHI_CORS_ORIGINS: `${APP}, https://studio.example.com` } });
    off = await startTestServer({ env: { DEEPSHI_CORS_ORIGINS: 'off' } });
  });
  after(async () => {
    await listed.close();
    await off.close();
  });

  it('a list admits only its origins (echoed, with Vary: Origin)', async () => {
    const account = await listed.createAccount('1');
    const client = (origin: string) =>
      new OpenAI({
        apiKey: account.key,
        baseURL: `${listed.url}/v1`,
        maxRetries: 0,
        dangerouslyAllowBrowser: true,
        fetch: browserFetch(origin),
      });
    const { response } = await client('https://studio.example.com').models.list().withResponse();
    assert.equal(response.status, 200);
    const direct = await fetch(`${listed.url}/v1/models`, { headers: { origin: APP, authorization: `Bearer ${account.key}` } });
    assert.equal(direct.headers.get('access-control-allow-origin'), APP);
    assert.match(direct.headers.get('vary') ?? '', /origin/i);
    // A browser blocks it; the SDK reports a blocked fetch as a connection error.
    await assert.rejects(
      client('https://evil.example').models.list(),
      (error: unknown) => error instanceof OpenAI.APIConnectionError && /CORS/.test(String((error as Error).cause)),
    );
  });

  it('a listed origin reads a streamed chat completion (the origin echoed, with Vary: Origin)', async () => {
    const account = await listed.createAccount('1');
    const client = new OpenAI({
      apiKey: account.key,
      baseURL: `${listed.url}/v1`,
      maxRetries: 0,
      dangerouslyAllowBrowser: true,
      fetch: browserFetch(APP),
    });
    const chat = await client.chat.completions
      .create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }], stream: true })
      .withResponse();
    assert.match(chat.response.headers.get('x-request-id') ?? '', /^req_/);
    for await (const _chunk of chat.data) {
      // drained
    }
    const direct = await fetch(`${listed.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { origin: APP, authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    });
    assert.equal(direct.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal(direct.headers.get('access-control-allow-origin'), APP);
    assert.match(direct.headers.get('vary') ?? '', /origin/i);
    assert.match(direct.headers.get('access-control-expose-headers') ?? '', /x-request-id/);
    await direct.text();
  });

  it('off sends no CORS headers at all', async () => {
    const preflight = await fetch(`${off.url}/v1/images/generations`, {
      method: 'OPTIONS',
      headers: { origin: APP, 'access-control-request-method': 'POST' },
    });
    assert.equal(preflight.headers.get('access-control-allow-origin'), null);
  });

  it('a malformed origin stops start-up with a message saying what is expected', () => {
    for (const value of ['app.example.com', 'https://app.example.com/path', 'ftp://files.example.com']) {
      assert.throws(
        () => loadConfig({ DEEPSHI_CORS_ORIGINS: value }),
        (error: unknown) =>
          error instanceof ConfigError && /DEEPSHI_CORS_ORIGINS must be \*, off, or comma-separated origins/.test(error.message),
        value,
      );
    }
    assert.deepEqual(loadConfig({ DEEPSHI_CORS_ORIGINS: 'https://a.example, http://localhost:3000' }).corsOrigins, [
      'https://a.example',
      'http://localhost:3000',
    ]);
    assert.equal(loadConfig({}).corsOrigins, '*');
    assert.equal(loadConfig({ DEEPSHI_CORS_ORIGINS: 'off' }).corsOrigins, false);
  });
});
