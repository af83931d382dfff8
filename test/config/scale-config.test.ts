import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/config.ts';

/** The scale-out settings (docs/scale-out.md). */
describe('loadConfig: limits, sweeper, Redis', () => {
  it('defaults: unlimited keys, a 30 s sweep, a 60 s grace, the deepshi: prefix, no Redis', () => {
    const config = loadConfig({});
    assert.deepEqual(config.defaultLimits, { requestsPerMinute: 0, imagesPerMinute: 0, maxInFlight: 0, tokensPerMinute: 0 });
    assert.equal(config.sweepIntervalMs, 30_000);
    assert.equal(config.holdGraceMs, 60_000);
    assert.equal(config.redisPrefix, 'deepshi:');
    assert.equal(config.redisUrl, undefined);
  });

  it('reads every variable', () => {
    const config = loadConfig({
      DEEPSHI_DEFAULT_RPM: '600',
      DEEPSHI_DEFAULT_IPM: '1200',
      DEEPSHI_DEFAULT_MAX_IN_FLIGHT: '20',
      DEEPSHI_DEFAULT_TPM: '90000',
      DEEPSHI_SWEEP_INTERVAL_MS: '200',
      DEEPSHI_HOLD_GRACE_MS: '500',
      DEEPSHI_REDIS_PREFIX: 'prod-eu:',
      REDIS_URL: 'redis://r:6379',
    });
    assert.deepEqual(config.defaultLimits, { requestsPerMinute: 600, imagesPerMinute: 1200, maxInFlight: 20, tokensPerMinute: 90_000 });
    assert.equal(config.sweepIntervalMs, 200);
    assert.equal(config.holdGraceMs, 500);
    assert.equal(config.redisPrefix, 'prod-eu:');
    assert.equal(config.redisUrl, 'redis://r:6379');
  });

  for (const [env, message] of [
    [{ DEEPSHI_DEFAULT_RPM: '-1' }, /DEEPSHI_DEFAULT_RPM must be a whole number/],
    [{ DEEPSHI_DEFAULT_IPM: 'lots' }, /DEEPSHI_DEFAULT_IPM must be a whole number/],
    [{ DEEPSHI_DEFAULT_MAX_IN_FLIGHT: '1.5' }, /DEEPSHI_DEFAULT_MAX_IN_FLIGHT must be a whole number/],
    [{ DEEPSHI_DEFAULT_TPM: '-5' }, /DEEPSHI_DEFAULT_TPM must be a whole number/],
    [{ DEEPSHI_SWEEP_INTERVAL_MS: '10' }, /DEEPSHI_SWEEP_INTERVAL_MS must be between 100/],
  ] as const) {
    it(`refuses ${JSON.stringify(env)}`, () => {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    });
  }
});
