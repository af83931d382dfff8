import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/config.ts';

describe('loadConfig', () => {
  it('has working defaults for the embedded setup', () => {
    const config = loadConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.databaseUrl, 'sqlite:./data/deepshi.db');
    assert.equal(config.keepaliveIntervalMs, 15_000);
    assert.equal(config.requestTimeoutMs, 60_000);
    assert.equal(config.adminToken, undefined);
    assert.equal(config.bootstrapDevAccount, true);
    assert.match(config.catalogPath, /catalog\/models\.yaml$/);
  });

  it('treats empty strings as unset', () => {
    assert.equal(loadConfig({ PORT: '', DEEPSHI_ADMIN_TOKEN: '  ' }).port, 8080);
    assert.equal(loadConfig({ DEEPSHI_ADMIN_TOKEN: '' }).adminToken, undefined);
  });

  for (const [env, message] of [
    [{ PORT: '99999' }, /PORT must be between 0 and 65535; got 99999/],
    [{ PORT: '80a' }, /PORT must be a whole number/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL must be sqlite:<file>/],
    [{ DEEPSHI_ADMIN_TOKEN: 'short' }, /at least 16 characters/],
    [{ DEEPSHI_DEV_ACCOUNT: 'maybe' }, /DEEPSHI_DEV_ACCOUNT must be true or false/],
    [{ DEEPSHI_DEV_CREDITS: 'lots' }, /DEEPSHI_DEV_CREDITS must be a USD amount/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of/],
    [{ DEEPSHI_KEEPALIVE_MS: '1' }, /DEEPSHI_KEEPALIVE_MS must be between/],
    [{ DEEPSHI_REQUEST_TIMEOUT_MS: '30s' }, /DEEPSHI_REQUEST_TIMEOUT_MS must be a whole number between 0 and 3600000/],
    [{ DEEPSHI_REQUEST_TIMEOUT_MS: '-1' }, /DEEPSHI_REQUEST_TIMEOUT_MS must be a whole number/],
    [{ DEEPSHI_REQUEST_TIMEOUT_MS: '500' }, /DEEPSHI_REQUEST_TIMEOUT_MS must be 0 \(no limit\) or at least 1000.*got 500/],
    [{ DEEPSHI_REQUEST_TIMEOUT_MS: '3600001' }, /DEEPSHI_REQUEST_TIMEOUT_MS must be between 0 and 3600000; got 3600001/],
  ] as const) {
    it(`refuses ${JSON.stringify(env)} with a readable message`, () => {
      assert.throws(
        () => loadConfig({ ...env }),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }

  it('reads DEEPSHI_REQUEST_TIMEOUT_MS: milliseconds, 0 for no limit', () => {
    assert.equal(loadConfig({ DEEPSHI_REQUEST_TIMEOUT_MS: '1000' }).requestTimeoutMs, 1000);
    assert.equal(loadConfig({ DEEPSHI_REQUEST_TIMEOUT_MS: '300000' }).requestTimeoutMs, 300_000);
    assert.equal(loadConfig({ DEEPSHI_REQUEST_TIMEOUT_MS: '0' }).requestTimeoutMs, 0);
  });

  it('never echoes a database password', () => {
    assert.throws(
      () => loadConfig({ DATABASE_URL: 'mysql://user:hunter2@db/x' }),
      (error: Error) => !error.message.includes('hunter2'),
    );
  });
});
