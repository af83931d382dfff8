import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/config.ts';
import { ProviderError } from '../../src/providers/types.ts';
import { deadPort } from '../helpers/ports.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { rawRequest, startTestServer, type TestServer } from '../helpers/test-server.ts';

const TOKEN = 'metrics-token-0123456789abcdef';

/** The catalog of the pipeline tests plus `failover-image`: the scripted upstream first, the offline one behind it. */
function catalogWithFailover(): string {
  const catalog = JSON.parse(testCatalogJson());
  const scripted = catalog.models.find((model: { id: string }) => model.id === 'scripted-image');
  catalog.models.push({ ...structuredClone(scripted), id: 'failover-image', routes: [{ provider: 'scripted' }, { provider: 'offline' }] });
  return JSON.stringify(catalog);
}

/** GET /metrics with the token; the parsed samples and the raw text. */
async function scrape(
  t: TestServer,
  token = TOKEN,
): Promise<{
  status: number;
  contentType: string | null;
  text: string;
  value: (name: string, labels?: Record<string, string>) => number | undefined;
}> {
  const response = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  const text = await response.text();
  const samples = text.split('\n').flatMap((line) => {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) return [];
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1], pair[2]]));
    return [{ name: match[1], labels, value: Number(match[3]) }];
  });
  const value = (name: string, labels: Record<string, string> = {}) => {
    const found = samples.find(
      (sample) =>
        sample.name === name &&
        Object.keys(sample.labels).length === Object.keys(labels).length &&
        Object.entries(labels).every(([key, expected]) => sample.labels[key] === expected),
    );
    return found?.value;
  };
  return { status: response.status, contentType: response.headers.get('content-type'), text, value };
}

describe('GET /metrics (Prometheus)', () => {
  it('does not exist without DEEPSHI_METRICS_TOKEN', async () => {
    const t = await startTestServer();
    try {
      const response = await rawRequest(t.url, { path: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(response.status, 404);
      assert.equal(response.body.error.code, 'unknown_url');
    } finally {
      await t.close();
    }
  });

  it('DEEPSHI_METRICS_TOKEN must be at least 16 characters', () => {
    assert.throws(
      () => loadConfig({ DEEPSHI_METRICS_TOKEN: 'too-short' }),
      (error: unknown) => error instanceof ConfigError && /DEEPSHI_METRICS_TOKEN/.test(error.message),
    );
    assert.equal(loadConfig({ DEEPSHI_METRICS_TOKEN: TOKEN }).metricsToken, TOKEN);
    assert.equal(loadConfig({}).metricsToken, undefined);
  });

  describe('with DEEPSHI_METRICS_TOKEN', () => {
    let t: TestServer;
    let account: { accountId: string; keyId: string; key: string };
    const scripted = new ScriptedAdapter();

    before(async () => {
      t = await startTestServer({ env: { DEEPSHI_METRICS_TOKEN: TOKEN }, catalog: catalogWithFailover(), adapters: [scripted] });
      account = await t.createAccount('10');
    });
    after(() => t.close());

    it('401 without a token, with a wrong one, and with the admin token', async () => {
      for (const authorization of [
        undefined,
        'Bearer wrong-token-0123456789abcdef',
        `Bearer ${TOKEN}x`,
        'Bearer test-admin-token-0123456789abcdef',
        TOKEN,
      ]) {
        const response = await rawRequest(t.url, { path: '/metrics', headers: authorization ? { authorization } : {} });
        assert.equal(response.status, 401, String(authorization));
        assert.equal(response.body.error.code, 'invalid_metrics_token');
        assert.equal(response.headers.get('www-authenticate'), 'Bearer');
      }
      const ok = await scrape(t);
      assert.equal(ok.status, 200);
      assert.match(ok.contentType!, /^text\/plain; version=0\.0\.4/);
    });

    it('a generation through the openai SDK shows as a request, its images, the charged nanos and a duration', async () => {
      const before = await scrape(t);
      const labels = { model: 'deepshi-sketch', endpoint: 'images.generations', outcome: 'success' };
      assert.equal(before.value('deepshi_image_requests_total', labels), 0, 'catalog models start at 0');
      const http = { route: '/v1/images/generations', method: 'POST', status: '200' };

      await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'a lighthouse', n: 2 });
      const stream = await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'a comet', stream: true });
      for await (const _event of stream);

      const after = await scrape(t);
      assert.equal(after.value('deepshi_image_requests_total', labels), 2);
      assert.equal(after.value('deepshi_images_generated_total', { model: 'deepshi-sketch' }), 3);
      assert.equal(after.value('deepshi_credits_charged_nanos_total', { model: 'deepshi-sketch' }), 3_000_000);
      assert.equal(after.value('deepshi_generation_duration_seconds_count', { model: 'deepshi-sketch' }), 2);
      assert.ok(after.value('deepshi_generation_duration_seconds_sum', { model: 'deepshi-sketch' })! > 0);
      assert.equal(after.value('deepshi_generation_duration_seconds_bucket', { model: 'deepshi-sketch', le: '300' }), 2);
      // JSON and the hijacked SSE response alike, under the route pattern.
      assert.equal((after.value('deepshi_http_requests_total', http) ?? 0) - (before.value('deepshi_http_requests_total', http) ?? 0), 2);
      assert.equal(after.value('deepshi_upstream_calls_total', { provider: 'offline', result: 'ok' }), 2);
      assert.equal(after.value('deepshi_holds_in_flight'), 0);
    });

    it('holds_in_flight counts generations running now', async () => {
      scripted.behaviour = { delayMs: 300 };
      try {
        const running = t.client(account.key).images.generate({ model: 'scripted-image', prompt: 'slow' });
        await sleep(100);
        assert.equal((await scrape(t)).value('deepshi_holds_in_flight'), 1);
        await running;
        assert.equal((await scrape(t)).value('deepshi_holds_in_flight'), 0);
      } finally {
        scripted.behaviour = {};
      }
    });

    it('a 400 and a 402 are rejected outcomes; a model id that is not in the catalog is "unknown"', async () => {
      const rejected = (model: string) => ({ model, endpoint: 'images.generations', outcome: 'rejected' });
      const before = await scrape(t);
      const client = t.client(account.key);
      const invalid = await client.images.generate({ model: 'deepshi-sketch', prompt: 'x', size: '7x7' as any }).catch((error) => error);
      assert.equal(invalid.status, 400);
      const unknown = await client.images.generate({ model: 'no-such/../model', prompt: 'x' }).catch((error) => error);
      assert.equal(unknown.status, 400);
      const broke = await t.createAccount('0');
      const poor = await t
        .client(broke.key)
        .images.generate({ model: 'deepshi-sketch', prompt: 'x' })
        .catch((error) => error);
      assert.equal(poor.status, 402);
      const noKey = await t
        .client('sk-not-a-key')
        .images.generate({ model: 'deepshi-sketch', prompt: 'x' })
        .catch((error) => error);
      assert.equal(noKey.status, 401);

      const after = await scrape(t);
      const delta = (model: string) =>
        after.value('deepshi_image_requests_total', rejected(model))! - before.value('deepshi_image_requests_total', rejected(model))!;
      assert.equal(delta('deepshi-sketch'), 3, '400, 402 and 401 with a catalog model');
      assert.equal(delta('unknown'), 1);
      assert.ok(!after.text.includes('no-such'), 'what the client typed never becomes a label');
      for (const status of ['400', '402', '401']) {
        assert.ok(after.value('deepshi_http_requests_total', { route: '/v1/images/generations', method: 'POST', status })! >= 1, status);
      }
      assert.equal(
        after.value('deepshi_images_generated_total', { model: 'deepshi-sketch' }),
        before.value('deepshi_images_generated_total', { model: 'deepshi-sketch' }),
      );
    });

    it('unknown URLs are one "unmatched" series, never the raw URL; route patterns, not ids', async () => {
      for (const path of ['/v1/nope', '/wp-admin/setup.php', `/v1/${'x'.repeat(300)}`]) {
        assert.equal((await rawRequest(t.url, { path })).status, 404);
      }
      assert.equal((await rawRequest(t.url, { path: '/v1/images/generations', method: 'GET' })).status, 405);
      await t.client(account.key).models.retrieve('vendor/sketch');
      const after = await scrape(t);
      assert.ok(after.value('deepshi_http_requests_total', { route: 'unmatched', method: 'GET', status: '404' })! >= 3);
      assert.equal(after.value('deepshi_http_requests_total', { route: 'unmatched', method: 'GET', status: '405' }), 1);
      assert.equal(after.value('deepshi_http_requests_total', { route: '/v1/models/*', method: 'GET', status: '200' }), 1);
      assert.ok(
        !/wp-admin|vendor\/sketch"|xxxx/.test(
          after.text
            .split('\n')
            .filter((line) => line.startsWith('deepshi_http'))
            .join('\n'),
        ),
      );
    });

    it('rate-limit refusals are rejected outcomes, counted by the limit that refused them', async () => {
      const limited = await t.createAccount('1');
      await t.admin('POST', `/admin/v1/keys/${limited.keyId}/limits`, { requests_per_minute: 1 });
      const before = await scrape(t);
      assert.equal(before.value('deepshi_rate_limit_rejections_total', { limit: 'requests' }), 0);
      await t.client(limited.key).images.generate({ model: 'deepshi-sketch', prompt: 'x' });
      const refused = await t
        .client(limited.key)
        .images.generate({ model: 'deepshi-sketch', prompt: 'x' })
        .catch((error) => error);
      assert.equal(refused.status, 429);
      const after = await scrape(t);
      assert.equal(after.value('deepshi_rate_limit_rejections_total', { limit: 'requests' }), 1);
      const rejected = { model: 'deepshi-sketch', endpoint: 'images.generations', outcome: 'rejected' };
      assert.equal(after.value('deepshi_image_requests_total', rejected)! - before.value('deepshi_image_requests_total', rejected)!, 1);
      assert.equal(after.value('deepshi_rate_limit_degraded_total'), 0);
    });

    it('upstream calls: retried, failed over, ok; refused and partial outcomes', async () => {
      const client = t.client(account.key);
      scripted.behaviour = { error: new ProviderError('unavailable', 'down', { retryAfterSeconds: 0 }) };
      try {
        await client.images.generate({ model: 'failover-image', prompt: 'x' });
        let after = await scrape(t);
        assert.equal(after.value('deepshi_upstream_calls_total', { provider: 'scripted', result: 'retried' }), 1);
        assert.equal(after.value('deepshi_upstream_calls_total', { provider: 'scripted', result: 'failed_over' }), 1);
        assert.equal(
          after.value('deepshi_image_requests_total', { model: 'failover-image', endpoint: 'images.generations', outcome: 'success' }),
          1,
        );

        const failed = await client.images.generate({ model: 'scripted-image', prompt: 'x' }).catch((error) => error);
        assert.equal(failed.status, 503);
        scripted.behaviour = { error: new ProviderError('refused', 'no') };
        const refused = await client.images.generate({ model: 'scripted-image', prompt: 'x' }).catch((error) => error);
        assert.equal(refused.status, 400);
        scripted.behaviour = { error: new ProviderError('failed', 'broke', { accepted: true }), failAfter: 1 };
        const partial = await client.images.generate({ model: 'scripted-image', prompt: 'x', n: 2 });
        assert.equal(partial.data!.length, 1);

        after = await scrape(t);
        const outcome = (name: string) =>
          after.value('deepshi_image_requests_total', { model: 'scripted-image', endpoint: 'images.generations', outcome: name });
        assert.equal(outcome('failed'), 1);
        assert.equal(outcome('refused'), 1);
        assert.equal(outcome('partial'), 1);
        assert.equal(
          after.value('deepshi_images_generated_total', { model: 'scripted-image' }),
          1 + 1,
          'the slow one earlier and the partial one',
        );
        // unavailable twice on the only route (retried, then error), refused (error), the partial call (error).
        assert.equal(after.value('deepshi_upstream_calls_total', { provider: 'scripted', result: 'retried' }), 2);
        assert.equal(after.value('deepshi_upstream_calls_total', { provider: 'scripted', result: 'error' }), 3);
      } finally {
        scripted.behaviour = {};
      }
    });

    it('has the default process metrics, and each server its own registry', async () => {
      const metrics = await scrape(t);
      for (const name of ['nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'process_cpu_user_seconds_total']) {
        assert.ok(metrics.value(name) !== undefined, name);
      }
      assert.match(metrics.text, /^# TYPE nodejs_gc_duration_seconds histogram$/m);
      const other = await startTestServer({ env: { DEEPSHI_METRICS_TOKEN: TOKEN } });
      try {
        const fresh = await scrape(other);
        assert.equal(fresh.value('deepshi_images_generated_total', { model: 'deepshi-sketch' }), 0);
        assert.ok(fresh.value('nodejs_heap_size_used_bytes')! > 0);
      } finally {
        await other.close();
      }
    });
  });

  it('decisions taken while Redis is unreachable are counted as degraded', async () => {
    const t = await startTestServer({ env: { DEEPSHI_METRICS_TOKEN: TOKEN, REDIS_URL: `redis://127.0.0.1:${await deadPort()}` } });
    try {
      const account = await t.createAccount('1');
      await t.admin('POST', `/admin/v1/keys/${account.keyId}/limits`, { requests_per_minute: 10 });
      await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'x' });
      await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'x' });
      assert.equal((await scrape(t)).value('deepshi_rate_limit_degraded_total'), t.server.limiter.stats.degraded);
      assert.ok(t.server.limiter.stats.degraded >= 2);
    } finally {
      await t.close();
    }
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('GET /metrics: chat completions', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ env: { DEEPSHI_METRICS_TOKEN: TOKEN } });
  });
  after(() => t.close());

  it('a completion through the openai SDK shows as a request, its billed tokens and the charged nanos; a 402 as rejected', async () => {
    const at = (scraped: Awaited<ReturnType<typeof scrape>>, name: string, labels: Record<string, string>) =>
      scraped.value(name, labels) ?? NaN;
    const before = await scrape(t);
    assert.equal(at(before, 'deepshi_chat_requests_total', { model: 'deepshi-echo', outcome: 'success' }), 0, 'text models start at 0');
    assert.equal(
      before.value('deepshi_image_requests_total', { model: 'deepshi-echo', endpoint: 'images.generations', outcome: 'success' }),
      undefined,
      'no image series for a text model',
    );

    const account = await t.createAccount('1');
    const completion = await t
      .client(account.key)
      .chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'count me' }], max_tokens: 16 });
    const poor = await t.createAccount('0.000001');
    await assert.rejects(t.client(poor.key).chat.completions.create({ model: 'deepshi-echo', messages: [{ role: 'user', content: 'x' }] }));
    await assert.rejects(
      t.client(account.key).chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    );

    const after = await scrape(t);
    const delta = (name: string, labels: Record<string, string>) => at(after, name, labels) - (before.value(name, labels) ?? 0);
    assert.equal(delta('deepshi_chat_requests_total', { model: 'deepshi-echo', outcome: 'success' }), 1);
    assert.equal(delta('deepshi_chat_requests_total', { model: 'deepshi-echo', outcome: 'rejected' }), 1, 'the 402');
    assert.equal(delta('deepshi_chat_requests_total', { model: 'unknown', outcome: 'rejected' }), 1, 'the unknown model');
    assert.equal(delta('deepshi_chat_tokens_total', { model: 'deepshi-echo', kind: 'prompt' }), completion.usage!.prompt_tokens);
    assert.equal(delta('deepshi_chat_tokens_total', { model: 'deepshi-echo', kind: 'completion' }), completion.usage!.completion_tokens);
    const nanos = Math.round((completion.usage as unknown as { cost: { total_cost: number } }).cost.total_cost * 1e9);
    assert.equal(delta('deepshi_credits_charged_nanos_total', { model: 'deepshi-echo' }), nanos);
  });
});
