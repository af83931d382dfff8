import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { probeImage } from '../../src/images/probe.ts';
import { ProviderError } from '../../src/providers/types.ts';
import { expectBalance } from '../helpers/assertions.ts';
import { ScriptedAdapter, testCatalogJson } from '../helpers/test-adapters.ts';
import { startTestServer, type TestServer, withExtras } from '../helpers/test-server.ts';

/** stream: true — SSE the openai SDK iterates: keepalives, partial images, completed events, error events. */
describe('POST /v1/images/generations with stream: true', () => {
  let t: TestServer;
  let account: { accountId: string; key: string };
  const scripted = new ScriptedAdapter();

  before(async () => {
    t = await startTestServer({ catalog: testCatalogJson(), adapters: [scripted], env: { DEEPSHI_KEEPALIVE_MS: '40' } });
    account = await t.createAccount('10');
  });
  after(() => t.close());

  it('iterates to image_generation.completed with the flat shape and the billed cost', async () => {
    const stream = await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'a comet', stream: true });
    const events: any[] = [];
    for await (const event of stream) events.push(event);
    assert.equal(events.length, 1);
    const [completed] = events;
    assert.equal(completed.type, 'image_generation.completed');
    const probe = probeImage(Buffer.from(completed.b64_json, 'base64'))!;
    assert.equal(completed.size, `${probe.width}x${probe.height}`);
    assert.equal(completed.usage.cost.total_cost, 0.001);
    assert.equal(completed.output_format, 'png');
  });

  it('partial_images: 2 sends partial_image events with increasing indexes, then completed', async () => {
    const stream = await t
      .client(account.key)
      .images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'a comet', stream: true, partial_images: 2 }, { seed: 5 }));
    const types: string[] = [];
    const indexes: number[] = [];
    let final = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'image_generation.partial_image') indexes.push(event.partial_image_index);
      else final = event.b64_json;
    }
    assert.deepEqual(types, ['image_generation.partial_image', 'image_generation.partial_image', 'image_generation.completed']);
    assert.deepEqual(indexes, [0, 1]);
    const nonStreamed = await t
      .client(account.key)
      .images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'a comet' }, { seed: 5 }));
    assert.equal(final, nonStreamed.data![0].b64_json, 'the streamed final image equals the non-streamed one');
  });

  it('n: 3 sends one completed event per image; their costs sum to the charge', async () => {
    const before = Number(await t.balance(account.accountId));
    const stream = await t.client(account.key).images.generate({ model: 'deepshi-sketch', prompt: 'dots', stream: true, n: 3 });
    const costs: number[] = [];
    for await (const event of stream) if (event.type === 'image_generation.completed') costs.push((event.usage as any).cost.total_cost);
    assert.deepEqual(costs, [0.001, 0.001, 0.001]);
    assert.equal(Math.round((before - Number(await t.balance(account.accountId))) * 1e9), 3_000_000);
  });

  it('a slow generation receives `: keepalive` comments before the result', async () => {
    scripted.behaviour = { delayMs: 200 };
    const response = await fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'scripted-image', prompt: 'slow', stream: true }),
    });
    scripted.behaviour = {};
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
    const text = await response.text();
    const firstEvent = text.indexOf('event: ');
    assert.ok(text.indexOf(': keepalive\n\n') >= 0 && text.indexOf(': keepalive\n\n') < firstEvent, 'keepalive before the first event');
    assert.ok(!/event: [^\n]*\n\n/.test(text), 'never an event line without data');
    assert.match(text, /event: image_generation.completed\ndata: \{"type":"image_generation.completed"/);
  });

  it('errors known before streaming are normal JSON errors with their real status', async () => {
    const poor = await t.createAccount('0');
    const error = await t
      .client(poor.key)
      .images.generate({ model: 'deepshi-sketch', prompt: 'x', stream: true })
      .then(
        () => assert.fail('expected 402'),
        (caught) => caught,
      );
    assert.ok(error instanceof OpenAI.APIError);
    assert.equal(error.status, 402);
    const invalid = await t
      .client(account.key)
      .images.generate({ model: 'deepshi-sketch', prompt: 'x', stream: true, n: 9 })
      .then(
        () => assert.fail('expected 400'),
        (caught) => caught,
      );
    assert.equal(invalid.status, 400);
    assert.equal(invalid.param, 'n');
  });

  it('a failure after the stream started is an error event the SDK raises, and nothing is charged', async () => {
    const fresh = await t.createAccount('1');
    scripted.behaviour = { delayMs: 100, error: new ProviderError('failed', 'the upstream lost the job', { accepted: true }) };
    const stream = await t.client(fresh.key).images.generate({ model: 'scripted-image', prompt: 'x', stream: true });
    const error = await (async () => {
      for await (const _event of stream) {
        // no events before the error
      }
    })().then(
      () => assert.fail('expected the stream to throw'),
      (caught) => caught,
    );
    scripted.behaviour = {};
    assert.ok(error instanceof OpenAI.APIError);
    assert.equal((error as any).error?.code ?? (error as any).code, 'upstream_error');
    await expectBalance(t, fresh, '1');
  });

  it('images delivered before a mid-stream failure are charged; the undelivered one is not', async () => {
    const fresh = await t.createAccount('1');
    scripted.behaviour = { error: new ProviderError('failed', 'second image failed', { accepted: true }), failAfter: 1 };
    const stream = await t.client(fresh.key).images.generate({ model: 'scripted-image', prompt: 'x', stream: true, n: 2 });
    const seen: string[] = [];
    const error = await (async () => {
      for await (const event of stream) seen.push(event.type);
    })().then(
      () => undefined,
      (caught) => caught,
    );
    scripted.behaviour = {};
    assert.deepEqual(seen, ['image_generation.completed']);
    assert.ok(error instanceof OpenAI.APIError, 'the SDK raises the error event after the delivered image');
    assert.equal(await t.balance(fresh.accountId), '0.99');
  });
});
