import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/** Liveness and readiness for load balancers: no key needed, no money touched. */
describe('health', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  it('GET /healthz is 200 while the process runs', async () => {
    const response = await fetch(`${t.url}/healthz`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'ok' });
    assert.match(response.headers.get('x-request-id')!, /^req_/);
  });

  it('GET /readyz is 200 while the store answers; once shutdown has begun it stops admitting traffic (503 or closed)', async () => {
    assert.equal((await fetch(`${t.url}/readyz`)).status, 200);
    const other = await startTestServer();
    const url = other.url;
    const closing = other.server.close();
    // Between close() and the listener going away, readiness already reports the shutdown (or the socket is gone).
    const status = await fetch(`${url}/readyz`).then(
      (response) => response.status,
      () => 503,
    );
    assert.equal(status, 503);
    await closing;
    await other.close();
  });
});
