import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { rawRequest, startTestServer, type TestServer } from '../helpers/test-server.ts';

/** Bad input never causes a 500, a crash or a lost cent: it is a 4xx envelope and the balance is unchanged. */
describe('hostile input', () => {
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    t = await startTestServer();
    account = await t.createAccount('1');
  });
  after(() => t.close());

  const bodies: Array<[string, string]> = [
    ['prototype pollution', '{"model":"deepshi-sketch","prompt":"x","__proto__":{"n":4},"constructor":{"prototype":{"admin":true}}}'],
    ['deep nesting', `{"model":"deepshi-sketch","prompt":${'['.repeat(5000)}${']'.repeat(5000)}}`],
    ['model as array', '{"model":["deepshi-sketch"],"prompt":"x"}'],
    ['model as object', '{"model":{"id":"deepshi-sketch"},"prompt":"x"}'],
    ['null everything', '{"model":null,"prompt":null,"n":null}'],
    ['huge n', '{"model":"deepshi-sketch","prompt":"x","n":1e308}'],
    ['negative width', '{"model":"deepshi-sketch","prompt":"x","width":-1024,"height":1024}'],
    ['float seed', '{"model":"deepshi-sketch","prompt":"x","seed":1.5}'],
    ['string n', '{"model":"deepshi-sketch","prompt":"x","n":"4"}'],
    ['boolean stream as string', '{"model":"deepshi-sketch","prompt":"x","stream":"yes"}'],
    ['lone surrogates and NULs', '{"model":"deepshi-sketch\\u0000","prompt":"\\ud800\\u0000"}'],
    ['empty object', '{}'],
    ['a string', '"hello"'],
    ['a number', '42'],
    ['null', 'null'],
    ['unknown model with path tricks', '{"model":"../../etc/passwd","prompt":"x"}'],
    ['size with CRLF', '{"model":"deepshi-sketch","prompt":"x","size":"1024x1024\\r\\nx-injected: 1"}'],
    ['response_format with CRLF', '{"model":"deepshi-sketch","prompt":"x","output_format":"png\\r\\nset-cookie: a"}'],
  ];

  for (const [name, body] of bodies) {
    it(`${name} → a 4xx envelope, never a 500`, async () => {
      const response = await rawRequest(t.url, {
        path: '/v1/images/generations',
        method: 'POST',
        headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
        body,
      });
      assert.ok(response.status >= 400 && response.status < 500, `${name}: got ${response.status} ${JSON.stringify(response.body).slice(0, 200)}`);
      assert.equal(response.headers.get('x-injected'), null);
      assert.equal(response.headers.get('set-cookie'), null);
    });
  }

  it('odd headers: a non-Bearer scheme, an over-long key, unicode in the key', async () => {
    for (const authorization of ['Basic abc', `Bearer ${'a'.repeat(10_000)}`, 'Bearer sk-bf-ü', 'Bearer']) {
      const response = await rawRequest(t.url, { path: '/v1/models', method: 'GET', headers: { authorization } });
      assert.equal(response.status, 401, authorization.slice(0, 20));
    }
  });

  it('leaves the balance untouched and the server healthy', async () => {
    assert.equal(await t.balance(account.accountId), '1');
    assert.equal((await fetch(`${t.url}/healthz`)).status, 200);
  });
});
