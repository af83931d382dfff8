import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { rawRequest, startTestServer, type TestServer } from '../helpers/test-server.ts';

/**
 * An Idempotency-Key's response is committed in the same transaction as the charge. Before, it was saved by a
 * second write after settling: a process killed between the two left a charge whose retry could only answer
 * 500 idempotent_response_lost. Here the second write never finishes (as if the process had died right after
 * settling): the caller is answered all the same, and a retry gets the settled result.
 */
describe('the response of an idempotent request is saved with its charge', () => {
  const adapter = new ScriptedAdapter();
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    t = await startTestServer({ adapters: [adapter], catalog: testCatalogJson() });
    account = await t.createAccount('10');
  });
  after(() => t.close());

  it('a retry replays the settled result even when saving it separately would never have happened', async () => {
    // Any separate save of an idempotent response now hangs forever.
    t.server.store.completeIdempotencyKey = () => new Promise<boolean>(() => {});
    const send = () =>
      rawRequest(t.url, {
        path: '/v1/images/generations',
        method: 'POST',
        signal: AbortSignal.timeout(10_000),
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json', 'idempotency-key': 'settled-once' },
        body: JSON.stringify({ model: 'scripted-image', prompt: 'once', size: '256x256' }),
      });
    const first = await send();
    assert.equal(first.status, 200);
    const retry = await send();
    assert.equal(retry.status, 200);
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    assert.equal(retry.headers.get('x-deepshi-original-request-id'), first.headers.get('x-request-id'));
    assert.deepEqual(retry.body, first.body, 'the very same response');
    assert.equal(retry.headers.get('x-request-cost'), first.headers.get('x-request-cost'));
    const requests = await t.server.store.listRequests(account.accountId, 10);
    assert.deepEqual(
      requests.map((request) => request.status),
      ['settled'],
      'generated and charged once',
    );
  });
});
