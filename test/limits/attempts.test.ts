/**
 * Failed-attempt counters (src/limits/attempts.ts) behind sign-in and credit-code throttling: fixed windows from the
 * first failure, in memory or in Redis (shared by instances), failing open when Redis is unreachable.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { MemoryAttemptCounter, RedisAttemptCounter, openAttemptCounter } from '../../src/limits/attempts.ts';

describe('MemoryAttemptCounter', () => {
  it('counts failures in a window that starts at the first one and ends on its own', async () => {
    let now = 1_000_000;
    const counter = new MemoryAttemptCounter(() => now);
    assert.deepEqual(await counter.peek('a'), { count: 0, resetMs: 0 });
    assert.deepEqual(await counter.fail('a', 60_000), { count: 1, resetMs: 60_000 });
    now += 20_000;
    assert.deepEqual(await counter.fail('a', 60_000), { count: 2, resetMs: 40_000 });
    assert.deepEqual(await counter.peek('a'), { count: 2, resetMs: 40_000 });
    assert.deepEqual(await counter.peek('b'), { count: 0, resetMs: 0 }, 'names are separate');
    now += 40_000;
    assert.deepEqual(await counter.peek('a'), { count: 0, resetMs: 0 }, 'the window ended');
    assert.deepEqual(await counter.fail('a', 60_000), { count: 1, resetMs: 60_000 }, 'a new window');
    await counter.clear('a');
    assert.equal((await counter.peek('a')).count, 0);
  });
});

const redisUrl = process.env.DEEPSHI_TEST_REDIS_URL;

describe('RedisAttemptCounter', { skip: redisUrl ? false : 'DEEPSHI_TEST_REDIS_URL is not set' }, () => {
  it('counts across two connections (two instances) with the window in Redis', async () => {
    const prefix = `deepshi-test-${randomUUID().slice(0, 8)}:`;
    const one = (await openAttemptCounter({ redisUrl, prefix, onError: () => {} })) as RedisAttemptCounter;
    const two = (await openAttemptCounter({ redisUrl, prefix, onError: () => {} })) as RedisAttemptCounter;
    try {
      assert.equal(one.kind, 'redis');
      assert.equal((await one.fail('x', 60_000)).count, 1);
      const second = await two.fail('x', 60_000);
      assert.equal(second.count, 2);
      assert.ok(second.resetMs > 59_000 && second.resetMs <= 60_000);
      assert.equal((await one.peek('x')).count, 2);
      await two.clear('x');
      assert.deepEqual(await one.peek('x'), { count: 0, resetMs: 0 });
      const short = await one.fail('y', 50);
      assert.equal(short.count, 1);
      await new Promise((resolve) => setTimeout(resolve, 120));
      assert.equal((await two.peek('y')).count, 0, 'Redis expired the window');
    } finally {
      await one.close();
      await two.close();
    }
  });

  it('fails open (no failures counted, nothing thrown) when Redis is unreachable', async () => {
    const counter = new RedisAttemptCounter('redis://127.0.0.1:1', 'x:', () => {});
    assert.equal(await counter.connect(), false);
    assert.deepEqual(await counter.fail('a', 1000), { count: 0, resetMs: 0 });
    assert.deepEqual(await counter.peek('a'), { count: 0, resetMs: 0 });
    await counter.clear('a');
    await counter.close();
  });
});

describe('openAttemptCounter', () => {
  it('is in memory without a Redis URL', async () => {
    assert.equal((await openAttemptCounter({ redisUrl: undefined, prefix: 'x', onError: () => {} })).kind, 'memory');
  });
});
