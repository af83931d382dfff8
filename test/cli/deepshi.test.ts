import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hashApiKey } from '../../src/auth/api-keys.ts';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts';

/** `npx deepshi …`: the operator CLI, run as a process against the configured database. */
describe('deepshi CLI', () => {
  const bin = path.resolve(import.meta.dirname, '../../bin/deepshi.mjs');
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const run = (...args: string[]) => JSON.parse(execFileSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' }));

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-cli-'));
    env = { ...process.env, BFL_API_KEY: '', DATABASE_URL: `sqlite:${path.join(dir, 'cli.db')}`, LOG_LEVEL: 'silent' };
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('creates an account, adds credits, issues, rotates, restricts, revokes and deletes keys', async () => {
    const account = run('accounts', 'create', '--name', 'acme', '--credits', '3.5');
    assert.equal(account.balance, '3.5');
    assert.equal(run('credits', 'add', account.id, '1.25', '--note', 'promo').balance, '4.75');
    const ledger = run('ledger', account.id);
    assert.deepEqual(
      ledger.map((entry: any) => entry.available_delta),
      ['1.25', '3.5'],
    );

    const key = run('keys', 'create', account.id, '--name', 'ci', '--models', 'deepshi-sketch');
    assert.match(key.key, /^sk-bf-/);
    assert.deepEqual(key.models, ['deepshi-sketch']);
    const rotated = run('keys', 'rotate', key.id);
    assert.notEqual(rotated.key, key.key);
    assert.deepEqual(run('keys', 'models', key.id, 'all').models, null);
    const limited = run('keys', 'limits', key.id, '--rpm', '60', '--in-flight', '2', '--tpm', '20000', '--max-queued-jobs', '5');
    assert.deepEqual(limited.limits, {
      requests_per_minute: 60,
      images_per_minute: null,
      max_in_flight: 2,
      tokens_per_minute: 20000,
      max_queued_jobs: 5,
    });
    assert.deepEqual(run('keys', 'limits', key.id, '--rpm', 'default', '--max-queued-jobs', 'default').limits, {
      requests_per_minute: null,
      images_per_minute: null,
      max_in_flight: 2,
      tokens_per_minute: 20000,
      max_queued_jobs: null,
    });
    const refused = spawnSync(process.execPath, [bin, 'keys', 'limits', key.id, '--max-queued-jobs', 'lots'], { env, encoding: 'utf8' });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /--max-queued-jobs takes a whole number or "default"; got "lots"/, 'the message names the flag typed');
    assert.equal(run('keys', 'revoke', key.id).status, 'revoked');

    const store = new SqliteStore(path.join(dir, 'cli.db'));
    try {
      assert.equal(await store.findApiKeyByHash(hashApiKey(key.key, '')), undefined, 'the old secret no longer matches');
      assert.equal((await store.findApiKeyByHash(hashApiKey(rotated.key, '')))?.status, 'revoked');
    } finally {
      await store.close();
    }
    assert.deepEqual(run('keys', 'delete', key.id), { id: key.id, deleted: true });
    assert.deepEqual(run('keys', 'list', account.id), []);
  });

  it('creates dashboard users (password from stdin or the flag), stored only as a scrypt hash', async () => {
    const account = run('accounts', 'create', '--name', 'people');
    const fromStdin = JSON.parse(
      execFileSync(process.execPath, [bin, 'users', 'create', '--email', 'Ops@Example.com', '--account', account.id], {
        env,
        encoding: 'utf8',
        input: 'a password from stdin\n',
      }),
    );
    assert.deepEqual([fromStdin.email, fromStdin.role, fromStdin.account_id], ['ops@example.com', 'member', account.id]);
    const operator = run('users', 'create', '--email', 'root@example.com', '--role', 'operator', '--password', 'operator password');
    assert.deepEqual([operator.role, operator.account_id], ['operator', null]);
    assert.deepEqual(
      run('users', 'list', '--account', account.id).map((user: any) => user.email),
      ['ops@example.com'],
    );
    const weak = spawnSync(
      process.execPath,
      [bin, 'users', 'create', '--email', 'x@example.com', '--account', account.id, '--password', 'short'],
      { env, encoding: 'utf8' },
    );
    assert.equal(weak.status, 1);
    assert.match(weak.stderr, /10 to 1024 characters/);

    const store = new SqliteStore(path.join(dir, 'cli.db'));
    try {
      const user = await store.dashboard.findUserByEmail('ops@example.com');
      assert.match(user!.passwordHash, /^scrypt\$32768\$8\$1\$/);
      assert.equal(user!.passwordHash.includes('a password from stdin'), false);
      const { verifyPassword } = await import('../../src/auth/passwords.ts');
      assert.equal(await verifyPassword('a password from stdin', user!.passwordHash), true);
    } finally {
      await store.close();
    }
  });

  it('lists the catalog with availability and reasons', () => {
    const models = run('models');
    const sketch = models.find((model: any) => model.id === 'deepshi-sketch');
    assert.deepEqual(sketch, { id: 'deepshi-sketch', available: true, reason: null });
    const flux = models.find((model: any) => model.id === 'flux-2-pro');
    assert.equal(flux.available, false);
    assert.match(flux.reason, /BFL_API_KEY is not set|no "bfl" adapter/);
  });

  it('fails with a clear message and a non-zero exit on bad input', () => {
    const unknown = spawnSync(process.execPath, [bin, 'bogus'], { env, encoding: 'utf8' });
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown command "bogus"/);
    const missing = spawnSync(process.execPath, [bin, 'credits', 'add', 'acct_nope', '5'], { env, encoding: 'utf8' });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /No account with id "acct_nope"/);
  });
});
