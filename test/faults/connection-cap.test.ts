import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TestServer } from '../helpers/test-server.ts';
import { rawRequest } from '../helpers/test-server.ts';
import { assertCleanAfter, faultCatalog, startFaultServer, startUpstreams, type Upstreams } from './harness.ts';

/**
 * A route's max_connections (catalog): the upstream calls one instance may have open on it. Over it, a request is
 * answered 429 with Retry-After at once and its hold released; it never waits for a connection while holding credit.
 * Before, undici's pool capped every upstream at 256 connections and queued the rest silently (at 10,000 streams,
 * 9,744 requests waited inside the gateway holding $97.44).
 */
describe('a route at its max_connections', () => {
  let upstreams: Upstreams;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    upstreams = await startUpstreams();
    const catalog = faultCatalog((data) => {
      const model = data.models.find((candidate: { id: string }) => candidate.id === 'deepshi-banana-pro');
      model.routes[0].max_connections = 2;
      model.routes[0].options.timeouts = { connect_ms: 1000, first_byte_ms: 20_000, total_ms: 20_000 };
    });
    t = await startFaultServer(upstreams, { catalog, env: { DEEPSHI_GENERATION_TIMEOUT_MS: '30000' } });
    account = await t.createAccount('10');
  });
  after(async () => {
    await t?.close();
    await upstreams?.close();
  });

  it('two calls run; the others get 429 with Retry-After before the upstream answers either, and are not charged', async () => {
    const proxy = upstreams.proxies['openai-compatible'];
    // The upstream holds both calls until the test lets them go, so the two slots stay taken.
    proxy.set({ method: 'POST', path: /^\/v1\/images\//, action: { kind: 'hold' } });
    const order: string[] = [];
    const call = (index: number) =>
      rawRequest(t.url, {
        path: '/v1/images/generations',
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'deepshi-banana-pro', prompt: `capped ${index}` }),
      }).then((answer) => {
        order.push(`${index}:${answer.status}`);
        return answer;
      });
    const running = [call(0), call(1)];
    await waitFor(() => proxy.seen.length === 2, 'both calls to reach the upstream');
    const refused = await Promise.all([call(2), call(3), call(4)]);
    for (const answer of refused) {
      assert.equal(answer.status, 429);
      assert.equal(answer.body.error.code, 'rate_limit_exceeded');
      assert.match(answer.body.error.message, /upstream connection/);
      assert.equal(answer.headers.get('retry-after'), '1');
    }
    assert.equal(proxy.seen.length, 2, 'the refused calls never reached the upstream');
    const held = (await t.server.store.listRequests(account.accountId, 10)).filter((request) => request.status === 'held');
    assert.equal(held.length, 2, 'only the two running calls hold credit');
    assert.equal(
      (await t.server.store.getAccount(account.accountId))?.held,
      held.reduce((sum, request) => sum + request.hold, 0n),
    );

    proxy.release();
    const done = await Promise.all(running);
    assert.deepEqual(
      done.map((answer) => answer.status),
      [200, 200],
    );
    assert.deepEqual(order.slice(0, 3).sort(), ['2:429', '3:429', '4:429'], 'refused before the running calls were answered');
    proxy.clear();
    await assertCleanAfter(t, account.accountId, account.key, 'max_connections');
    const requests = await t.server.store.listRequests(account.accountId, 10);
    assert.deepEqual(requests.map((request) => request.status).sort(), ['released', 'released', 'released', 'settled', 'settled']);
    assert.equal(
      (await t.server.store.getAccount(account.accountId))?.balance,
      10_000_000_000n - 2n * 10_000_000n,
      'two images charged at $0.01',
    );

    // With the slots free again, the next request runs.
    const next = await call(5);
    assert.equal(next.status, 200);
  });
});

async function waitFor(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
