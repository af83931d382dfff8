import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { DEGRADED_HEADER } from '../../src/limits/limiter.ts';
import { deadPort } from '../helpers/ports.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { ADMIN_TOKEN, rawRequest, startTestServer, type TestServer } from '../helpers/test-server.ts';

/** The test catalog plus `scripted-capped`: the scripted upstream with max_concurrency 1. */
function cappedCatalog(): string {
  const catalog = JSON.parse(testCatalogJson());
  const scripted = catalog.models.find((model: { id: string }) => model.id === 'scripted-image');
  catalog.models.push({ ...structuredClone(scripted), id: 'scripted-capped', max_concurrency: 1 });
  return JSON.stringify(catalog);
}

const RATE_HEADERS = ['x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests'];

/** Per-key limits and per-model caps over HTTP (memory backend; the Redis backend is tested in test/limits and test/scale). */
describe('rate limits', () => {
  let t: TestServer;
  const scripted = new ScriptedAdapter();

  before(async () => {
    t = await startTestServer({ catalog: cappedCatalog(), adapters: [scripted], env: { DEEPSHI_KEEPALIVE_MS: '30' } });
  });
  after(() => t.close());

  const limits = (keyId: string, body: Record<string, unknown>) => t.admin('POST', `/admin/v1/keys/${keyId}/limits`, body);
  const generate = (key: string, body: Record<string, unknown> = {}, signal?: AbortSignal) =>
    fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'scripted-image', prompt: 'x', ...body }),
      signal,
    });
  async function holds(accountId: string): Promise<number> {
    const ledger = await t.admin('GET', `/admin/v1/accounts/${accountId}/ledger?limit=1000`);
    return ledger.data.filter((entry: { kind: string }) => entry.kind === 'hold').length;
  }

  it("the admin API sets, changes and clears a key's limits, and validates them", async () => {
    const account = await t.createAccount('1');
    const created = await t.admin('GET', `/admin/v1/accounts/${account.accountId}`);
    assert.deepEqual(created.keys[0].limits, {
      requests_per_minute: null,
      images_per_minute: null,
      max_in_flight: null,
      tokens_per_minute: null,
      max_queued_jobs: null,
    });
    const set = await limits(account.keyId, { requests_per_minute: 60, images_per_minute: 0, max_in_flight: 2, tokens_per_minute: 30_000 });
    assert.deepEqual(set.limits, {
      requests_per_minute: 60,
      images_per_minute: 0,
      max_in_flight: 2,
      tokens_per_minute: 30_000,
      max_queued_jobs: null,
    });
    const partial = await limits(account.keyId, { max_in_flight: null });
    assert.deepEqual(
      partial.limits,
      { requests_per_minute: 60, images_per_minute: 0, max_in_flight: null, tokens_per_minute: 30_000, max_queued_jobs: null },
      'fields left out keep their value',
    );

    const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const post = (keyId: string, body: unknown) =>
      rawRequest(t.url, { path: `/admin/v1/keys/${keyId}/limits`, method: 'POST', headers, body: JSON.stringify(body) });
    for (const bad of [-1, 1.5, '10', true, 2e9]) {
      for (const name of ['requests_per_minute', 'tokens_per_minute', 'max_queued_jobs']) {
        const response = await post(account.keyId, { [name]: bad });
        assert.equal(response.status, 400, `value ${bad}`);
        assert.equal(response.body.error.param, name);
      }
    }
    assert.equal((await post(account.keyId, { rpm: 1 })).status, 400, 'unknown fields are refused, not ignored');
    assert.equal((await post('key_does_not_exist', { max_in_flight: 1 })).status, 404);
    const unauthorised = await rawRequest(t.url, {
      path: `/admin/v1/keys/${account.keyId}/limits`,
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${account.key}` },
      body: '{}',
    });
    assert.equal(unauthorised.status, 401);
  });

  it('requests per minute: R pass with x-ratelimit-* headers; the next gets 429 rate_limit_exceeded, Retry-After, the headers, and no hold', async () => {
    const account = await t.createAccount('1');
    await limits(account.keyId, { requests_per_minute: 2 });
    const client = t.client(account.key);
    const first = await client.images.generate({ model: 'scripted-image', prompt: 'x' }).withResponse();
    assert.equal(first.response.headers.get('x-ratelimit-limit-requests'), '2');
    assert.equal(first.response.headers.get('x-ratelimit-remaining-requests'), '1');
    assert.match(first.response.headers.get('x-ratelimit-reset-requests')!, /^(\d+ms|\d+(\.\d+)?s)$/);
    assert.equal(first.response.headers.get('x-ratelimit-limit-images'), null, 'no images limit, no images headers');
    const second = await client.images.generate({ model: 'scripted-image', prompt: 'x' }).withResponse();
    assert.equal(second.response.headers.get('x-ratelimit-remaining-requests'), '0');

    const error = await client.images.generate({ model: 'scripted-image', prompt: 'x' }).catch((caught) => caught);
    assert.ok(error instanceof OpenAI.RateLimitError);
    assert.equal(error.status, 429);
    assert.equal(error.code, 'rate_limit_exceeded');
    assert.equal(error.type, 'rate_limit_error');
    const retryAfter = Number(error.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
    assert.ok(retryAfter >= 25, 'the next request is allowed ~30 s after the first');
    for (const name of RATE_HEADERS) assert.ok(error.headers.get(name), `${name} on the 429`);
    assert.equal(error.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.equal(await holds(account.accountId), 2, 'the refused request took no hold');
    assert.equal(await t.balance(account.accountId), '0.98');
  });

  it('images per minute count n', async () => {
    const account = await t.createAccount('1');
    await limits(account.keyId, { images_per_minute: 5 });
    const three = await generate(account.key, { n: 3 });
    assert.equal(three.status, 200);
    assert.equal(three.headers.get('x-ratelimit-limit-images'), '5');
    assert.equal(three.headers.get('x-ratelimit-remaining-images'), '2');
    const again = await generate(account.key, { n: 3 });
    assert.equal(again.status, 429);
    assert.match((await again.json()).error.message, /images per minute/);
    assert.equal((await generate(account.key, { n: 2 })).status, 200);
    await limits(account.keyId, { images_per_minute: 3 });
    const tooMany = await generate(account.key, { n: 4 });
    assert.equal(tooMany.status, 429);
    assert.equal(tooMany.headers.get('x-should-retry'), 'false', 'n above the whole allowance is not worth retrying');
  });

  it('streamed responses carry the same headers', async () => {
    const account = await t.createAccount('1');
    await limits(account.keyId, { requests_per_minute: 10, images_per_minute: 20 });
    const response = await generate(account.key, { stream: true });
    assert.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal(response.headers.get('x-ratelimit-limit-requests'), '10');
    assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '9');
    assert.equal(response.headers.get('x-ratelimit-remaining-images'), '19');
    assert.match(await response.text(), /image_generation\.completed/);
  });

  it('max in flight: a second concurrent generation is refused with 429 and no hold; the slot frees when the first ends', async () => {
    const account = await t.createAccount('1');
    await limits(account.keyId, { max_in_flight: 1 });
    scripted.behaviour = { delayMs: 300 };
    try {
      const slow = generate(account.key);
      await sleep(100);
      const refused = await generate(account.key);
      assert.equal(refused.status, 429);
      assert.equal(refused.headers.get('retry-after'), '1');
      const body = await refused.json();
      assert.equal(body.error.code, 'rate_limit_exceeded');
      assert.match(body.error.message, /at most 1 generation may run at once/);
      assert.equal((await slow).status, 200);
      assert.equal((await generate(account.key)).status, 200, 'the slot was released');
      assert.equal(await holds(account.accountId), 2);
    } finally {
      scripted.behaviour = {};
    }
  });

  it('in-flight slots are released when the client goes away, for JSON and for SSE', async () => {
    const account = await t.createAccount('1');
    await limits(account.keyId, { max_in_flight: 1 });
    for (const stream of [false, true]) {
      scripted.behaviour = { delayMs: 5_000 };
      const gone = new AbortController();
      const response = generate(account.key, { stream }, gone.signal).then(
        async (r): Promise<unknown> => (stream ? r.body!.getReader().read() : r),
        () => undefined,
      );
      await sleep(150);
      assert.equal((await generate(account.key)).status, 429, `busy while the ${stream ? 'stream' : 'JSON request'} runs`);
      gone.abort();
      await response.catch(() => {});
      scripted.behaviour = {};
      assert.equal(
        await eventually(async () => (await generate(account.key)).status === 200),
        true,
        `slot freed after a ${stream ? 'stream' : 'JSON'} disconnect`,
      );
    }
    const state = await t.admin('GET', `/admin/v1/accounts/${account.accountId}`);
    assert.equal(state.held, '0');
    assert.equal(state.balance, '0.98', 'abandoned generations were not charged');
  });

  it("a model's max_concurrency refuses the excess with 429 and Retry-After, whoever calls, and takes no hold", async () => {
    const a = await t.createAccount('1');
    const b = await t.createAccount('1');
    scripted.behaviour = { delayMs: 300 };
    try {
      const first = generate(a.key, { model: 'scripted-capped' });
      await sleep(100);
      const second = await generate(b.key, { model: 'scripted-capped' });
      assert.equal(second.status, 429);
      assert.equal(second.headers.get('retry-after'), '1');
      assert.match((await second.json()).error.message, /scripted-capped is at its limit of concurrent generations/);
      assert.equal((await generate(b.key)).status, 200, 'other models are not affected');
      assert.equal((await first).status, 200);
      assert.equal((await generate(b.key, { model: 'scripted-capped' })).status, 200);
      assert.equal(await holds(b.accountId), 2);
    } finally {
      scripted.behaviour = {};
    }
  });

  it("a model's cap counts its upstream calls: n above the adapter's images per call takes several slots", async () => {
    const catalog = JSON.parse(cappedCatalog());
    catalog.models.find((m: { id: string }) => m.id === 'scripted-capped').max_concurrency = 1;
    const adapter = new ScriptedAdapter();
    Object.assign(adapter, { capabilities: { ...adapter.capabilities, maxImagesPerCall: 1 } });
    const local = await startTestServer({ catalog: JSON.stringify(catalog), adapters: [adapter] });
    try {
      const account = await local.createAccount('1');
      const response = await fetch(`${local.url}/v1/images/generations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'scripted-capped', prompt: 'x', n: 2 }),
      });
      assert.equal(response.status, 429, 'two parallel upstream calls exceed a cap of one');
      assert.equal(adapter.calls, 0);
    } finally {
      await local.close();
    }
  });

  it('when the headers are sent (README): on the billed endpoints, per window the key is limited by; never on GET routes', async () => {
    const account = await t.createAccount('1');
    const headersOf = (response: Response) => Object.fromEntries([...response.headers].filter(([name]) => name.startsWith('x-ratelimit-')));
    // No per-minute limit (the dev key's case): nothing to report, no headers.
    const unlimited = await generate(account.key);
    assert.equal(unlimited.status, 200);
    assert.deepEqual(headersOf(unlimited), {});

    await limits(account.keyId, { requests_per_minute: 10 });
    const chat = await fetch(`${t.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(chat.status, 200);
    assert.deepEqual(Object.keys(headersOf(chat)).sort(), [...RATE_HEADERS].sort(), 'requests window only');
    // GET routes are not counted against the limits and carry none.
    for (const path of ['/v1/models', '/v1/models/deepshi-sketch', '/v1/account']) {
      const response = await fetch(`${t.url}${path}`, { headers: { authorization: `Bearer ${account.key}` } });
      assert.equal(response.status, 200, path);
      assert.deepEqual(headersOf(response), {}, path);
    }
    await limits(account.keyId, { requests_per_minute: 10, images_per_minute: 20 });
    assert.equal(Object.keys(headersOf(await generate(account.key))).length, 6, 'requests and images windows');
  });

  it('server-wide defaults apply to keys without their own limits; a key can be set unlimited', async () => {
    const local = await startTestServer({ env: { DEEPSHI_DEFAULT_RPM: '1' } });
    try {
      const account = await local.createAccount('1');
      const client = local.client(account.key);
      await client.images.generate({ model: 'deepshi-sketch', prompt: 'x' });
      const refused = await client.images.generate({ model: 'deepshi-sketch', prompt: 'x' }).catch((caught) => caught);
      assert.equal(refused.status, 429);
      await local.admin('POST', `/admin/v1/keys/${account.keyId}/limits`, { requests_per_minute: 0 });
      const ok = await client.images.generate({ model: 'deepshi-sketch', prompt: 'x' }).withResponse();
      assert.equal(ok.response.headers.get('x-ratelimit-limit-requests'), null, 'unlimited: no headers');
    } finally {
      await local.close();
    }
  });

  it('REDIS_URL unreachable: requests still work and are charged exactly, limits hold per instance, every response says so', async () => {
    const local = await startTestServer({ env: { REDIS_URL: `redis://127.0.0.1:${await deadPort()}` } });
    try {
      assert.equal(local.server.limiter.backendKind, 'redis');
      const account = await local.createAccount('1');
      await local.admin('POST', `/admin/v1/keys/${account.keyId}/limits`, { requests_per_minute: 2 });
      const client = local.client(account.key);
      const started = Date.now();
      const first = await client.images.generate({ model: 'deepshi-sketch', prompt: 'x' }).withResponse();
      assert.ok(Date.now() - started < 2_000, 'no wait on the dead Redis');
      assert.equal(first.response.headers.get(DEGRADED_HEADER), 'redis-unavailable');
      assert.equal(first.response.headers.get('x-ratelimit-remaining-requests'), '1');
      assert.equal((first.data as any).usage.cost.total_cost, 0.001);
      await client.images.generate({ model: 'deepshi-sketch', prompt: 'x' });
      const refused = await client.images.generate({ model: 'deepshi-sketch', prompt: 'x' }).catch((caught) => caught);
      assert.equal(refused.status, 429);
      assert.equal(refused.headers.get(DEGRADED_HEADER), 'redis-unavailable');
      assert.equal(await local.balance(account.accountId), '0.998');
      assert.ok(local.server.limiter.stats.degraded >= 3);
    } finally {
      await local.close();
    }
  });
});

// Not recording-server.ts's eventually: this check is async, and a timeout returns false for the caller to assert on.
async function eventually(check: () => Promise<boolean>, timeoutMs = 3_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(50);
  }
  return false;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
