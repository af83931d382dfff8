import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import { parse as parseYaml } from 'yaml';
import { parseUsd } from '../../src/domain/money.ts';
import { probeImage } from '../../src/images/probe.ts';
import { renderSketch } from '../../src/images/sketch.ts';
import { BflImageAdapter } from '../../src/providers/bfl/bfl-image-adapter.ts';
import { ProviderError, type NormalizedImageRequest } from '../../src/providers/types.ts';
import { billed, collect, expectBalance, expectError, settledState } from '../helpers/assertions.ts';
import { startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';
import { BflSimulator } from '../simulators/bfl-simulator.ts';

const SHIPPED = path.resolve(import.meta.dirname, '../../catalog/models.yaml');
const ROUTE_OPTIONS = { poll_interval_ms: 5, poll_timeout_ms: 400, timeouts: { connect_ms: 500, first_byte_ms: 500, total_ms: 1_500 } };

/**
 * catalog/models.yaml's flux-2-pro list price in nanos, written out: $0.03 for the first output megapixel, $0.015 per
 * further started megapixel (1 MP = 1,048,576 px), $0.015 per started input megapixel. The `cost` BFL reports at submit
 * (credits, 1 credit = $0.01) is what the request records as the upstream cost.
 */
const FIRST_MP = 30_000_000n;
const FURTHER_MP = 15_000_000n;
const INPUT_MP = 15_000_000n;

/** The shipped catalog with tiny poll/timeouts, plus `flux-2-pro-loose` (sides in multiples of 8, so BFL's own validation is reached). */
function bflCatalog(): string {
  const catalog = parseYaml(fs.readFileSync(SHIPPED, 'utf8'));
  const flux = catalog.models.find((model: { id: string }) => model.id === 'flux-2-pro');
  flux.routes[0].options = ROUTE_OPTIONS;
  const loose = structuredClone(flux);
  loose.id = 'flux-2-pro-loose';
  loose.params.width.multiple_of = 8;
  loose.params.height.multiple_of = 8;
  loose.sizing.custom_size.multiple_of = 8;
  catalog.models.push(loose);
  return JSON.stringify(catalog);
}

describe('Black Forest Labs adapter (flux-2-pro) against the BFL simulator', () => {
  let sim: BflSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    sim = await new BflSimulator().start();
    t = await startTestServer({ env: { BFL_API_KEY: sim.key, BFL_BASE_URL: sim.url }, catalog: bflCatalog() });
    account = await t.createAccount('10');
  });
  after(async () => {
    await t.close();
    await sim.close();
  });
  beforeEach(() => sim.reset());

  it('submits exactly, polls with x-key, downloads without it; charges the list price, records the cost BFL reported at submit', async () => {
    sim.costs = [2.75];
    const {
      result: { data: result, response },
      charge,
      record,
    } = await billed(t, account, () =>
      t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'a red fox in snow' }).withResponse(),
    );

    const [submit] = sim.submits();
    assert.equal(sim.submits().length, 1);
    assert.equal(submit.path, '/v1/flux-2-pro');
    assert.equal(submit.headers['x-key'], 'sk-sim');
    assert.equal(submit.headers['content-type'], 'application/json');
    assert.equal(submit.headers.authorization, undefined);
    assert.deepEqual(submit.body, { prompt: 'a red fox in snow', width: 1024, height: 1024, safety_tolerance: 2, output_format: 'jpeg' });

    const polls = sim.polls();
    assert.equal(polls.length, 2, 'one Pending, then Ready');
    const id = polls[0].query.get('id')!;
    for (const poll of polls) {
      assert.equal(poll.method, 'GET');
      assert.equal(poll.path, `/v1/get_result?id=${id}`);
      assert.equal(poll.headers['x-key'], 'sk-sim');
    }
    const downloads = sim.downloads();
    assert.equal(downloads.length, 1);
    assert.equal(downloads[0].path, `/results/${id}/sample.jpeg?se=2099-01-01&sig=simulated`);
    assert.equal(downloads[0].headers['x-key'], undefined, 'the key never goes to the result CDN');
    assert.equal(downloads[0].headers.authorization, undefined);

    assert.equal((result as any).size, '1024x1024');
    assert.equal(result.data!.length, 1);
    const probe = probeImage(Buffer.from(result.data![0].b64_json!, 'base64'))!;
    assert.deepEqual([probe.format, probe.width, probe.height], ['jpeg', 1024, 1024]);
    // 1024x1024 is one megapixel: $0.03, in the body, the header and the balance.
    assert.equal(charge, FIRST_MP);
    assert.equal((result.usage as any).cost.total_cost, 0.03);
    assert.equal(response.headers.get('x-request-cost'), '0.03');
    assert.equal(record.upstreamCost, 27_500_000n, '2.75 credits = $0.0275, to the nano');
  });

  it('sends every declared parameter: width, height, seed, safety_tolerance and output_format png', async () => {
    sim.costs = [4.4];
    const { result, charge, record } = await billed(t, account, () =>
      t
        .client(account.key)
        .images.generate(
          withExtras(
            { model: 'flux-2-pro', prompt: 'a lighthouse', output_format: 'png' as const },
            { width: 1536, height: 768, seed: 7, safety_tolerance: 5 },
          ),
        ),
    );
    assert.deepEqual(sim.submits()[0].body, {
      prompt: 'a lighthouse',
      width: 1536,
      height: 768,
      seed: 7,
      safety_tolerance: 5,
      output_format: 'png',
    });
    assert.equal((result as any).size, '1536x768');
    const probe = probeImage(Buffer.from(result.data![0].b64_json!, 'base64'))!;
    assert.deepEqual([probe.format, probe.width, probe.height], ['png', 1536, 768]);
    // 1536x768 is 1.125 MP → 2 started MP → $0.03 + $0.015.
    assert.equal(charge, FIRST_MP + FURTHER_MP);
    assert.equal((result.usage as any).cost.total_cost, 0.045);
    assert.equal(record.upstreamCost, 44_000_000n, 'the 4.4 credits BFL reported');
  });

  it('webp is asked of BFL as jpeg and transcoded; size via `size` works too', async () => {
    const result = await t
      .client(account.key)
      .images.generate({ model: 'flux-2-pro', prompt: 'x', output_format: 'webp', size: '512x512' as any });
    assert.equal(sim.submits()[0].body.output_format, 'jpeg');
    assert.equal(sim.submits()[0].body.width, 512);
    assert.equal(probeImage(Buffer.from(result.data![0].b64_json!, 'base64'))!.format, 'webp');
  });

  it('forwards harmless extras; drops webhooks, URLs and owned fields with warnings', async () => {
    const result = (await t.client(account.key).images.generate(
      withExtras(
        { model: 'flux-2-pro', prompt: 'x' },
        {
          prompt_upsampling: true,
          webhook_url: 'https://attacker.example/hook',
          webhook_secret: 'secret',
          reference: { source: 'http://169.254.169.254/latest' },
          input_image: 'AAAA',
        },
      ),
    )) as any;
    const body = sim.submits()[0].body;
    assert.equal(body.prompt_upsampling, true);
    for (const dropped of ['webhook_url', 'webhook_secret', 'reference', 'input_image']) assert.ok(!(dropped in body), dropped);
    const params = result.warnings.map((warning: { param: string }) => warning.param).sort();
    assert.deepEqual(params, ['input_image', 'reference', 'webhook_secret', 'webhook_url']);
  });

  it('n: 4 makes four submits (one image each, seeds 7–10), charges four list prices and records the sum of their costs', async () => {
    sim.costs = [2.5, 3, 3.25, 1.1];
    const { result, charge, record } = await billed(t, account, () =>
      t.client(account.key).images.generate(withExtras({ model: 'flux-2-pro', prompt: 'four boats', n: 4 }, { seed: 7 })),
    );
    assert.equal(sim.submits().length, 4);
    assert.deepEqual(
      sim
        .submits()
        .map((submit) => submit.body.seed)
        .sort((a, b) => a - b),
      [7, 8, 9, 10],
    );
    assert.equal(sim.downloads().length, 4);
    assert.equal(result.data!.length, 4);
    assert.equal(new Set(result.data!.map((item) => item.b64_json)).size, 4);
    assert.equal(charge, 4n * FIRST_MP);
    assert.equal((result.usage as any).cost.total_cost, 0.12);
    assert.equal(record.upstreamCost, 98_500_000n, '2.5 + 3 + 3.25 + 1.1 credits');
  });

  it('waits through several Pending polls and transient poll failures, and reads the legacy `state` field', async () => {
    sim.script = { useStateField: true, pendingPolls: 3, failingPolls: 2 };
    const result = await t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'patience', size: '256x256' as any });
    assert.equal(result.data!.length, 1);
    assert.equal(sim.polls().length, 6);
    assert.equal(sim.submits().length, 1);
  });

  it('no polling_url: polls {base}/v1/get_result?id= with the key', async () => {
    sim.script = { pollingUrl: 'absent' };
    await t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'x', size: '256x256' as any });
    assert.match(sim.polls()[0].path, /^\/v1\/get_result\?id=[0-9a-f-]+$/);
    assert.equal(sim.polls()[0].headers['x-key'], 'sk-sim');
  });

  for (const [outcome, pattern] of [
    ['Request Moderated', /refused the request \(the prompt or an input image\)/],
    ['Content Moderated', /refused the generated image/],
  ] as const) {
    it(`${outcome} → 400 content_policy_violation saying what was refused, no charge`, async () => {
      const start = await t.balance(account.accountId);
      sim.script = { outcome };
      const error = await expectError(
        t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'x' }),
        400,
        'content_policy_violation',
      );
      assert.match(error.message, pattern);
      assert.equal(sim.submits().length, 1, 'never resubmitted');
      assert.equal(sim.downloads().length, 0);
      await expectBalance(t, account, start);
    });
  }

  for (const outcome of ['Error', 'Failed', 'Task not found'] as const) {
    it(`status ${outcome} after acceptance → 502, not resubmitted, no charge`, async () => {
      const start = await t.balance(account.accountId);
      sim.script = { outcome };
      await expectError(t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'x' }), 502, 'upstream_error');
      assert.equal(sim.submits().length, 1);
      await expectBalance(t, account, start);
    });
  }

  it('a job that never finishes → 502 after poll_timeout_ms, no charge', async () => {
    const start = await t.balance(account.accountId);
    sim.script = { outcome: 'never' };
    const error = await expectError(t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'x' }), 502, 'upstream_error');
    assert.match(error.message, /did not finish/);
    assert.ok(sim.polls().length >= 2);
    assert.equal(sim.submits().length, 1);
    await expectBalance(t, account, start);
  });

  for (const target of ['other-port', 'metadata'] as const) {
    it(`a result link to ${target === 'metadata' ? 'https://169.254.169.254' : 'another local port'} is refused, nothing fetched, no charge`, async () => {
      const start = await t.balance(account.accountId);
      sim.script = { sample: target };
      const error = await expectError(t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'x' }), 502, 'upstream_error');
      assert.match(error.message, /not downloaded/);
      assert.equal(sim.other.requests.length, 0);
      assert.equal(sim.downloads().length, 0);
      await expectBalance(t, account, start);
    });
  }

  it('a polling_url on a foreign host is not followed: the key never leaves for it, no charge', async () => {
    const start = await t.balance(account.accountId);
    sim.script = { pollingUrl: 'other-port' };
    const error = await expectError(t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'x' }), 502, 'upstream_error');
    assert.match(error.message, /polling link/);
    assert.equal(sim.other.requests.length, 0);
    await expectBalance(t, account, start);
  });

  for (const [fault, status, code, submits] of [
    ['http500', 503, 'upstream_error', 2],
    ['http429', 429, 'rate_limit_exceeded', 2],
    ['http402', 502, 'upstream_error', 1],
    ['hang', 502, 'upstream_error', 1],
    ['reset', 502, 'upstream_error', 1],
    ['malformed', 502, 'upstream_error', 1],
    ['oversized', 502, 'upstream_error', 1],
  ] as const) {
    it(`submit fault ${fault} → ${status}, submitted ${submits}× (retried only before acceptance), no charge`, async () => {
      const start = await t.balance(account.accountId);
      sim.submitFault = fault;
      const error = await expectError(t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'x' }), status, code);
      if (fault === 'http429') assert.ok(Number(error.headers?.get('retry-after')) >= 1);
      assert.equal(sim.submits().length, submits);
      assert.equal(sim.polls().length, 0);
      await expectBalance(t, account, start);
    });
  }

  it("BFL's own 422 validation → 400 invalid_value on our param, no charge", async () => {
    const start = await t.balance(account.accountId);
    const error = await expectError(
      t.client(account.key).images.generate(withExtras({ model: 'flux-2-pro-loose', prompt: 'x' }, { width: 1000, height: 1024 })),
      400,
      'invalid_value',
      'width',
    );
    assert.match(error.message, /multiple of 16/);
    assert.equal(sim.submits().length, 1);
    await expectBalance(t, account, start);
  });

  it('POST /v1/images/edits: the reference goes as input_image (base64); the edit is charged its list price, the submit cost recorded', async () => {
    const reference = await renderSketch({ prompt: 'ref', seed: 2, width: 64, height: 64, format: 'png' });
    const upload = await toFile(reference, 'ref.png', { type: 'image/png' });
    sim.costs = [4.25];
    const { result, charge, record } = await billed(t, account, () =>
      t
        .client(account.key)
        .images.edit(withExtras({ model: 'flux-2-pro', prompt: 'make it night', image: upload }, { width: 512, height: 512 })),
    );
    const body = sim.submits()[0].body;
    assert.equal(body.input_image, reference.toString('base64'));
    assert.equal(body.prompt, 'make it night');
    assert.ok(!('input_image_2' in body));
    assert.equal(result.data!.length, 1);
    // $0.03 (first output MP) + $0.015 (one started input MP) = $0.045.
    assert.equal(charge, FIRST_MP + INPUT_MP);
    assert.equal((result.usage as any).cost.total_cost, 0.045);
    assert.equal(record.upstreamCost, 42_500_000n, 'the 4.25 credits BFL reported');
  });

  it('edits (adapter direct): references as input_image, input_image_2 in base64; cost includes input megapixels', async () => {
    const reference = await renderSketch({ prompt: 'ref', seed: 1, width: 64, height: 64, format: 'png' });
    const request: NormalizedImageRequest = {
      model: 'flux-2-pro',
      prompt: 'make it blue',
      n: 1,
      seed: 3,
      width: 512,
      height: 512,
      params: { safety_tolerance: 2 },
      outputFormat: undefined,
      partialImages: 0,
      extra: {},
      inputImages: [1, 2].map(() => ({ bytes: reference, mediaType: 'image/png' as const, width: 64, height: 64 })),
    };
    const route = { upstreamModel: 'flux-2-pro', baseUrl: sim.url, credential: sim.key, options: ROUTE_OPTIONS };
    const result = await new BflImageAdapter().generate(request, route, { signal: AbortSignal.timeout(5_000) });
    const body = sim.submits()[0].body;
    assert.deepEqual(Object.keys(body).sort(), [
      'height',
      'input_image',
      'input_image_2',
      'output_format',
      'prompt',
      'safety_tolerance',
      'seed',
      'width',
    ]);
    assert.equal(body.input_image, reference.toString('base64'));
    assert.equal(body.input_image_2, reference.toString('base64'));
    assert.equal(result.images.length, 1);
    assert.equal(result.images[0].mediaType, 'image/jpeg');
    // 3 credits for the first output MP + 1.5 per input MP (two started MPs) = 6 credits = $0.06.
    assert.deepEqual(result.usage, { costNanos: 60_000_000n, billedImages: 1 });

    const tooMany = { ...request, inputImages: Array.from({ length: 9 }, () => request.inputImages[0]) };
    await assert.rejects(
      new BflImageAdapter().generate(tooMany, route, { signal: AbortSignal.timeout(5_000) }),
      (error: unknown) => error instanceof ProviderError && error.kind === 'invalid_request' && error.param === 'image',
    );
  });
});

describe('stream: true for flux-2-pro on BFL (SSE while the BFL jobs are pending)', () => {
  let sim: BflSimulator;
  let t: TestServer;
  let account: { accountId: string; key: string };

  before(async () => {
    sim = await new BflSimulator().start();
    t = await startTestServer({ env: { BFL_API_KEY: sim.key, BFL_BASE_URL: sim.url, DEEPSHI_KEEPALIVE_MS: '40' }, catalog: bflCatalog() });
    account = await t.createAccount('10');
  });
  after(async () => {
    await t.close();
    await sim.close();
  });
  beforeEach(() => sim.reset());

  it('n: 2 → two submits, two image_generation.completed events; their costs split the list-price charge exactly', async () => {
    // 2.5 + 2.7500003 credits = $0.0525000030 = 52,500,003 nanos: BFL's bill, recorded; the charge is 2 × $0.03.
    sim.costs = [2.5, 2.7500003];
    sim.script = { readyAfterMs: 150 };
    const {
      result: events,
      charge,
      record,
    } = await billed(t, account, async () => {
      const stream = await t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'two foxes', n: 2, stream: true });
      return collect(stream);
    });

    assert.equal(sim.submits().length, 2);
    for (const submit of sim.submits()) {
      assert.equal(submit.path, '/v1/flux-2-pro');
      assert.deepEqual(submit.body, { prompt: 'two foxes', width: 1024, height: 1024, safety_tolerance: 2, output_format: 'jpeg' });
    }
    assert.equal(sim.downloads().length, 2);
    assert.deepEqual(
      events.map((event) => event.type),
      ['image_generation.completed', 'image_generation.completed'],
    );
    assert.deepEqual(events.map((event) => event.index).sort(), [0, 1]);
    for (const event of events) {
      const probe = probeImage(Buffer.from(event.b64_json, 'base64'))!;
      assert.deepEqual([probe.format, probe.width, probe.height], ['jpeg', 1024, 1024]);
      assert.equal(event.size, '1024x1024');
      assert.equal(event.output_format, 'jpeg');
    }
    assert.notEqual(events[0].b64_json, events[1].b64_json);

    assert.equal(charge, 2n * FIRST_MP, 'the list price, not the costs BFL reported');
    assert.equal(record.upstreamCost, 52_500_003n, 'the sum of the costs BFL reported, to the nano');
    const shares = events.map((event) => parseUsd(event.usage.cost.total_cost));
    assert.deepEqual(shares, [FIRST_MP, FIRST_MP]);
    assert.equal(shares[0] + shares[1], charge, 'the events sum to the charge, to the nano');
  });

  it('`: keepalive` comments arrive while the BFL job is pending, before the first event', async () => {
    sim.script = { readyAfterMs: 150 };
    const response = await fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'flux-2-pro', prompt: 'slow', stream: true }),
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
    const text = await response.text();
    const beforeFirstEvent = text.slice(0, text.indexOf('event: '));
    assert.match(beforeFirstEvent, /^(: keepalive\n\n)+$/);
    assert.ok(sim.polls().length >= 2, 'the job was still being polled meanwhile');
    assert.match(text, /event: image_generation.completed\ndata: \{"type":"image_generation.completed"/);
  });

  for (const [outcome, pattern] of [
    ['Request Moderated', /refused the request \(the prompt or an input image\)/],
    ['Content Moderated', /refused the generated image/],
  ] as const) {
    it(`${outcome} mid-stream → an error event the SDK raises as content_policy_violation; nothing charged`, async () => {
      const start = await t.balance(account.accountId);
      sim.script = { outcome, readyAfterMs: 100 };
      const stream = await t.client(account.key).images.generate({ model: 'flux-2-pro', prompt: 'x', stream: true });
      const types: string[] = [];
      const error = await (async () => {
        for await (const event of stream) types.push(event.type);
      })().then(
        () => assert.fail('expected an error'),
        (caught) => caught,
      );
      assert.deepEqual(types, [], 'no completed event');
      assert.ok(error instanceof OpenAI.APIError, String(error));
      assert.equal(error.status, undefined, 'raised from an SSE error event after the 200, not an HTTP error');
      assert.equal(error.code, 'content_policy_violation');
      assert.match(error.message, pattern);
      assert.equal(sim.submits().length, 1, 'never resubmitted');
      assert.equal(sim.downloads().length, 0);
      assert.equal((await settledState(t, account)).balance, start);
    });
  }
});
