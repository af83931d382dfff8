/**
 * The limits backends, each against the same scenarios: memory always, Redis at DEEPSHI_TEST_REDIS_URL (skipped
 * locally without it, a failure under CI), each run under its own key prefix. Then the limiter on top: defaults,
 * headers, and failing open — loudly — when Redis is unreachable.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, describe, it, test } from 'node:test';
import { Redis } from 'ioredis';
import pino from 'pino';
import { GatewayError } from '../../src/domain/errors.ts';
import { DEGRADED_HEADER, RequestLimiter, formatDuration } from '../../src/limits/limiter.ts';
import { MemoryLimitBackend } from '../../src/limits/memory-backend.ts';
import { RedisLimitBackend } from '../../src/limits/redis-backend.ts';
import type { AdmitInput, KeyLimits, LimitBackend } from '../../src/limits/types.ts';
import { deadPort } from '../helpers/ports.ts';

const redisUrl = process.env.DEEPSHI_TEST_REDIS_URL;
const HOW_TO = 'start Redis and export the variable with: eval "$(bash .ci/services.sh)"';
const prefix = `deepshi-test:${process.pid}-${randomUUID().slice(0, 8)}:`;
const UNLIMITED: KeyLimits = { requestsPerMinute: 0, imagesPerMinute: 0, maxInFlight: 0, tokensPerMinute: 0 };

function input(extra: Omit<Partial<AdmitInput>, 'limits'> & { limits?: Partial<KeyLimits> } = {}): AdmitInput {
  const { limits, ...rest } = extra;
  return {
    keyId: `key_${randomUUID()}`,
    images: 1,
    tokens: 0,
    model: `model-${randomUUID()}`,
    modelSlots: 1,
    modelCap: 0,
    leaseId: `req_${randomUUID()}`,
    leaseMs: 60_000,
    ...rest,
    limits: { ...UNLIMITED, ...limits },
  };
}

function backendScenarios(name: string, open: () => Promise<LimitBackend>): void {
  describe(`limits backend: ${name}`, () => {
    let backend: LimitBackend;
    const ready = (async () => {
      backend = await open();
    })();
    after(async () => {
      await ready;
      await backend.close();
    });

    it('requests per minute: a burst of exactly R, then refused with the wait until the next one', async () => {
      await ready;
      const base = input({ limits: { requestsPerMinute: 5 } });
      const results = [];
      for (let i = 0; i < 7; i++) results.push(await backend.admit({ ...base, leaseId: `r${i}` }));
      assert.deepEqual(
        results.map((r) => r.admitted),
        [true, true, true, true, true, false, false],
      );
      assert.deepEqual(
        results.slice(0, 5).map((r) => r.requests?.remaining),
        [4, 3, 2, 1, 0],
      );
      assert.equal(results[0].requests?.limit, 5);
      const refused = results[5];
      assert.ok(!refused.admitted);
      assert.deepEqual(refused.reasons, ['requests']);
      // One request every 12 s: the next is allowed about 12 s after the first.
      assert.ok(refused.retryAfterMs > 10_000 && refused.retryAfterMs <= 12_000, `retry after ${refused.retryAfterMs}`);
      assert.ok(refused.requests!.resetMs > 58_000 && refused.requests!.resetMs <= 60_000);
      assert.equal(refused.requests!.remaining, 0);
    });

    it('images per minute count n; a request larger than the whole allowance is refused as such', async () => {
      await ready;
      const base = input({ limits: { imagesPerMinute: 6 } });
      const four = await backend.admit({ ...base, images: 4, leaseId: 'a' });
      assert.equal(four.admitted, true);
      assert.equal(four.images?.remaining, 2);
      const three = await backend.admit({ ...base, images: 3, leaseId: 'b' });
      assert.ok(!three.admitted);
      assert.deepEqual(three.reasons, ['images']);
      const two = await backend.admit({ ...base, images: 2, leaseId: 'c' });
      assert.equal(two.admitted, true, 'a refused request consumed nothing');
      assert.equal(two.images?.remaining, 0);
      const huge = await backend.admit({ ...input({ limits: { imagesPerMinute: 3 } }), images: 4 });
      assert.ok(!huge.admitted);
      assert.ok(huge.reasons.includes('images_over_limit'));
      assert.equal(huge.retryAfterMs, 60_000);
    });

    it('in flight: at most C leases; a release frees one; releasing twice or an unknown lease changes nothing', async () => {
      await ready;
      const base = input({ limits: { maxInFlight: 2 } });
      assert.equal((await backend.admit({ ...base, leaseId: 'one' })).admitted, true);
      assert.equal((await backend.admit({ ...base, leaseId: 'two' })).admitted, true);
      const third = await backend.admit({ ...base, leaseId: 'three' });
      assert.ok(!third.admitted);
      assert.deepEqual(third.reasons, ['in_flight']);
      assert.equal(third.retryAfterMs, 1_000);
      const release = { keyId: base.keyId, model: base.model, modelSlots: 1 };
      await backend.release({ ...release, leaseId: 'one' });
      await backend.release({ ...release, leaseId: 'one' });
      await backend.release({ ...release, leaseId: 'never-taken' });
      assert.equal((await backend.admit({ ...base, leaseId: 'four' })).admitted, true);
      assert.equal((await backend.admit({ ...base, leaseId: 'five' })).admitted, false);
    });

    it('in-flight leases of a crashed holder free themselves when their lease expires', async () => {
      await ready;
      const base = input({ limits: { maxInFlight: 1 }, leaseMs: 150 });
      assert.equal((await backend.admit({ ...base, leaseId: 'crashed' })).admitted, true);
      assert.equal((await backend.admit({ ...base, leaseId: 'next' })).admitted, false);
      await sleep(250);
      assert.equal((await backend.admit({ ...base, leaseId: 'after' })).admitted, true);
    });

    it('model cap counts upstream calls (slots) across keys', async () => {
      await ready;
      const model = `model-${randomUUID()}`;
      const a = await backend.admit(input({ model, modelCap: 3, modelSlots: 2 }));
      assert.equal(a.admitted, true);
      const b = await backend.admit(input({ model, modelCap: 3, modelSlots: 2 }));
      assert.ok(!b.admitted);
      assert.deepEqual(b.reasons, ['model_concurrency']);
      const c = input({ model, modelCap: 3, modelSlots: 1 });
      assert.equal((await backend.admit(c)).admitted, true);
      await backend.release({ keyId: c.keyId, model, leaseId: c.leaseId, modelSlots: 1 });
      assert.equal((await backend.admit(input({ model, modelCap: 3, modelSlots: 1 }))).admitted, true);
    });

    it('all or nothing: a refusal on one dimension takes nothing on the others', async () => {
      await ready;
      const base = input({ limits: { requestsPerMinute: 10, imagesPerMinute: 10, maxInFlight: 1 } });
      assert.equal((await backend.admit({ ...base, leaseId: 'holder' })).admitted, true);
      for (let i = 0; i < 3; i++) {
        const refused = await backend.admit({ ...base, leaseId: `x${i}`, images: 2 });
        assert.ok(!refused.admitted);
        assert.deepEqual(refused.reasons, ['in_flight']);
      }
      await backend.release({ keyId: base.keyId, model: base.model, leaseId: 'holder', modelSlots: 1 });
      const next = await backend.admit({ ...base, leaseId: 'next', images: 2 });
      assert.ok(next.admitted);
      assert.equal(next.requests?.remaining, 8, 'only the two admitted requests were counted');
      assert.equal(next.images?.remaining, 7, 'only the admitted images were counted');
    });

    it('tokens per minute: admitted at the bound, refused past the window, unused tokens given back; one request over the whole window is refused as such', async () => {
      await ready;
      const base = input({ limits: { tokensPerMinute: 1200 }, images: 0 });
      const first = await backend.admit({ ...base, tokens: 500, leaseId: 't1' });
      assert.ok(first.admitted);
      assert.deepEqual(first.tokens, { limit: 1200, remaining: 700, resetMs: 25_000 });
      assert.ok((await backend.admit({ ...base, tokens: 500, leaseId: 't2' })).admitted);
      const refused = await backend.admit({ ...base, tokens: 500, leaseId: 't3' });
      assert.ok(!refused.admitted);
      assert.deepEqual(refused.reasons, ['tokens']);
      // 300 more tokens are needed; at 20 per second they take about 15 s.
      assert.ok(refused.retryAfterMs > 14_000 && refused.retryAfterMs <= 15_000, `retry after ${refused.retryAfterMs}`);
      await backend.refundTokens({ keyId: base.keyId, tokensPerMinute: 1200, tokens: 400 });
      const after = await backend.admit({ ...base, tokens: 500, leaseId: 't4' });
      assert.ok(after.admitted, 'the refund made room');
      assert.ok(after.tokens!.remaining <= 100 && after.tokens!.remaining >= 99);
      // Refunds never go below an empty window.
      const fresh = input({ limits: { tokensPerMinute: 1200 }, images: 0 });
      assert.ok((await backend.admit({ ...fresh, tokens: 100 })).admitted);
      await backend.refundTokens({ keyId: fresh.keyId, tokensPerMinute: 1200, tokens: 5000 });
      assert.equal((await backend.admit({ ...fresh, tokens: 1200 })).admitted, true);
      const huge = await backend.admit({ ...input({ limits: { tokensPerMinute: 100 } }), tokens: 101 });
      assert.ok(!huge.admitted);
      assert.ok(huge.reasons.includes('tokens_over_limit'));
      // Image requests (0 tokens) are not counted against tokens.
      const image = await backend.admit({ ...input({ limits: { tokensPerMinute: 100 } }), tokens: 0 });
      assert.ok(image.admitted);
      assert.equal(image.tokens, undefined);
    });

    it('200 concurrent admissions with a limit of 37 per minute: exactly 37 pass', async () => {
      await ready;
      const base = input({ limits: { requestsPerMinute: 37 } });
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => backend.admit({ ...base, leaseId: `c${i}` })));
      assert.equal(results.filter((r) => r.admitted).length, 37);
    });

    it('200 concurrent admissions with an in-flight cap of 7: exactly 7 hold a slot', async () => {
      await ready;
      const base = input({ limits: { maxInFlight: 7 } });
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => backend.admit({ ...base, leaseId: `f${i}` })));
      assert.equal(results.filter((r) => r.admitted).length, 7);
    });
  });
}

backendScenarios('memory', async () => new MemoryLimitBackend());

if (!redisUrl) {
  if (process.env.CI) {
    test('limits backend: redis', () =>
      assert.fail(`DEEPSHI_TEST_REDIS_URL is not set, but CI must run the Redis limit tests (${HOW_TO})`));
  } else {
    test('limits backend: redis', { skip: `DEEPSHI_TEST_REDIS_URL is not set; ${HOW_TO}` }, () => {});
  }
} else {
  const opened: RedisLimitBackend[] = [];
  backendScenarios('redis', async () => {
    const backend = new RedisLimitBackend(redisUrl, { prefix });
    assert.equal(await backend.connect(), true, `redis reachable at ${redisUrl}`);
    opened.push(backend);
    return backend;
  });

  describe('limits backend: redis across connections', () => {
    after(async () => {
      const redis = new Redis(redisUrl);
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    });

    it('two connections (two instances) share one window and one in-flight cap', async () => {
      const one = new RedisLimitBackend(redisUrl, { prefix });
      const two = new RedisLimitBackend(redisUrl, { prefix });
      await Promise.all([one.connect(), two.connect()]);
      try {
        const base = input({ limits: { requestsPerMinute: 25, maxInFlight: 10 } });
        const results = await Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? one : two).admit({ ...base, leaseId: `s${i}` })));
        assert.equal(results.filter((r) => r.admitted).length, 10, 'the in-flight cap binds first');
        const inspect = new Redis(redisUrl);
        const keys = await inspect.keys(`${prefix}rl:*:${base.keyId}`);
        inspect.disconnect();
        assert.ok(keys.length >= 2, 'keys carry the configured prefix');
      } finally {
        await one.close();
        await two.close();
      }
    });
  });
}

describe('RequestLimiter', () => {
  const silent = pino({ level: 'silent' });

  it('key limits override the server defaults field by field; null takes the default, 0 is unlimited', () => {
    const limiter = new RequestLimiter({
      backend: new MemoryLimitBackend(),
      defaults: { requestsPerMinute: 60, imagesPerMinute: 100, maxInFlight: 4, tokensPerMinute: 9000 },
      leaseMs: 1000,
      logger: silent,
    });
    assert.deepEqual(limiter.effectiveLimits(undefined), {
      requestsPerMinute: 60,
      imagesPerMinute: 100,
      maxInFlight: 4,
      tokensPerMinute: 9000,
    });
    assert.deepEqual(limiter.effectiveLimits({ requestsPerMinute: 0, imagesPerMinute: null, maxInFlight: 1, tokensPerMinute: 500 }), {
      requestsPerMinute: 0,
      imagesPerMinute: 100,
      maxInFlight: 1,
      tokensPerMinute: 500,
    });
  });

  it('admits with x-ratelimit-* headers, refuses with 429 rate_limit_exceeded, Retry-After 1–60 and the same headers', async () => {
    const limiter = new RequestLimiter({ backend: new MemoryLimitBackend(), defaults: UNLIMITED, leaseMs: 1000, logger: silent });
    const request = {
      keyId: 'k1',
      keyLimits: { requestsPerMinute: 2, imagesPerMinute: 10, maxInFlight: null },
      images: 3,
      model: 'm',
      modelCap: 0,
      modelSlots: 1,
    };
    const first = await limiter.admit({ ...request, requestId: 'a' });
    assert.deepEqual(first.headers, {
      'x-ratelimit-limit-requests': '2',
      'x-ratelimit-remaining-requests': '1',
      'x-ratelimit-reset-requests': '30s',
      'x-ratelimit-limit-images': '10',
      'x-ratelimit-remaining-images': '7',
      'x-ratelimit-reset-images': '18s',
    });
    await limiter.admit({ ...request, requestId: 'b' });
    const refused = await limiter.admit({ ...request, requestId: 'c' }).then(
      () => undefined,
      (error: unknown) => error,
    );
    assert.ok(refused instanceof GatewayError);
    assert.equal(refused.status, 429);
    assert.equal(refused.type, 'rate_limit_error');
    assert.equal(refused.code, 'rate_limit_exceeded');
    assert.match(refused.message, /requests per minute/);
    assert.equal(refused.headers['retry-after'], '30');
    assert.equal(refused.headers['x-ratelimit-remaining-requests'], '0');
    assert.equal(refused.headers['x-ratelimit-limit-requests'], '2');
    assert.equal(limiter.stats.refused, 1);
  });

  it('tokens per minute: x-ratelimit-*-tokens headers, the upper bound admitted, the unused part given back on release, 429 with Retry-After', async () => {
    const limiter = new RequestLimiter({ backend: new MemoryLimitBackend(), defaults: UNLIMITED, leaseMs: 1000, logger: silent });
    const request = {
      keyId: 'kt',
      keyLimits: { requestsPerMinute: null, imagesPerMinute: null, maxInFlight: null, tokensPerMinute: 1000 },
      images: 0,
      model: 'm',
      modelCap: 0,
      modelSlots: 1,
    };
    const first = await limiter.admit({ ...request, tokens: 600, requestId: 'a' });
    assert.deepEqual(first.headers, {
      'x-ratelimit-limit-tokens': '1000',
      'x-ratelimit-remaining-tokens': '400',
      'x-ratelimit-reset-tokens': '36s',
    });
    const refused = await limiter.admit({ ...request, tokens: 600, requestId: 'b' }).catch((e) => e);
    assert.equal(refused.status, 429);
    assert.match(refused.message, /tokens per minute/);
    assert.equal(refused.headers['retry-after'], '12');
    assert.equal(refused.headers['x-ratelimit-remaining-tokens'], '400');
    // The first request used 100 of its 600: 500 come back, so 600 more fit.
    await first.release(100);
    const second = await limiter.admit({ ...request, tokens: 600, requestId: 'c' });
    assert.equal(second.headers['x-ratelimit-remaining-tokens'], '300');
    // A failed request (0 used) gives everything back; releasing twice gives nothing more.
    await second.release(0);
    await second.release(0);
    const third = await limiter.admit({ ...request, tokens: 900, requestId: 'd' });
    assert.equal(third.headers['x-ratelimit-remaining-tokens'], '0');
    // Images never count against tokens; a request over the whole allowance is refused as such.
    const image = await limiter.admit({ ...request, images: 1, requestId: 'e' });
    assert.deepEqual(image.headers, {});
    const huge = await limiter.admit({ ...request, tokens: 1001, requestId: 'f' }).catch((e) => e);
    assert.equal(huge.headers['x-should-retry'], 'false');
    assert.match(huge.message, /Lower 'max_tokens'/);
  });

  it('a request over the whole per-minute image allowance says so and is marked not worth retrying', async () => {
    const limiter = new RequestLimiter({
      backend: new MemoryLimitBackend(),
      defaults: { ...UNLIMITED, imagesPerMinute: 3 },
      leaseMs: 1000,
      logger: silent,
    });
    const error = await limiter
      .admit({ keyId: 'k', keyLimits: undefined, images: 4, model: 'm', modelCap: 0, modelSlots: 1, requestId: 'r' })
      .catch((e) => e);
    assert.equal(error.status, 429);
    assert.equal(error.headers['retry-after'], '60');
    assert.equal(error.headers['x-should-retry'], 'false');
    assert.match(error.message, /Lower 'n'/);
  });

  it('with no limit at all it never touches the backend and sends no headers', async () => {
    const backend: LimitBackend = {
      kind: 'redis',
      admit: async () => assert.fail('backend called'),
      release: async () => assert.fail('backend called'),
      refundTokens: async () => assert.fail('backend called'),
      close: async () => {},
    };
    const limiter = new RequestLimiter({ backend, defaults: UNLIMITED, leaseMs: 1000, logger: silent });
    const admission = await limiter.admit({
      keyId: 'k',
      keyLimits: undefined,
      images: 1,
      model: 'm',
      modelCap: 0,
      modelSlots: 1,
      requestId: 'r',
    });
    assert.deepEqual(admission.headers, {});
    await admission.release();
  });

  it('Redis unreachable: fails open to per-instance limits, marks responses, counts, and logs an error (once per 10 s)', async () => {
    const port = await deadPort();
    const lines: Array<{ level: number; msg: string; degradedAdmissions?: number }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const backend = new RedisLimitBackend(`redis://127.0.0.1:${port}`, { prefix });
    assert.equal(await backend.connect(300), false);
    const limiter = new RequestLimiter({ backend, defaults: UNLIMITED, leaseMs: 60_000, logger });
    try {
      const request = {
        keyId: 'k',
        keyLimits: { requestsPerMinute: 2, imagesPerMinute: null, maxInFlight: 1 },
        images: 1,
        model: 'm',
        modelCap: 0,
        modelSlots: 1,
      };
      const started = Date.now();
      const first = await limiter.admit({ ...request, requestId: 'a' });
      assert.ok(Date.now() - started < 1_000, 'a dead Redis is not waited for');
      assert.equal(first.headers[DEGRADED_HEADER], 'redis-unavailable');
      assert.equal(first.headers['x-ratelimit-remaining-requests'], '1');
      const busy = await limiter.admit({ ...request, requestId: 'b' }).catch((e) => e);
      assert.equal(busy.status, 429, 'the in-flight cap still holds on this instance');
      assert.equal(busy.headers[DEGRADED_HEADER], 'redis-unavailable');
      await first.release();
      await limiter.admit({ ...request, requestId: 'c' });
      assert.equal(limiter.stats.degraded, 3);
      const errors = lines.filter((line) => line.level === 50);
      assert.equal(errors.length, 1, 'one error line for the burst');
      assert.match(errors[0].msg, /failing open/);
    } finally {
      await limiter.close();
    }
  });
});

describe('RequestLimiter: Redis coming back', () => {
  const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0;
  it('degraded decisions stop and the shared backend decides again once Redis answers', {
    skip: !hasRedisServer && 'redis-server is not installed',
  }, async () => {
    const port = await deadPort();
    const backend = new RedisLimitBackend(`redis://127.0.0.1:${port}`, { prefix });
    assert.equal(await backend.connect(300), false);
    const limiter = new RequestLimiter({ backend, defaults: UNLIMITED, leaseMs: 60_000, logger: pino({ level: 'silent' }) });
    const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
    try {
      const request = {
        keyId: `k_${randomUUID()}`,
        keyLimits: { requestsPerMinute: 100, imagesPerMinute: null, maxInFlight: null },
        images: 1,
        model: 'm',
        modelCap: 0,
        modelSlots: 1,
      };
      assert.equal((await limiter.admit({ ...request, requestId: 'down' })).headers[DEGRADED_HEADER], 'redis-unavailable');
      let shared = false;
      for (let i = 0; i < 100 && !shared; i++) {
        await sleep(100);
        shared = (await limiter.admit({ ...request, requestId: `up${i}` })).headers[DEGRADED_HEADER] === undefined;
      }
      assert.ok(shared, 'the limiter uses Redis again within 10 s of it coming back');
    } finally {
      await limiter.close();
      server.kill('SIGKILL');
    }
  });
});

describe('formatDuration (x-ratelimit-reset-* values, OpenAI style)', () => {
  it('formats ms, seconds and minutes', () => {
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(12), '12ms');
    assert.equal(formatDuration(999.2), '1s');
    assert.equal(formatDuration(1000), '1s');
    assert.equal(formatDuration(1500), '1.5s');
    assert.equal(formatDuration(59_999), '59.999s');
    assert.equal(formatDuration(60_000), '1m0s');
    assert.equal(formatDuration(360_000), '6m0s');
    assert.equal(formatDuration(90_250), '1m30.25s');
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
