import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/**
 * Callers that die with requests in flight (a client process killed with 16 requests open produced level-50
 * "unhandled error: Premature close" lines): the server logs nothing at error level, every hold is resolved exactly
 * once, and it serves the next request. An idempotent JSON request keeps running after its caller left (a retry will
 * want the result) and found the socket gone when it answered: Fastify reported the abandoned body as that error.
 */
describe('callers that disconnect with requests in flight', () => {
  const adapter = new ScriptedAdapter();
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    t = await startTestServer({ adapters: [adapter], catalog: testCatalogJson(), captureLogs: true });
    account = await t.createAccount('10');
  });
  after(() => t.close());

  /** Sends a request and destroys the connection after `afterMs`, or once the first response bytes arrive. */
  function abandon(body: Record<string, unknown>, headers: Record<string, string>, afterMs: number): Promise<void> {
    return new Promise((resolve) => {
      const request = http.request(`${t.url}/v1/images/generations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json', ...headers },
      });
      request.on('error', () => resolve());
      request.on('response', (response) =>
        response.once('data', () => {
          request.destroy();
          resolve();
        }),
      );
      request.on('close', () => resolve());
      request.end(JSON.stringify(body));
      setTimeout(() => request.destroy(), afterMs);
    });
  }

  it('16 callers die mid-request (JSON, idempotent JSON, SSE): no error logged, no hold left, the next request is served', async () => {
    adapter.behaviour = { delayMs: 300 };
    const body = { model: 'scripted-image', prompt: 'p', size: '256x256' };
    await Promise.all(
      Array.from({ length: 16 }, (_, i) => {
        if (i % 3 === 0) return abandon({ ...body, prompt: `idem ${i}` }, { 'idempotency-key': `gone-${i}` }, 100);
        if (i % 3 === 1) return abandon({ ...body, stream: true }, {}, 100 + (i % 2) * 250);
        return abandon(body, {}, 100);
      }),
    );
    // The idempotent ones run to their end after their callers left; wait until nothing is held.
    const deadline = Date.now() + 10_000;
    while ((await t.admin('GET', `/admin/v1/accounts/${account.accountId}`)).held !== '0') {
      assert.ok(Date.now() < deadline, 'holds still open 10 s later');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    const requests = await t.server.store.listRequests(account.accountId, 100);
    assert.equal(requests.length, 16);
    assert.deepEqual(
      requests.filter((request) => request.status === 'held'),
      [],
    );
    assert.ok(
      requests.filter((request) => request.status === 'settled').length >= 6,
      'the idempotent ones were settled (their retries get them)',
    );
    const errors = t.logs().filter((line) => line.level >= 50);
    assert.deepEqual(
      errors.map((line) => `${line.msg}: ${line.err?.message}`),
      [],
    );

    adapter.behaviour = {};
    const next = await t.client(account.key).images.generate({ model: 'scripted-image', prompt: 'still here', size: '256x256' } as never);
    assert.equal(next.data?.length, 1);
  });
});
