import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_TOKEN, rawRequest, startTestServer, type TestServer } from '../helpers/test-server.ts';

/** The operator API: accounts, credits, ledger, keys — only with the admin token. */
describe('/admin/v1', () => {
  let t: TestServer;

  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  it('creates accounts and adds credits as exact decimal USD (strings or numbers)', async () => {
    const account = await t.admin('POST', '/admin/v1/accounts', { name: 'acme', credits: '12.5' });
    assert.equal(account.balance, '12.5');
    assert.equal(account.name, 'acme');
    const topped = await t.admin('POST', `/admin/v1/accounts/${account.id}/credits`, { amount: 0.1, note: 'promo' });
    assert.equal(topped.balance, '12.6');
    const again = await t.admin('POST', `/admin/v1/accounts/${account.id}/credits`, { amount: '0.000000001' });
    assert.equal(again.balance, '12.600000001');
    const ledger = await t.admin('GET', `/admin/v1/accounts/${account.id}/ledger`);
    assert.deepEqual(
      ledger.data.map((entry: any) => [entry.kind, entry.available_delta, entry.note]),
      [
        ['credit', '0.000000001', null],
        ['credit', '0.1', 'promo'],
        ['credit', '12.5', 'initial credit'],
      ],
    );
  });

  it('rejects bad amounts and unknown ids with envelopes', async () => {
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    for (const amount of ['-1', 'abc', 1e300, '0.0000000001', null, '0']) {
      const account = await t.admin('POST', '/admin/v1/accounts', { name: 'x' });
      const response = await rawRequest(t.url, {
        path: `/admin/v1/accounts/${account.id}/credits`,
        method: 'POST',
        headers,
        body: JSON.stringify({ amount }),
      });
      assert.equal(response.status, 400, `amount ${amount}`);
      assert.equal(response.body.error.param, 'amount');
    }
    const missing = await rawRequest(t.url, { path: '/admin/v1/accounts/acct_nope', method: 'GET', headers });
    assert.equal(missing.status, 404);
  });

  it('takes an empty body sent as application/json as {} where the body is optional (rotate, revoke)', async () => {
    const account = await t.createAccount('1');
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    // What `curl -X POST -H 'Content-Type: application/json'` and many HTTP helpers send: the header, no body.
    const rotated = await rawRequest(t.url, { path: `/admin/v1/keys/${account.keyId}/rotate`, method: 'POST', headers });
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.match(rotated.body.key, /^sk-bf-/);
    const revoked = await rawRequest(t.url, { path: `/admin/v1/keys/${account.keyId}/revoke`, method: 'POST', headers, body: '  \n' });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.equal(revoked.body.status, 'revoked');
    // Where a body is required, `{}` names what is missing instead of calling valid-but-empty input malformed JSON.
    const created = await rawRequest(t.url, { path: '/admin/v1/accounts', method: 'POST', headers: { ...headers, 'content-length': '0' } });
    assert.equal(created.status, 400);
    assert.notEqual(created.body.error.code, 'invalid_json');
    const generation = await rawRequest(t.url, {
      path: '/v1/images/generations',
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${rotated.body.key}` },
    });
    assert.notEqual(generation.body.error.code, 'invalid_json');
    // A body that is there but is not JSON is still invalid_json.
    const broken = await rawRequest(t.url, { path: `/admin/v1/keys/${account.keyId}/revoke`, method: 'POST', headers, body: '{' });
    assert.equal(broken.body.error.code, 'invalid_json');
  });

  it('refuses customer keys and missing tokens', async () => {
    const account = await t.createAccount('1');
    const withCustomerKey = await rawRequest(t.url, {
      path: '/admin/v1/accounts',
      method: 'POST',
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
      body: '{"name":"x"}',
    });
    assert.equal(withCustomerKey.status, 401);
    const none = await rawRequest(t.url, { path: `/admin/v1/accounts/${account.accountId}`, method: 'GET' });
    assert.equal(none.status, 401);
  });

  it('is not mounted at all without DEEPSHI_ADMIN_TOKEN', async () => {
    const bare = await startTestServer({ env: { DEEPSHI_ADMIN_TOKEN: '' } });
    try {
      const response = await rawRequest(bare.url, {
        path: '/admin/v1/accounts',
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      assert.equal(response.status, 404);
    } finally {
      await bare.close();
    }
  });
});
