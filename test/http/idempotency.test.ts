import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { ProviderError } from '../../src/providers/types.ts';
import { fingerprintImageRequest } from '../../src/services/image-generation.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/** Idempotency-Key: a retry gets the first response back and is never charged twice (Stripe semantics, 24 h, per account). */
describe('Idempotency-Key', () => {
  let t: TestServer;
  const scripted = new ScriptedAdapter();

  before(async () => {
    t = await startTestServer({ catalog: testCatalogJson(), adapters: [scripted], env: { DEEPSHI_SWEEP_INTERVAL_MS: '100' } });
  });
  after(() => t.close());

  const post = (key: string, idempotencyKey: string | undefined, body: Record<string, unknown> = {}) =>
    fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
      },
      body: JSON.stringify({ model: 'scripted-image', prompt: 'a fox', ...body }),
    });
  async function ledgerKinds(accountId: string): Promise<string[]> {
    const ledger = await t.admin('GET', `/admin/v1/accounts/${accountId}/ledger?limit=1000`);
    return ledger.data.map((entry: { kind: string }) => entry.kind).reverse();
  }

  it('the same key and body within 24 h returns the original response (images included) without generating or charging again', async () => {
    const account = await t.createAccount('1');
    const key = randomUUID();
    const callsBefore = scripted.calls;
    const first = await post(account.key, key, { n: 2 });
    assert.equal(first.status, 200);
    const firstBody = await first.text();
    assert.equal(first.headers.get('idempotent-replayed'), null);

    // Same request, spelled differently: key order and an explicit default do not make it a different request.
    const retry = await fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ n: 2, response_format: 'b64_json', prompt: 'a fox', model: 'scripted-image' }),
    });
    assert.equal(retry.status, 200);
    assert.equal(await retry.text(), firstBody, 'byte-identical body, images included');
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    assert.equal(retry.headers.get('x-deepshi-original-request-id'), first.headers.get('x-request-id'));
    assert.notEqual(retry.headers.get('x-request-id'), first.headers.get('x-request-id'));
    assert.equal(retry.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(retry.headers.get('x-request-cost'), first.headers.get('x-request-cost'));

    assert.equal(scripted.calls, callsBefore + 1, 'one upstream generation');
    assert.equal(await t.balance(account.accountId), '0.98', 'charged once');
    assert.deepEqual(await ledgerKinds(account.accountId), ['credit', 'hold', 'settle']);
  });

  it('the same key with a different body is refused with 422 and takes no hold', async () => {
    const account = await t.createAccount('1');
    const key = randomUUID();
    assert.equal((await post(account.key, key)).status, 200);
    const other = await t
      .client(account.key)
      .images.generate({ model: 'scripted-image', prompt: 'a different fox' }, { headers: { 'Idempotency-Key': key } })
      .catch((e) => e);
    assert.ok(other instanceof OpenAI.UnprocessableEntityError);
    assert.equal(other.code, 'idempotency_key_reused');
    assert.match(other.message, /different request parameters/);
    assert.equal(other.headers.get('x-should-retry'), 'false');
    assert.deepEqual(await ledgerKinds(account.accountId), ['credit', 'hold', 'settle']);
  });

  it('a duplicate while the first still runs gets 409 with Retry-After; afterwards it gets the result', async () => {
    const account = await t.createAccount('1');
    const key = randomUUID();
    scripted.behaviour = { delayMs: 400 };
    try {
      const first = post(account.key, key);
      await sleep(100);
      const duplicate = await post(account.key, key);
      assert.equal(duplicate.status, 409);
      assert.equal(duplicate.headers.get('retry-after'), '2');
      const body = await duplicate.json();
      assert.equal(body.error.code, 'idempotency_request_in_progress');
      const firstBody = await (await first).text();
      const later = await post(account.key, key);
      assert.equal(later.status, 200);
      assert.equal(await later.text(), firstBody);
      assert.equal(await t.balance(account.accountId), '0.99');
    } finally {
      scripted.behaviour = {};
    }
  });

  it('a retry after a client timeout returns the first result and the account is charged once (the SDK retrying on its own)', async () => {
    const account = await t.createAccount('1');
    scripted.behaviour = { delayMs: 700 };
    try {
      // The SDK times out at 300 ms, then retries with the same headers: 409 (still running, Retry-After) or the replay.
      const client = t.client(account.key, { maxRetries: 3, timeout: 300 });
      const key = randomUUID();
      const result = await client.images
        .generate({ model: 'scripted-image', prompt: 'slow fox' }, { headers: { 'Idempotency-Key': key } })
        .withResponse();
      assert.equal(result.response.headers.get('idempotent-replayed'), 'true', "the answer is the first request's, replayed");
      assert.equal(result.data.data?.length, 1);
      assert.ok(result.data.data![0].b64_json!.length > 100);
      assert.equal(await t.balance(account.accountId), '0.99', 'charged once');
      assert.deepEqual(await ledgerKinds(account.accountId), ['credit', 'hold', 'settle']);

      // Without a key a timed-out request is abandoned and not charged (and a retry would be a new generation).
      const plain = await t
        .client(account.key, { maxRetries: 0, timeout: 300 })
        .images.generate({ model: 'scripted-image', prompt: 'x' })
        .catch((e) => e);
      assert.ok(plain instanceof OpenAI.APIConnectionTimeoutError);
      await sleep(900);
      assert.equal(await t.balance(account.accountId), '0.99');
    } finally {
      scripted.behaviour = {};
    }
  });

  it('a request that charged nothing (upstream failure) forgets the key, so a retry with it runs afresh', async () => {
    const account = await t.createAccount('1');
    const key = randomUUID();
    scripted.behaviour = { error: new ProviderError('failed', 'the upstream lost the job', { accepted: true }) };
    const failed = await post(account.key, key);
    scripted.behaviour = {};
    assert.equal(failed.status, 502);
    const retry = await post(account.key, key);
    assert.equal(retry.status, 200);
    assert.equal(retry.headers.get('idempotent-replayed'), null, 'a fresh run, not a replay of the failure');
    assert.equal(await t.balance(account.accountId), '0.99');
    assert.equal((await post(account.key, key)).headers.get('idempotent-replayed'), 'true');
  });

  it('a request refused for credit or limits saves nothing either', async () => {
    const poor = await t.createAccount('0.005');
    const key = randomUUID();
    assert.equal((await post(poor.key, key)).status, 402);
    await t.admin('POST', `/admin/v1/accounts/${poor.accountId}/credits`, { amount: '1' });
    assert.equal((await post(poor.key, key)).status, 200, 'after a top-up the same key runs');

    const limited = await t.createAccount('1');
    await t.admin('POST', `/admin/v1/keys/${limited.keyId}/limits`, { requests_per_minute: 1 });
    assert.equal((await post(limited.key, undefined)).status, 200);
    const refusedKey = randomUUID();
    assert.equal((await post(limited.key, refusedKey)).status, 429);
    assert.equal(await t.server.store.getIdempotencyKey(limited.accountId, refusedKey), undefined);
  });

  it('keys are scoped to the account: another account using the same key runs its own request', async () => {
    const a = await t.createAccount('1');
    const b = await t.createAccount('1');
    const key = randomUUID();
    assert.equal((await post(a.key, key)).status, 200);
    const other = await post(b.key, key);
    assert.equal(other.status, 200);
    assert.equal(other.headers.get('idempotent-replayed'), null);
    assert.equal(await t.balance(a.accountId), '0.99');
    assert.equal(await t.balance(b.accountId), '0.99');
  });

  it('a malformed key is a 400', async () => {
    const account = await t.createAccount('1');
    for (const bad of ['x'.repeat(256), 'has space', 'caf\u00e9']) {
      const response = await fetch(`${t.url}/v1/images/generations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json', 'idempotency-key': bad },
        body: JSON.stringify({ model: 'scripted-image', prompt: 'x' }),
      });
      assert.equal(response.status, 400, `key ${JSON.stringify(bad).slice(0, 20)}`);
      assert.equal((await response.json()).error.code, 'invalid_idempotency_key');
    }
    assert.equal(await t.balance(account.accountId), '1');
  });

  it('streams: a retry replays the final events (completed images, usage) as SSE and is not charged again', async () => {
    const account = await t.createAccount('1');
    const key = randomUUID();
    const client = t.client(account.key);
    const collect = async () => {
      const stream = await client.images.generate(
        { model: 'scripted-image', prompt: 'a fox', stream: true, n: 2 },
        { headers: { 'Idempotency-Key': key } },
      );
      const events: any[] = [];
      for await (const event of stream) events.push(event);
      return events;
    };
    const first = await collect();
    const replayed = await collect();
    assert.deepEqual(
      first.map((e) => e.type),
      ['image_generation.completed', 'image_generation.completed'],
    );
    assert.deepEqual(replayed, first, 'the same events, images included');
    assert.equal(await t.balance(account.accountId), '0.98');
    const nonStream = await post(account.key, key, { n: 2 });
    assert.equal(nonStream.status, 422, 'stream and non-stream are different requests');
  });

  it('an idempotent stream keeps generating when its client goes away, so the retry gets the images', async () => {
    const account = await t.createAccount('1');
    const key = randomUUID();
    scripted.behaviour = { delayMs: 300 };
    try {
      const gone = new AbortController();
      const response = await fetch(`${t.url}/v1/images/generations`, {
        method: 'POST',
        signal: gone.signal,
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ model: 'scripted-image', prompt: 'x', stream: true }),
      });
      assert.equal(response.status, 200);
      gone.abort();
      // Retried as a caller does: 409 (still running, with Retry-After) until the abandoned stream has finished, then
      // the replay. No fixed wait: under load the generation can outlast any sleep.
      const deadline = Date.now() + 10_000;
      let retry: Response;
      for (;;) {
        retry = await fetch(`${t.url}/v1/images/generations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ model: 'scripted-image', prompt: 'x', stream: true }),
        });
        if (retry.status !== 409) break;
        await retry.arrayBuffer();
        assert.ok(Date.now() < deadline, 'the abandoned stream still runs 10 s later');
        await sleep(50);
      }
      assert.equal(retry.headers.get('idempotent-replayed'), 'true');
      assert.match(await retry.text(), /^event: image_generation\.completed\ndata: \{"type":"image_generation\.completed","b64_json":"/);
      assert.equal(await t.balance(account.accountId), '0.99');
    } finally {
      scripted.behaviour = {};
    }
  });

  describe('after a crash', () => {
    const body = { model: 'scripted-image', prompt: 'crash fox' };
    async function fingerprint(account: { accountId: string; keyId: string }) {
      const prepared = t.server.images.prepare({ keyId: account.keyId, accountId: account.accountId, models: null }, body, {
        endpoint: 'images.generations',
      });
      return fingerprintImageRequest(prepared);
    }

    it('a key left running by a dead instance is taken over once its lock passed, if its hold was released', async () => {
      const account = await t.createAccount('1');
      const key = randomUUID();
      const now = Date.now();
      // The dead request reserved, then its hold was swept (released): nothing charged.
      await t.server.store.reserveCredits({
        requestId: 'req_dead_1',
        accountId: account.accountId,
        keyId: account.keyId,
        model: 'scripted-image',
        endpoint: 'images.generations',
        amount: 10_000_000n,
        expiresAt: now,
      });
      await t.server.store.releaseReservation('req_dead_1', 'expired');
      await t.server.store.claimIdempotencyKey({
        accountId: account.accountId,
        key,
        requestHash: await fingerprint(account),
        requestId: 'req_dead_1',
        now: now - 5000,
        lockedUntil: now - 1,
        expiresAt: now + 60_000,
      });
      const retry = await post(account.key, key, body);
      assert.equal(retry.status, 200);
      assert.equal(await t.balance(account.accountId), '0.99');
      const record = await t.server.store.getIdempotencyKey(account.accountId, key);
      assert.equal(record?.status, 'completed');
      assert.equal(record?.requestId, retry.headers.get('x-request-id'));
    });

    it("while the dead request's hold is still held the retry waits (409); if it was charged but its response lost, the retry gets an explicit 500 and no charge", async () => {
      const account = await t.createAccount('1');
      const key = randomUUID();
      const now = Date.now();
      await t.server.store.reserveCredits({
        requestId: 'req_dead_2',
        accountId: account.accountId,
        keyId: account.keyId,
        model: 'scripted-image',
        endpoint: 'images.generations',
        amount: 10_000_000n,
        expiresAt: now + 60_000,
      });
      await t.server.store.claimIdempotencyKey({
        accountId: account.accountId,
        key,
        requestHash: await fingerprint(account),
        requestId: 'req_dead_2',
        now: now - 5000,
        lockedUntil: now - 1,
        expiresAt: now + 60_000,
      });
      assert.equal((await post(account.key, key, body)).status, 409);

      await t.server.store.settleReservation({ requestId: 'req_dead_2', cost: 10_000_000n, images: 1 });
      const lost = await post(account.key, key, body);
      assert.equal(lost.status, 500);
      assert.equal(lost.headers.get('x-should-retry'), 'false');
      assert.equal((await lost.json()).error.code, 'idempotent_response_lost');
      assert.equal((await post(account.key, key, body)).status, 500, 'stable on every retry');
      assert.equal(await t.balance(account.accountId), '0.99', "only the dead request's charge");
    });
  });

  it('the sweeper reaps keys older than 24 h', async () => {
    const account = await t.createAccount('1');
    await t.server.store.claimIdempotencyKey({
      accountId: account.accountId,
      key: 'old-key',
      requestHash: 'h',
      requestId: 'req_old',
      now: 1_000,
      lockedUntil: 2_000,
      expiresAt: 3_000,
    });
    assert.ok(await t.server.store.getIdempotencyKey(account.accountId, 'old-key'));
    const deadline = Date.now() + 3_000;
    while (Date.now() < deadline && (await t.server.store.getIdempotencyKey(account.accountId, 'old-key'))) await sleep(50);
    assert.equal(await t.server.store.getIdempotencyKey(account.accountId, 'old-key'), undefined);
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
