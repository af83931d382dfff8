import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import OpenAI from 'openai';
import { testCatalogJson } from '../helpers/test-adapters.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

/** Key lifecycle as callers see it: rotate, revoke, delete, model allowlists; nothing in clear at rest. */
describe('API keys', () => {
  let t: TestServer;

  before(async () => {
    t = await startTestServer({ catalog: testCatalogJson() });
  });
  after(() => t.close());

  const statusOf = (promise: Promise<unknown>) =>
    promise.then(
      () => 200,
      (error) => (error instanceof OpenAI.APIError ? error.status : error),
    );

  it('keys look like sk-bf-… and are shown once', async () => {
    const account = await t.createAccount('1');
    assert.match(account.key, /^sk-bf-[0-9A-Za-z]{46}$/);
    const shown = await t.admin('GET', `/admin/v1/accounts/${account.accountId}`);
    assert.equal(shown.keys.length, 1);
    assert.equal(shown.keys[0].key, undefined);
    assert.match(shown.keys[0].display, /^sk-bf-.{4}….{4}$/);
  });

  it('revoked → 403 with a message saying so', async () => {
    const account = await t.createAccount('1');
    await t.admin('POST', `/admin/v1/keys/${account.keyId}/revoke`);
    const error = await t
      .client(account.key)
      .images.generate({ model: 'deepshi-sketch', prompt: 'x' })
      .catch((caught) => caught);
    assert.ok(error instanceof OpenAI.PermissionDeniedError);
    assert.match(error.message, /revoked/);
  });

  it('deleted → 401', async () => {
    const account = await t.createAccount('1');
    await t.admin('DELETE', `/admin/v1/keys/${account.keyId}`);
    assert.equal(await statusOf(t.client(account.key).models.list()), 401);
  });

  it('rotated → the old secret is refused at once and the new one works', async () => {
    const account = await t.createAccount('1');
    const rotated = await t.admin('POST', `/admin/v1/keys/${account.keyId}/rotate`);
    assert.notEqual(rotated.key, account.key);
    assert.equal(await statusOf(t.client(account.key).models.list()), 401);
    assert.equal(await statusOf(t.client(rotated.key).images.generate({ model: 'deepshi-sketch', prompt: 'x' })), 200);
  });

  it('a key restricted to some models gets 403 model_not_found for others, which are absent from its /v1/models', async () => {
    const account = await t.createAccount('1', { models: ['vendor/sketch'] });
    const client = t.client(account.key);
    const error = await client.images.generate({ model: 'deepshi-sketch', prompt: 'x' }).catch((caught) => caught);
    assert.ok(error instanceof OpenAI.PermissionDeniedError);
    assert.equal(error.code, 'model_not_found');
    assert.equal(error.message, '403 The model does not exist or you do not have access to it.');
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    assert.deepEqual(ids, ['vendor/sketch']);
    assert.equal(await statusOf(client.models.retrieve('deepshi-sketch')), 403);
    assert.equal(await statusOf(client.images.generate({ model: 'vendor/sketch', prompt: 'x' })), 200);
    // An empty allowlist allows nothing.
    await t.admin('POST', `/admin/v1/keys/${account.keyId}/models`, { models: [] });
    assert.equal(await statusOf(client.images.generate({ model: 'vendor/sketch', prompt: 'x' })), 403);
  });

  it('requests that fail with a 4xx are never billed', async () => {
    const account = await t.createAccount('1', { models: ['deepshi-sketch'] });
    const client = t.client(account.key);
    await statusOf(client.images.generate({ model: 'vendor/sketch', prompt: 'x' }));
    await statusOf(client.images.generate({ model: 'deepshi-sketch', prompt: 'x', n: 7 }));
    await statusOf(client.images.generate({ model: 'deepshi-sketch', prompt: '' }));
    assert.equal(await t.balance(account.accountId), '1');
  });

  it('the database holds no key in clear', async () => {
    const account = await t.createAccount('1');
    const rotated = await t.admin('POST', `/admin/v1/keys/${account.keyId}/rotate`);
    const file = t.server.store.kind === 'sqlite' ? (t.server.store as any).db.name : undefined;
    const db = new Database(file, { readonly: true });
    const dump =
      JSON.stringify(db.prepare('SELECT * FROM api_keys').all()) + JSON.stringify(db.prepare('SELECT * FROM ledger_entries').all());
    db.close();
    for (const secret of [account.key, rotated.key]) {
      assert.ok(!dump.includes(secret));
      assert.ok(!dump.includes(secret.slice(6, 30)), 'not even the secret part');
    }
  });
});
