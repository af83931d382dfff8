/**
 * Two Deepshi processes on one PostgreSQL schema and one Redis: money, rate limits, concurrency caps and key
 * revocation hold across instances exactly as on one.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { assertLedgerInvariant } from '../store/store-contract.ts';
import { Cluster, admin, createAccount, generate, scaleSuite, sleep, type Instance } from './cluster.ts';

scaleSuite('two instances, one PostgreSQL, one Redis', () => {
  const cluster = new Cluster();
  let a: Instance;
  let b: Instance;

  before(async () => {
    await cluster.start();
    [a, b] = await Promise.all([cluster.startInstance('A'), cluster.startInstance('B')]);
  });
  after(() => cluster.stop());

  const sketch = (i: number) => ({ model: 'deepshi-sketch', prompt: `p${i}`, width: 64, height: 64 });

  it('500 concurrent requests split across both against a balance covering exactly k: k succeed, 402 for the rest, the ledger sums', async () => {
    const k = 23;
    const account = await createAccount(a, (0.001 * k).toFixed(3));
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => generate(i % 2 ? a : b, account.key, sketch(i))));
    const statuses = results.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, k, `statuses: ${JSON.stringify(count(statuses))}`);
    assert.equal(statuses.filter((s) => s === 402).length, 500 - k);
    for (const refused of results.filter((r) => r.status === 402)) {
      assert.equal(refused.body.error.code, 'insufficient_quota');
      assert.equal(refused.headers.get('x-should-retry'), 'false');
    }
    // Which instance wins the k holds depends on timing (all k may go to one); what must hold is the count and the ledger.
    const charged = results.filter((r) => r.status === 200).reduce((sum, r) => sum + Math.round(r.body.usage.cost.total_cost * 1e9), 0);
    assert.equal(charged, k * 1_000_000);

    const state = await admin(b, 'GET', `/admin/v1/accounts/${account.accountId}`);
    assert.equal(state.balance, '0');
    assert.equal(state.held, '0');
    // balance = Σ available deltas, held = Σ held deltas, and no prefix of the ledger ever went below zero.
    await assertLedgerInvariant(cluster.store, account.accountId);
    const ledger = await cluster.store.listLedger(account.accountId, 10_000);
    assert.equal(ledger.filter((e) => e.kind === 'hold').length, k);
    assert.equal(ledger.filter((e) => e.kind === 'settle').length, k);
    const requests = await cluster.store.listRequests(account.accountId, 10_000);
    assert.equal(requests.length, k);
    assert.ok(requests.every((r) => r.status === 'settled'));
  });

  it('a per-key limit of R requests per minute admits R (±1) across both instances together', async () => {
    const R = 20;
    const account = await createAccount(a, '10');
    await admin(b, 'POST', `/admin/v1/keys/${account.keyId}/limits`, { requests_per_minute: R });
    const results = await Promise.all(Array.from({ length: 3 * R }, (_, i) => generate(i % 2 ? a : b, account.key, sketch(i))));
    const admitted = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    assert.equal(admitted.length + refused.length, 3 * R, `statuses: ${JSON.stringify(count(results.map((r) => r.status)))}`);
    assert.ok(admitted.length >= R && admitted.length <= R + 1, `admitted ${admitted.length}, limit ${R}`);
    for (const response of refused) {
      assert.equal(response.body.error.code, 'rate_limit_exceeded');
      assert.equal(response.body.error.type, 'rate_limit_error');
      const retryAfter = Number(response.headers.get('retry-after'));
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
      assert.equal(response.headers.get('x-ratelimit-limit-requests'), String(R));
      assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '0');
      assert.match(response.headers.get('x-ratelimit-reset-requests')!, /^\d+(\.\d+)?s$|^\d+m\d+(\.\d+)?s$/);
    }
    for (const response of admitted) assert.equal(response.headers.get('x-ratelimit-limit-requests'), String(R));
    const ledger = await cluster.store.listLedger(account.accountId, 10_000);
    assert.equal(ledger.filter((e) => e.kind === 'hold').length, admitted.length, 'no hold for a refused request');
  });

  it('a key capped at C concurrent generations never has more than C at the upstream, while another key is served normally', async () => {
    const C = 3;
    const capped = await createAccount(a, '10');
    const other = await createAccount(b, '10');
    await admin(a, 'POST', `/admin/v1/keys/${capped.keyId}/limits`, { max_in_flight: C });
    const slow = (tag: string, i: number) => ({ model: 'scale-upstream', prompt: `slow:800 tag:${tag} ${i}` });
    const [cappedResults, otherResults] = await Promise.all([
      Promise.all(Array.from({ length: 16 }, (_, i) => generate(i % 2 ? a : b, capped.key, slow('capped', i)))),
      sleep(100).then(() => Promise.all(Array.from({ length: 5 }, (_, i) => generate(i % 2 ? a : b, other.key, slow('other', i))))),
    ]);
    assert.ok((cluster.upstream.peak.get('capped') ?? 0) <= C, `peak ${cluster.upstream.peak.get('capped')} > ${C}`);
    assert.equal(cluster.upstream.peak.get('capped'), C, 'the cap is reached, not just respected');
    const ok = cappedResults.filter((r) => r.status === 200).length;
    assert.ok(ok >= C, `${ok} of the capped key's requests succeeded`);
    for (const refused of cappedResults.filter((r) => r.status !== 200)) {
      assert.equal(refused.status, 429);
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.match(refused.body.error.message, /at most 3 generations may run at once/);
    }
    assert.deepEqual(
      otherResults.map((r) => r.status),
      [200, 200, 200, 200, 200],
      'the other key is not held back',
    );
    assert.equal(cluster.upstream.peak.get('other'), 5, 'and runs all of its requests at once');
    const balance = Number((await admin(a, 'GET', `/admin/v1/accounts/${capped.accountId}`)).balance);
    assert.equal(Math.round(balance * 1e9), 10e9 - ok * 1e7, 'charged for the admitted requests only');
    const holds = (await cluster.store.listLedger(capped.accountId, 1000)).filter((e) => e.kind === 'hold').length;
    assert.equal(holds, ok, 'refused requests took no hold');
  });

  it('a key revoked through instance A is refused by instance B within 1 s; allowlists and limits propagate the same way', async () => {
    const account = await createAccount(a, '1');
    assert.equal((await generate(b, account.key, sketch(1))).status, 200);

    const revokedAt = Date.now();
    await admin(a, 'POST', `/admin/v1/keys/${account.keyId}/revoke`);
    const refused = await generate(b, account.key, sketch(2));
    const elapsed = Date.now() - revokedAt;
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, 'api_key_revoked');
    assert.ok(elapsed < 1_000, `refused ${elapsed} ms after the revocation`);

    const restricted = await createAccount(a, '1');
    assert.equal((await generate(b, restricted.key, sketch(3))).status, 200);
    await admin(a, 'POST', `/admin/v1/keys/${restricted.keyId}/models`, { models: ['scale-upstream'] });
    const denied = await generate(b, restricted.key, sketch(4));
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error.code, 'model_not_found');

    await admin(a, 'POST', `/admin/v1/keys/${restricted.keyId}/limits`, { requests_per_minute: 1 });
    const limited = await generate(b, restricted.key, { model: 'scale-upstream', prompt: 'x' });
    assert.equal(limited.headers.get('x-ratelimit-limit-requests'), '1');

    const deleted = await createAccount(b, '1');
    await admin(a, 'DELETE', `/admin/v1/keys/${deleted.keyId}`);
    assert.equal((await generate(b, deleted.key, sketch(5))).status, 401);
  });
});

function count(values: number[]): Record<number, number> {
  const out: Record<number, number> = {};
  for (const value of values) out[value] = (out[value] ?? 0) + 1;
  return out;
}
