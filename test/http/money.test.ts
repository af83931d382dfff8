import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { expectBalance } from '../helpers/assertions.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/** Money end to end: the billed cost equals the catalog price and the balance change, under any concurrency. */
describe('credits and the ledger over HTTP', () => {
  let t: TestServer;

  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  async function ledgerSum(accountId: string) {
    const ledger = await t.admin('GET', `/admin/v1/accounts/${accountId}/ledger?limit=1000`);
    const nanos = (usd: string) => BigInt(Math.round(Number(usd) * 1e9));
    return {
      available: ledger.data.reduce((sum: bigint, entry: any) => sum + nanos(entry.available_delta), 0n),
      held: ledger.data.reduce((sum: bigint, entry: any) => sum + nanos(entry.held_delta), 0n),
      entries: ledger.data,
    };
  }

  it('usage.cost.total_cost equals the catalog price and the balance change, to the nano', async () => {
    const account = await t.createAccount('1');
    const card = (await t.client(account.key).models.retrieve('deepshi-sketch')) as any;
    const price = Number(card.pricing.per_image);
    const result = (await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'x', n: 2 })) as any;
    assert.equal(result.usage.cost.total_cost, price * 2);
    const balance = Number(await t.balance(account.accountId));
    assert.equal(Math.round((1 - balance) * 1e9), Math.round(result.usage.cost.total_cost * 1e9));
  });

  it('200 concurrent requests against a balance covering exactly k: k succeed, the rest get 402, the ledger sums', async () => {
    const k = 37;
    const account = await t.createAccount((0.001 * k).toFixed(3));
    const client = t.client(account.key, { maxRetries: 0 });
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, index) =>
        client.images.generate({ model: 'deepshi-sketch', prompt: `p${index}`, width: 64, height: 64 } as any),
      ),
    );
    const ok = results.filter((result) => result.status === 'fulfilled');
    const rejected = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    assert.equal(ok.length, k);
    assert.equal(rejected.length, 200 - k);
    for (const failure of rejected) {
      assert.ok(failure.reason instanceof OpenAI.APIError);
      assert.equal(failure.reason.status, 402);
    }
    await expectBalance(t, account, '0');
    const sums = await ledgerSum(account.accountId);
    assert.equal(sums.available, 0n);
    assert.equal(sums.held, 0n);
    // One credit, then exactly one hold and one settle per successful request: every cent is traceable.
    assert.equal(sums.entries.filter((entry: any) => entry.kind === 'hold').length, k);
    assert.equal(sums.entries.filter((entry: any) => entry.kind === 'settle').length, k);
  });

  it('a caller sees its own balance and recent usage with its API key', async () => {
    const account = await t.createAccount('2');
    const client = t.client(account.key);
    await client.images.generate({ model: 'deepshi-sketch', prompt: 'x' });
    const me = await fetch(`${t.url}/v1/account`, { headers: { authorization: `Bearer ${account.key}` } }).then((r) => r.json());
    assert.equal(me.balance, '1.999');
    assert.equal(me.held, '0');
    const usage = await fetch(`${t.url}/v1/account/usage`, { headers: { authorization: `Bearer ${account.key}` } }).then((r) => r.json());
    assert.equal(usage.data.length, 1);
    assert.equal(usage.data[0].model, 'deepshi-sketch');
    assert.equal(usage.data[0].cost, '0.001');
    assert.equal(usage.data[0].status, 'settled');
  });
});
