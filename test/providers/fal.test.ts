import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { toFile } from 'openai';
import { parse as parseYaml } from 'yaml';
import { parseUsd } from '../../src/domain/money.ts';
import { probeImage } from '../../src/images/probe.ts';
import { renderSketch } from '../../src/images/sketch.ts';
import { FalImageAdapter } from '../../src/providers/fal/fal-image-adapter.ts';
import type { NormalizedImageRequest } from '../../src/providers/types.ts';
import { expectBalance, expectBalanceOnceSettled, expectError, spent, usageWithoutTokens } from '../helpers/assertions.ts';
import { deadPort } from '../helpers/ports.ts';
import { startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';
import { ArkSimulator } from '../simulators/ark-simulator.ts';
import { FalSimulator } from '../simulators/fal-simulator.ts';
import { eventually, solidImage } from '../simulators/recording-server.ts';

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');
const TIMEOUTS = { connect_ms: 500, first_byte_ms: 2_000, total_ms: 4_000 };
const ENDPOINT = 'fal-ai/bytedance/seedream/v4.5/text-to-image';
const FAL_OPTIONS = {
  endpoint: ENDPOINT,
  edit_endpoint: 'fal-ai/bytedance/seedream/v4.5/edit',
  poll_interval_ms: 5,
  poll_timeout_ms: 400,
  timeouts: TIMEOUTS,
};

/**
 * The shipped catalog with tiny poll/timeouts, plus fal-only variants: `seedream-slow` (a long poll timeout, for
 * slow jobs and disconnects), `seedream-polling` and `seedream-slow-polling` (the same with `status_stream: false`).
 */
function falCatalog(): string {
  const catalog = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
  const seedream = catalog.models.find((model: { id: string }) => model.id === 'seedream-4.5');
  seedream.routes.find((route: { provider: string }) => route.provider === 'fal').options = FAL_OPTIONS;
  seedream.routes.find((route: { provider: string }) => route.provider === 'ark').options = { timeouts: TIMEOUTS };
  const variant = (id: string, options: Record<string, unknown>) => {
    const model = structuredClone(seedream);
    model.id = id;
    model.routes = [{ ...model.routes[0], options: { ...FAL_OPTIONS, ...options } }];
    catalog.models.push(model);
  };
  variant('seedream-slow', { poll_timeout_ms: 60_000 });
  variant('seedream-polling', { status_stream: false });
  variant('seedream-slow-polling', { poll_timeout_ms: 60_000, status_stream: false });
  return JSON.stringify(catalog);
}

/** Every upstream request, in order, as `METHOD path`. */
function requestLines(sim: FalSimulator): string[] {
  return sim.requests.map((request) => `${request.method} ${request.path}`);
}

describe('fal.ai queue adapter (seedream-4.5) against the fal simulator', () => {
  let sim: FalSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    sim = await new FalSimulator().start();
    t = await startTestServer({ env: { FAL_KEY: sim.key, FAL_BASE_URL: sim.url }, catalog: falCatalog() });
    account = await t.createAccount('10');
  });
  after(async () => {
    await t.close();
    await sim.close();
  });
  beforeEach(() => sim.reset());

  it('submit → status stream (IN_QUEUE, IN_PROGRESS, COMPLETED events) → result → keyless download; exact requests; $0.04', async () => {
    const start = await t.balance(account.accountId);
    const { data: result, response } = await t
      .client(account.key)
      .images.generate({ model: 'seedream-4.5', prompt: 'a paper crane' })
      .withResponse();

    const [submit] = sim.submits();
    assert.equal(sim.submits().length, 1);
    assert.equal(submit.path, `/${ENDPOINT}`);
    assert.equal(submit.headers.authorization, 'Key sk-sim');
    assert.equal(submit.headers['content-type'], 'application/json');
    assert.deepEqual(submit.body, {
      prompt: 'a paper crane',
      image_size: 'auto_2K',
      num_images: 1,
      enable_safety_checker: true,
      sync_mode: false,
    });

    assert.equal(sim.statusPolls().length, 0, 'no status polls: the stream said COMPLETED');
    const [stream] = sim.statusStreams();
    const id = stream.pathname.split('/')[4];
    assert.equal(stream.path, `/fal-ai/bytedance/requests/${id}/status/stream?logs=0`, 'the subpath is dropped');
    assert.equal(stream.headers.authorization, 'Key sk-sim');
    assert.equal(stream.headers.accept, 'text/event-stream');
    assert.deepEqual(sim.streamEvents, ['IN_QUEUE', 'IN_PROGRESS', 'COMPLETED']);
    assert.deepEqual(requestLines(sim), [
      `POST /${ENDPOINT}`,
      `GET /fal-ai/bytedance/requests/${id}/status/stream?logs=0`,
      `GET /fal-ai/bytedance/requests/${id}`,
      `GET /files/${id}-0.jpeg`,
    ]);
    const [fetch] = sim.resultFetches();
    assert.equal(fetch.path, `/fal-ai/bytedance/requests/${id}`);
    assert.equal(fetch.headers.authorization, 'Key sk-sim');
    const downloads = sim.downloads();
    assert.equal(downloads.length, 1);
    assert.equal(downloads[0].path, `/files/${id}-0.jpeg`);
    assert.equal(downloads[0].headers.authorization, undefined, 'the key never goes to the media CDN');
    assert.equal(sim.cancels().length, 0);

    assert.equal((result as any).size, '2048x2048');
    const probe = probeImage(Buffer.from(result.data![0].b64_json!, 'base64'))!;
    assert.deepEqual([probe.format, probe.width, probe.height], ['jpeg', 2048, 2048]);
    assert.equal((result.usage as any).cost.total_cost, 0.04);
    assert.equal(response.headers.get('x-request-cost'), '0.04');
    assert.equal(await spent(t, account, start), 40_000_000n);
  });

  it('a job running 1.2 s: completion is learnt from the stream (zero status polls), the result fetched at once; $0.04', async () => {
    const start = await t.balance(account.accountId);
    // The stream stays open 5 s after COMPLETED: the result must not wait for it to close.
    sim.script = { completeAfterMs: 1_200, streamLingerMs: 5_000 };
    const began = Date.now();
    const result = await t.client(account.key).images.generate({ model: 'seedream-slow', prompt: 'x' });
    const elapsed = Date.now() - began;

    assert.equal(sim.statusPolls().length, 0);
    assert.equal(sim.statusStreams().length, 1);
    const id = sim.statusStreams()[0].pathname.split('/')[4];
    assert.deepEqual(requestLines(sim), [
      `POST /${ENDPOINT}`,
      `GET /fal-ai/bytedance/requests/${id}/status/stream?logs=0`,
      `GET /fal-ai/bytedance/requests/${id}`,
      `GET /files/${id}-0.jpeg`,
    ]);
    const events = sim.streamEvents;
    assert.equal(events[0], 'IN_QUEUE');
    assert.equal(events.at(-1), 'COMPLETED');
    assert.ok(events.slice(1, -1).length >= 5 && events.slice(1, -1).every((status) => status === 'IN_PROGRESS'), events.join());
    assert.ok(elapsed >= 1_200 && elapsed < 3_500, `${elapsed} ms`);
    assert.equal(sim.cancels().length, 0);
    assert.equal(result.data!.length, 1);
    assert.equal(await spent(t, account, start), 40_000_000n);
  });

  it('status_stream: false → status polls only (202 queued, 202 running, 200 completed), no stream request; exact requests', async () => {
    const start = await t.balance(account.accountId);
    const result = await t.client(account.key).images.generate({ model: 'seedream-polling', prompt: 'a paper crane' });

    assert.equal(sim.statusStreams().length, 0);
    const polls = sim.statusPolls();
    assert.equal(polls.length, 3);
    const id = polls[0].pathname.split('/')[4];
    for (const poll of polls) {
      assert.equal(poll.path, `/fal-ai/bytedance/requests/${id}/status`, 'the subpath is dropped');
      assert.equal(poll.headers.authorization, 'Key sk-sim');
      assert.equal(poll.headers.accept, 'application/json');
    }
    const status = `GET /fal-ai/bytedance/requests/${id}/status`;
    assert.deepEqual(requestLines(sim), [
      `POST /${ENDPOINT}`,
      status,
      status,
      status,
      `GET /fal-ai/bytedance/requests/${id}`,
      `GET /files/${id}-0.jpeg`,
    ]);
    assert.equal(probeImage(Buffer.from(result.data![0].b64_json!, 'base64'))!.width, 2048);
    assert.equal(await spent(t, account, start), 40_000_000n);
  });

  for (const [fault, polls] of [
    ['http404', 3],
    ['http500', 3],
    ['json', 2],
  ] as const) {
    it(`the status stream answering ${fault === 'json' ? '200 JSON, not an event stream' : fault} → status polls take over; one submit, charged once`, async () => {
      const start = await t.balance(account.accountId);
      sim.script = { streamFault: fault };
      const result = await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' });
      assert.equal(sim.submits().length, 1);
      assert.equal(sim.statusStreams().length, 1);
      assert.equal(sim.statusPolls().length, polls, 'polled until COMPLETED');
      assert.deepEqual(sim.streamEvents, []);
      assert.equal(sim.resultFetches().length, 1);
      assert.equal(sim.cancels().length, 0);
      assert.equal(probeImage(Buffer.from(result.data![0].b64_json!, 'base64'))!.width, 2048);
      assert.equal(await spent(t, account, start), 40_000_000n);
    });
  }

  for (const fault of ['drop', 'end'] as const) {
    it(`the status stream ${fault === 'drop' ? 'dropped (socket destroyed)' : 'closed cleanly'} mid-job without COMPLETED → status polls take over; one submit, charged once`, async () => {
      const start = await t.balance(account.accountId);
      sim.script = { streamFault: fault, completeAfterMs: 600 };
      const result = await t.client(account.key).images.generate({ model: 'seedream-slow', prompt: 'x' });
      assert.equal(sim.submits().length, 1);
      assert.equal(sim.statusStreams().length, 1, 'the stream is not reopened');
      assert.deepEqual(sim.streamEvents, ['IN_QUEUE', 'IN_PROGRESS']);
      assert.ok(sim.statusPolls().length >= 2, `${sim.statusPolls().length} polls`);
      const id = sim.statusStreams()[0].pathname.split('/')[4];
      assert.deepEqual(requestLines(sim).slice(-2), [`GET /fal-ai/bytedance/requests/${id}`, `GET /files/${id}-0.jpeg`]);
      assert.equal(sim.cancels().length, 0);
      assert.equal(probeImage(Buffer.from(result.data![0].b64_json!, 'base64'))!.width, 2048);
      assert.equal(await spent(t, account, start), 40_000_000n);
    });
  }

  it('a FAILED event on the status stream → 502 at once, no poll, no result fetch, never resubmitted, no charge', async () => {
    const start = await t.balance(account.accountId);
    sim.script = { streamFault: 'failed' };
    const error = await expectError(t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }), 502, 'upstream_error');
    assert.match(error.message, /FAILED/);
    assert.deepEqual(sim.streamEvents, ['IN_QUEUE', 'IN_PROGRESS', 'FAILED']);
    assert.equal(sim.submits().length, 1);
    assert.equal(sim.statusPolls().length + sim.resultFetches().length + sim.cancels().length, 0);
    await expectBalanceOnceSettled(t, account, start);
  });

  it('every declared parameter: preset and custom image_size, seed, n as num_images (one submit), watermark warned', async () => {
    const start = await t.balance(account.accountId);
    const client = t.client(account.key);
    const three = (await client.images.generate(
      withExtras({ model: 'seedream-4.5', prompt: 'x', n: 3 }, { image_size: 'landscape_4_3', seed: 5, watermark: true }),
    )) as any;
    assert.equal(sim.submits().length, 1);
    assert.deepEqual(sim.submits()[0].body, {
      prompt: 'x',
      image_size: 'landscape_4_3',
      num_images: 3,
      seed: 5,
      enable_safety_checker: true,
      sync_mode: false,
    });
    assert.equal(three.data.length, 3);
    assert.equal(three.size, '2304x1728');
    assert.deepEqual(
      three.warnings.map((warning: { param: string }) => warning.param),
      ['watermark'],
    );
    assert.equal(await spent(t, account, start), 120_000_000n);

    sim.reset();
    const custom = (await client.images.generate(withExtras({ model: 'seedream-4.5', prompt: 'x' }, { image_size: '2560x1440' }))) as any;
    assert.deepEqual(sim.submits()[0].body.image_size, { width: 2560, height: 1440 });
    assert.equal(custom.size, '2560x1440');
  });

  it('extras are forwarded, owned fields and URLs are not', async () => {
    await t.client(account.key).images.generate(
      withExtras(
        { model: 'seedream-4.5', prompt: 'x' },
        {
          enable_safety_checker: false,
          max_images: 4,
          sync_mode: true,
          fal_webhook: 'https://attacker.example',
          negative_prompt: 'blur',
        },
      ),
    );
    const body = sim.submits()[0].body;
    assert.equal(body.enable_safety_checker, true);
    assert.equal(body.sync_mode, false);
    assert.equal(body.negative_prompt, 'blur');
    assert.ok(!('max_images' in body) && !('fal_webhook' in body));
  });

  it('links on a foreign origin are not used: status and result are fetched from the configured host', async () => {
    sim.script = { links: 'foreign' };
    await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' });
    assert.equal(sim.other.requests.length, 0);
    assert.equal(sim.resultFetches().length, 1);
    sim.reset();
    sim.script = { links: 'absent' };
    await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' });
    assert.equal(sim.resultFetches().length, 1);
  });

  it('sync_mode-style data URIs in the result are taken as sent', async () => {
    sim.script = { outcome: 'sync' };
    const result = await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' });
    assert.equal(probeImage(Buffer.from(result.data![0].b64_json!, 'base64'))!.width, 2048);
    assert.equal(sim.downloads().length, 0);
  });

  it('more images than asked: only n are delivered and charged', async () => {
    const start = await t.balance(account.accountId);
    sim.script = { outcome: 'extra-images' };
    const result = await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' });
    assert.equal(result.data!.length, 1);
    assert.equal(await spent(t, account, start), 40_000_000n);
  });

  it('a completed job whose result is a 422 content_policy_violation → 400 content_policy_violation, no charge', async () => {
    const start = await t.balance(account.accountId);
    sim.script = { outcome: 'content_policy' };
    const error = await expectError(
      t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }),
      400,
      'content_policy_violation',
    );
    assert.match(error.message, /content policy/);
    assert.equal(sim.submits().length, 1);
    await expectBalanceOnceSettled(t, account, start);
  });

  it('has_nsfw_concepts: a flagged image is withheld (not charged, warned); all flagged → content_policy_violation', async () => {
    const start = await t.balance(account.accountId);
    sim.script = { outcome: 'nsfw-first' };
    const result = (await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x', n: 2 })) as any;
    assert.equal(result.data.length, 1);
    assert.match(result.warnings[0].message, /1 of 2 images were withheld/);
    assert.equal(await spent(t, account, start), 40_000_000n);

    const middle = await t.balance(account.accountId);
    sim.reset();
    sim.script = { outcome: 'nsfw-all' };
    await expectError(t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }), 400, 'content_policy_violation');
    assert.equal(sim.downloads().length, 0);
    await expectBalanceOnceSettled(t, account, middle);
  });

  for (const [outcome, status, code, param] of [
    ['http500', 502, 'upstream_error', null],
    ['timeout504', 502, 'upstream_error', null],
    ['validation', 400, 'invalid_value', 'image_size'],
  ] as const) {
    it(`a completed job whose result fetch fails (${outcome}) → ${status}, never resubmitted, no charge`, async () => {
      const start = await t.balance(account.accountId);
      sim.script = { outcome };
      await expectError(t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }), status, code, param);
      assert.equal(sim.submits().length, 1);
      await expectBalanceOnceSettled(t, account, start);
    });
  }

  it('a job that never completes → the same 502 after poll_timeout_ms on the stream as with polls, cancelled upstream, no charge', async () => {
    const messages: string[] = [];
    for (const model of ['seedream-4.5', 'seedream-polling']) {
      sim.reset();
      const start = await t.balance(account.accountId);
      sim.script = { outcome: 'never' };
      const began = Date.now();
      const error = await expectError(t.client(account.key).images.generate({ model, prompt: 'x' }), 502, 'upstream_error');
      assert.ok(Date.now() - began >= 300, 'not long before poll_timeout_ms (400 ms)');
      assert.match(error.message, /did not finish/);
      messages.push(error.message);
      await eventually(() => sim.cancels().length === 1);
      const id = sim.cancels()[0].pathname.split('/')[4];
      assert.equal(sim.cancels()[0].path, `/fal-ai/bytedance/requests/${id}/cancel`);
      if (model === 'seedream-4.5') {
        assert.equal(sim.statusStreams().length, 1);
        assert.equal(sim.statusPolls().length, 0, 'the stream had the whole poll timeout; no poll after it');
        assert.deepEqual(sim.streamEvents, ['IN_QUEUE']);
      } else {
        assert.equal(sim.statusStreams().length, 0);
        assert.ok(sim.statusPolls().length >= 3);
      }
      assert.equal(sim.submits().length, 1);
      assert.equal(sim.resultFetches().length, 0);
      await expectBalanceOnceSettled(t, account, start);
    }
    assert.equal(messages[0], messages[1]);
  });

  for (const [model, seen] of [
    ['seedream-slow', 'statusStreams'],
    ['seedream-slow-polling', 'statusPolls'],
  ] as const) {
    it(`the caller disconnecting mid-queue (${seen === 'statusStreams' ? 'on the status stream' : 'while polling'}) cancels the fal job (PUT cancel_url with the key); the hold is released`, async () => {
      const start = await t.balance(account.accountId);
      sim.script = { outcome: 'never' };
      const controller = new AbortController();
      const pending = t
        .client(account.key)
        .images.generate({ model, prompt: 'x' }, { signal: controller.signal })
        .catch((error) => error);
      await eventually(() => sim[seen]().length >= 1);
      controller.abort();
      await pending;
      await eventually(() => sim.cancels().length === 1);
      const [cancel] = sim.cancels();
      const id = sim[seen]()[0].pathname.split('/')[4];
      assert.equal(cancel.path, `/fal-ai/bytedance/requests/${id}/cancel`);
      assert.equal(cancel.headers.authorization, 'Key sk-sim');
      await expectBalanceOnceSettled(t, account, start);
    });
  }

  for (const target of ['other-port', 'metadata'] as const) {
    it(`an image URL on ${target} is refused, nothing fetched, no charge`, async () => {
      const start = await t.balance(account.accountId);
      sim.script = { imageUrl: target };
      const error = await expectError(t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }), 502, 'upstream_error');
      assert.match(error.message, /not downloaded/);
      assert.equal(sim.other.requests.length, 0);
      await expectBalanceOnceSettled(t, account, start);
    });
  }

  it('one image of a batch on a forbidden host: the others are delivered and charged, the loss is warned about', async () => {
    const start = await t.balance(account.accountId);
    sim.script = { imageUrl: 'metadata-first' };
    const result = (await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x', n: 2 })) as any;
    assert.equal(result.data.length, 1);
    assert.match(result.warnings[0].message, /1 of 2 images could not be fetched/);
    assert.equal(await spent(t, account, start), 40_000_000n);
  });

  it('edits (adapter direct): the edit endpoint, references as data URIs in image_urls', async () => {
    const reference = await renderSketch({ prompt: 'ref', seed: 1, width: 64, height: 64, format: 'png' });
    const request: NormalizedImageRequest = {
      model: 'seedream-4.5',
      prompt: 'make it night',
      n: 1,
      seed: undefined,
      width: 2048,
      height: 2048,
      params: { image_size: 'auto_2K', watermark: false },
      outputFormat: undefined,
      partialImages: 0,
      extra: {},
      inputImages: [{ bytes: reference, mediaType: 'image/png', width: 64, height: 64 }],
    };
    const route = { upstreamModel: undefined, baseUrl: sim.url, credential: sim.key, options: FAL_OPTIONS };
    const result = await new FalImageAdapter().generate(request, route, { signal: AbortSignal.timeout(5_000) });
    const [submit] = sim.submits();
    assert.equal(submit.path, '/fal-ai/bytedance/seedream/v4.5/edit');
    assert.deepEqual(submit.body.image_urls, [`data:image/png;base64,${reference.toString('base64')}`]);
    assert.equal(result.images.length, 1);
    assert.equal(result.images[0].mediaType, 'image/jpeg');
  });

  it('resume (adapter direct): the handle given to onAccepted lets another adapter collect the job without submitting it again', async () => {
    const request: NormalizedImageRequest = {
      model: 'seedream-4.5',
      prompt: 'a paper crane',
      n: 2,
      seed: 7,
      width: 2048,
      height: 2048,
      params: { image_size: 'auto_2K' },
      outputFormat: undefined,
      partialImages: 0,
      extra: {},
      inputImages: [],
    };
    const route = { upstreamModel: undefined, baseUrl: sim.url, credential: sim.key, options: { ...FAL_OPTIONS, status_stream: false } };
    sim.script = { queuedPolls: 2, progressPolls: 2 };
    const handles: Array<Record<string, unknown>> = [];
    await new FalImageAdapter().generate(request, route, {
      signal: AbortSignal.timeout(5_000),
      onAccepted: (handle) => handles.push(JSON.parse(JSON.stringify(handle))), // persisted as JSON by async jobs
    });
    assert.equal(handles.length, 1, 'one handle per queued call');
    const [submit] = sim.submits();
    assert.deepEqual(handles[0], {
      app_id: 'fal-ai/bytedance',
      request_id: handles[0].request_id,
      status_url: `${sim.url}/fal-ai/bytedance/requests/${handles[0].request_id}/status`,
      response_url: `${sim.url}/fal-ai/bytedance/requests/${handles[0].request_id}`,
      cancel_url: `${sim.url}/fal-ai/bytedance/requests/${handles[0].request_id}/cancel`,
    });
    assert.equal(submit.path, `/${ENDPOINT}`);

    const statusPolls = sim.statusPolls().length;
    const resumed = await new FalImageAdapter().resume(handles[0], request, route, { signal: AbortSignal.timeout(5_000) });
    assert.equal(resumed.images.length, 2);
    assert.equal(resumed.images[0].mediaType, 'image/jpeg');
    assert.equal(sim.submits().length, 1, 'never submitted again');
    assert.ok(sim.statusPolls().length > statusPolls, 'resumed by its status');
    assert.equal(sim.resultFetches().length, 2, 'and its result');

    // A handle whose links point elsewhere is collected on the configured queue origin; nothing goes to the other host.
    const foreign = { ...handles[0], status_url: `${sim.other.url}/x/status`, response_url: `${sim.other.url}/x` };
    assert.equal((await new FalImageAdapter().resume(foreign, request, route, { signal: AbortSignal.timeout(5_000) })).images.length, 2);
    assert.equal(sim.other.requests.length, 0);
    for (const unreadable of [{}, { ...handles[0], app_id: '../../etc' }, { ...handles[0], request_id: '' }]) {
      await assert.rejects(
        new FalImageAdapter().resume(unreadable, request, route, { signal: AbortSignal.timeout(5_000) }),
        (error: any) => {
          assert.equal(error.accepted, true, 'an accepted job is never failed over');
          assert.match(error.message, /handle is unreadable/);
          return true;
        },
      );
    }
    assert.equal(sim.submits().length, 1);
  });
});

describe('seedream-4.5 on two routes: fal first, BytePlus Ark on failover', () => {
  let fal: FalSimulator;
  let ark: ArkSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    fal = await new FalSimulator().start();
    ark = await new ArkSimulator().start();
    t = await startTestServer({
      env: { FAL_KEY: fal.key, FAL_BASE_URL: fal.url, ARK_API_KEY: ark.key, ARK_BASE_URL: ark.url },
      catalog: falCatalog(),
    });
    account = await t.createAccount('10');
  });
  after(async () => {
    await t.close();
    await fal.close();
    await ark.close();
  });
  beforeEach(() => {
    fal.reset();
    ark.reset();
  });

  for (const fault of ['http500', 'http429'] as const) {
    it(`fal ${fault} on submit (not accepted) → retried, then served by Ark, charged exactly once`, async () => {
      const start = await t.balance(account.accountId);
      fal.submitFault = fault;
      const result = await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' });
      assert.equal(fal.submits().length, 2);
      assert.equal(fal.statusPolls().length + fal.statusStreams().length, 0);
      assert.equal(ark.calls().length, 1);
      assert.equal(ark.calls()[0].body.size, '2K');
      assert.equal(result.data!.length, 1);
      assert.equal((result.usage as any).cost.total_cost, 0.04);
      assert.equal(await spent(t, account, start), 40_000_000n);
    });
  }

  it('n: 2 failing over from fal (4 per call) to Ark (1 per call) → two Ark calls, two images, $0.08', async () => {
    const start = await t.balance(account.accountId);
    fal.submitFault = 'http500';
    const result = await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x', n: 2 });
    assert.equal(ark.calls().length, 2);
    assert.equal(result.data!.length, 2);
    assert.equal(await spent(t, account, start), 80_000_000n);
  });

  it('fal accepted the job, then its result failed → 502, NO failover to Ark, no charge', async () => {
    const start = await t.balance(account.accountId);
    fal.script = { outcome: 'http500' };
    await expectError(t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }), 502, 'upstream_error');
    assert.equal(fal.submits().length, 1);
    assert.equal(ark.calls().length, 0);
    await expectBalance(t, account, start);
  });

  it('fal resetting the connection after the submit was sent (it may be queued) → 502, NO failover, no charge', async () => {
    const start = await t.balance(account.accountId);
    fal.submitFault = 'reset';
    await expectError(t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'x' }), 502, 'upstream_error');
    assert.equal(fal.submits().length, 1);
    assert.equal(ark.calls().length, 0);
    assert.equal(await t.balance(account.accountId), start);
  });

  it('fal refusing connections → served by Ark, charged once', async () => {
    const refused = await startTestServer({
      env: { FAL_KEY: fal.key, FAL_BASE_URL: `http://127.0.0.1:${await deadPort()}`, ARK_API_KEY: ark.key, ARK_BASE_URL: ark.url },
      catalog: falCatalog(),
    });
    try {
      const other = await refused.createAccount('1');
      const result = await refused.client(other.key).images.generate({ model: 'seedream-4.5', prompt: 'x' });
      assert.equal(result.data!.length, 1);
      assert.equal(ark.calls().length, 1);
      assert.equal(await refused.balance(other.accountId), '0.96');
    } finally {
      await refused.close();
    }
  });
});

describe('POST /v1/images/edits for seedream-4.5 on the fal route (openai SDK → fal edit endpoint)', () => {
  let sim: FalSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };
  let png: Buffer;
  let jpeg: Buffer;

  before(async () => {
    sim = await new FalSimulator().start();
    t = await startTestServer({ env: { FAL_KEY: sim.key, FAL_BASE_URL: sim.url }, catalog: falCatalog() });
    account = await t.createAccount('10');
    png = await renderSketch({ prompt: 'ref', seed: 1, width: 64, height: 48, format: 'png' });
    jpeg = await solidImage(80, 60, 'jpeg', 7);
  });
  after(async () => {
    await t.close();
    await sim.close();
  });
  beforeEach(() => sim.reset());

  const dataUri = (type: string, bytes: Buffer) => `data:${type};base64,${bytes.toString('base64')}`;

  /** The submit went to the edit endpoint with the key and exactly this input; the job ran to its download. */
  function assertEditSubmit(prompt: string, imageUrls: string[]) {
    assert.equal(sim.submits().length, 1);
    const [submit] = sim.submits();
    assert.equal(submit.path, `/${FAL_OPTIONS.edit_endpoint}`);
    assert.equal(submit.headers.authorization, 'Key sk-sim');
    assert.equal(submit.headers['content-type'], 'application/json');
    assert.deepEqual(submit.body, {
      prompt,
      image_size: 'auto_2K',
      num_images: 1,
      enable_safety_checker: true,
      sync_mode: false,
      image_urls: imageUrls,
    });
    const id = sim.statusStreams()[0].pathname.split('/')[4];
    assert.equal(sim.statusPolls().length, 0);
    assert.equal(sim.resultFetches()[0].path, `/fal-ai/bytedance/requests/${id}`);
    assert.deepEqual(
      sim.downloads().map((download) => download.path),
      [`/files/${id}-0.jpeg`],
    );
  }

  /** The whole ImageResponse: fal's jpeg as downloaded (untouched), the 2K size, $0.04. */
  function assertEditResponse(result: any, response: Response) {
    assert.equal(typeof result.created, 'number');
    assert.deepEqual(
      { ...result, created: 0 },
      {
        created: 0,
        model: 'seedream-4.5',
        size: '2048x2048',
        output_format: 'jpeg',
        data: [{ b64_json: sim.served[0].toString('base64'), index: 0 }],
        usage: usageWithoutTokens(0.04),
      },
    );
    assert.equal(response.headers.get('x-request-cost'), '0.04');
  }

  it('one file → the edit endpoint with image_urls [its data URI], the downloaded jpeg, $0.04 charged', async () => {
    const start = await t.balance(account.accountId);
    const { data: result, response } = await t
      .client(account.key)
      .images.edit({ model: 'seedream-4.5', prompt: 'make it night', image: await toFile(png, 'a.png', { type: 'image/png' }) })
      .withResponse();
    assertEditSubmit('make it night', [dataUri('image/png', png)]);
    assertEditResponse(result, response);
    assert.equal(await spent(t, account, start), 40_000_000n);
  });

  it('two files (image[]) → image_urls holds both data URIs in order, typed from their bytes; $0.04 charged', async () => {
    const start = await t.balance(account.accountId);
    const { data: result, response } = await t
      .client(account.key)
      .images.edit({
        model: 'seedream-4.5',
        prompt: 'put the cat in the box',
        image: [await toFile(png, 'a.png', { type: 'image/png' }), await toFile(jpeg, 'b.jpg', { type: 'image/jpeg' })],
      })
      .withResponse();
    assertEditSubmit('put the cat in the box', [dataUri('image/png', png), dataUri('image/jpeg', jpeg)]);
    assertEditResponse(result, response);
    assert.equal(await spent(t, account, start), 40_000_000n);
  });

  it('an edit fal refuses (422 content_policy_violation on the result) → 400 content_policy_violation, balance unchanged', async () => {
    const start = await t.balance(account.accountId);
    sim.script = { outcome: 'content_policy' };
    const error = await expectError(
      t
        .client(account.key)
        .images.edit({ model: 'seedream-4.5', prompt: 'forbidden', image: await toFile(png, 'a.png', { type: 'image/png' }) }),
      400,
      'content_policy_violation',
    );
    assert.match(error.message, /content policy/);
    assert.equal(sim.submits().length, 1, 'never resubmitted');
    assert.equal(sim.submits()[0].path, `/${FAL_OPTIONS.edit_endpoint}`);
    assert.equal(sim.downloads().length, 0);
    await expectBalanceOnceSettled(t, account, start);
  });
});

describe('stream: true for seedream-4.5 on the fal route (SSE while the fal job is queued)', () => {
  let sim: FalSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    sim = await new FalSimulator().start();
    t = await startTestServer({ env: { FAL_KEY: sim.key, FAL_BASE_URL: sim.url, DEEPSHI_KEEPALIVE_MS: '40' }, catalog: falCatalog() });
    account = await t.createAccount('10');
  });
  after(async () => {
    await t.close();
    await sim.close();
  });
  beforeEach(() => sim.reset());

  it('n: 2 → one fal job (num_images 2), two image_generation.completed events whose costs sum to the charge', async () => {
    const start = parseUsd(await t.balance(account.accountId));
    sim.script = { completeAfterMs: 150 };
    const stream = await t.client(account.key).images.generate({ model: 'seedream-4.5', prompt: 'two kites', n: 2, stream: true });
    const events: any[] = [];
    for await (const event of stream) events.push(event);

    assert.equal(sim.submits().length, 1);
    assert.deepEqual(sim.submits()[0].body, {
      prompt: 'two kites',
      image_size: 'auto_2K',
      num_images: 2,
      enable_safety_checker: true,
      sync_mode: false,
    });
    assert.deepEqual(
      events.map((event) => event.type),
      ['image_generation.completed', 'image_generation.completed'],
    );
    assert.deepEqual(events.map((event) => event.index).sort(), [0, 1]);
    const served = new Set(sim.served.map((bytes) => bytes.toString('base64')));
    assert.equal(served.size, 2);
    for (const event of events) {
      assert.ok(served.has(event.b64_json), 'each completed event carries a downloaded image, untouched');
      assert.equal(event.size, '2048x2048');
      assert.equal(event.output_format, 'jpeg');
    }
    const state = await t.admin('GET', `/admin/v1/accounts/${account.accountId}`);
    assert.equal(state.held, '0');
    const charge = start - parseUsd(state.balance);
    assert.equal(charge, 80_000_000n);
    assert.equal(
      events.reduce((sum, event) => sum + parseUsd(event.usage.cost.total_cost), 0n),
      charge,
      'the events sum to the charge, to the nano',
    );
  });

  it('`: keepalive` comments arrive while the fal job is pending, before the first event', async () => {
    sim.script = { completeAfterMs: 150 };
    const response = await fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'seedream-4.5', prompt: 'slow', stream: true }),
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
    const text = await response.text();
    const beforeFirstEvent = text.slice(0, text.indexOf('event: '));
    assert.match(beforeFirstEvent, /^(: keepalive\n\n)+$/);
    assert.equal(sim.statusStreams().length, 1);
    assert.ok(sim.streamEvents.length >= 3, 'the job was still being followed meanwhile');
    assert.match(text, /event: image_generation.completed\ndata: \{"type":"image_generation.completed"/);
  });
});
