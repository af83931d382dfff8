/**
 * Chat completions on two Deepshi processes sharing one PostgreSQL and one Redis, with the openai SDK as the client:
 * the money race (balance never negative, the ledger sums) and tokens per minute (admitted at each request's upper
 * bound, the unused part given back, exact across instances through Redis).
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import OpenAI from 'openai';
import { assertLedgerInvariant } from '../store/store-contract.ts';
import { Cluster, admin, createAccount, scaleSuite, type Instance } from './cluster.ts';

/** deepshi-echo's token rule (docs/chat.md) and rates in nanos per token (catalog/models.yaml). */
const tokens = (text: string) => Math.ceil([...text].length / 4);
const promptTokens = (content: string) => 4 + tokens(content);
const RATES = { input: 100, output: 400 };

scaleSuite('chat on two instances, one PostgreSQL, one Redis', () => {
  const cluster = new Cluster();
  let a: Instance;
  let b: Instance;

  before(async () => {
    await cluster.start();
    [a, b] = await Promise.all([cluster.startInstance('A'), cluster.startInstance('B')]);
  });
  after(() => cluster.stop());

  const client = (instance: Instance, key: string) => new OpenAI({ apiKey: key, baseURL: `${instance.url}/v1`, maxRetries: 0 });
  const settle = <T>(promise: Promise<T>) =>
    promise.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error: error as InstanceType<typeof OpenAI.APIError> }),
    );

  it('300 concurrent chats split across both against a balance covering exactly k holds: k succeed, 402 for the rest, the ledger sums', async () => {
    // max_tokens 2 on a longer answer: every completion uses its whole hold, so the outcome cannot depend on the order
    // in which holds and settlements interleave.
    const content = 'hello world';
    const hold = promptTokens(content) * RATES.input + 2 * RATES.output;
    const k = 23;
    const account = await createAccount(a, ((hold * k) / 1e9).toFixed(9));
    const [clientA, clientB] = [client(a, account.key), client(b, account.key)];
    const results = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        settle(
          (i % 2 ? clientA : clientB).chat.completions.create({
            model: 'deepshi-echo',
            messages: [{ role: 'user', content }],
            max_tokens: 2,
          }),
        ),
      ),
    );
    const ok = results.filter((result) => result.ok);
    assert.equal(
      ok.length,
      k,
      JSON.stringify(
        results
          .filter((result) => !result.ok)
          .slice(0, 3)
          .map((result) => (result as any).error?.message),
      ),
    );
    for (const result of results) if (!result.ok) assert.equal(result.error.status, 402, result.error.message);
    // Which instance wins the k holds depends on timing (all k may go to one); what must hold is the count and the ledger.
    const charged = ok.reduce((sum, result) => sum + Math.round((result.value.usage as any).cost.total_cost * 1e9), 0);
    assert.equal(charged, k * hold);

    const state = await admin(b, 'GET', `/admin/v1/accounts/${account.accountId}`);
    assert.equal(state.balance, '0');
    assert.equal(state.held, '0');
    await assertLedgerInvariant(cluster.store, account.accountId);
    const ledger = await cluster.store.listLedger(account.accountId, 10_000);
    assert.equal(ledger.filter((entry) => entry.kind === 'hold').length, k);
    assert.equal(ledger.filter((entry) => entry.kind === 'settle').length, k);
    const requests = await cluster.store.listRequests(account.accountId, 10_000);
    assert.equal(requests.length, k);
    assert.ok(requests.every((request) => request.status === 'settled' && request.endpoint === 'chat.completions'));
  });

  it("a key limited to N tokens per minute admits no more than N (± one request's bound) across both instances; the 429 carries Retry-After and x-ratelimit-*-tokens", async () => {
    const N = 2000;
    const content = 'tell me a long story about two instances';
    const maxTokens = 150;
    // The answer is longer than max_tokens, so each request uses exactly its bound and nothing is given back.
    const bound = promptTokens(content) + maxTokens;
    const account = await createAccount(a, '10');
    await admin(b, 'POST', `/admin/v1/keys/${account.keyId}/limits`, { tokens_per_minute: N });
    const [clientA, clientB] = [client(a, account.key), client(b, account.key)];
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        settle(
          (i % 2 ? clientA : clientB).chat.completions
            .create({ model: 'deepshi-echo', messages: [{ role: 'user', content: content.repeat(20) }], max_tokens: maxTokens })
            .withResponse(),
        ),
      ),
    );
    // The prompt is the repeated content: recompute the bound for it.
    const realBound = promptTokens(content.repeat(20)) + maxTokens;
    assert.ok(realBound > bound);
    const admitted = results.filter((result) => result.ok);
    const refused = results.filter((result) => !result.ok);
    assert.equal(admitted.length + refused.length, 40);
    const used = admitted.reduce((sum, result) => sum + result.value.data.usage!.total_tokens, 0);
    assert.equal(used, admitted.length * realBound, 'each admitted request used its whole bound');
    assert.ok(used <= N + realBound, `used ${used} tokens against a limit of ${N}`);
    assert.ok(used > N - realBound, `the limit is reached, not just respected (used ${used})`);
    for (const result of admitted) assert.equal(result.value.response.headers.get('x-ratelimit-limit-tokens'), String(N));
    for (const result of refused) {
      const error = result.error;
      assert.equal(error.status, 429, error.message);
      assert.equal(error.code, 'rate_limit_exceeded');
      const retryAfter = Number(error.headers?.get('retry-after'));
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
      assert.equal(error.headers?.get('x-ratelimit-limit-tokens'), String(N));
      assert.ok(Number(error.headers?.get('x-ratelimit-remaining-tokens')) < realBound);
      assert.match(error.headers?.get('x-ratelimit-reset-tokens') ?? '', /^\d+(\.\d+)?s$|^\d+ms$|^\d+m\d+(\.\d+)?s$/);
    }
    const holds = (await cluster.store.listLedger(account.accountId, 1000)).filter((entry) => entry.kind === 'hold').length;
    assert.equal(holds, admitted.length, 'no hold for a refused request');
  });

  it("the unused part of a request's bound is given back at settlement, and the other instance sees it", async () => {
    const N = 1000;
    const account = await createAccount(a, '10');
    await admin(a, 'POST', `/admin/v1/keys/${account.keyId}/limits`, { tokens_per_minute: N });
    const content = 'hi';
    // Bound 6 + 900 = 906: a second such request cannot fit unless the first gives back what it did not use.
    const first = await client(a, account.key)
      .chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content }], max_tokens: 900 })
      .withResponse();
    assert.equal(first.response.headers.get('x-ratelimit-remaining-tokens'), String(N - (promptTokens(content) + 900)));
    const used = first.data.usage!.total_tokens;
    assert.equal(used, promptTokens(content) + tokens('Echo: hi'));
    const second = await client(b, account.key)
      .chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content }], max_tokens: 900 })
      .withResponse();
    const remaining = Number(second.response.headers.get('x-ratelimit-remaining-tokens'));
    // N − the first's usage − the second's bound, plus what flowed back since (a few tokens per second).
    const expected = N - used - (promptTokens(content) + 900);
    assert.ok(remaining >= expected && remaining <= expected + 40, `remaining ${remaining}, expected about ${expected}`);
  });
});
