import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { parseUsd } from '../../src/domain/money.ts';
import { charged } from '../helpers/assertions.ts';
import { startTestServer, withExtras, type TestServer } from '../helpers/test-server.ts';

/**
 * `x-request-cost` never states an amount that is not the settled charge. JSON answers are sent after settlement and
 * carry it (equal to usage.cost.total_cost and to what the balance lost); a stream's headers go out before anything is
 * charged, so streams never carry it (their cost is in the final event or usage chunk). Warnings do not change that,
 * nor do idempotent replays (which repeat the first answer's headers and charge nothing).
 */
describe('x-request-cost is the settled charge or absent', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  const post = (key: string, path: string, body: Record<string, unknown>, idempotencyKey?: string) =>
    fetch(`${t.url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
      },
      body: JSON.stringify(body),
    });

  /** The `data:` JSON objects of an SSE body (not [DONE]). */
  const events = (text: string) =>
    text
      .split('\n')
      .filter((line) => line.startsWith('data: ') && line !== 'data: [DONE]')
      .map((line) => JSON.parse(line.slice(6)));

  it('images, JSON with a warning: the header is the charge, equal to usage.cost and the balance change', async () => {
    const account = await t.createAccount('1');
    const { result, charge } = await charged(t, account, () =>
      t
        .client(account.key)
        .images.generate(withExtras({ model: 'deepshi-sketch', prompt: 'a fox', quality: 'high', n: 2 }, { size: '64x64' }))
        .withResponse(),
    );
    assert.equal(charge, 2_000_000n);
    assert.equal(result.response.headers.get('x-deepshi-warnings'), 'quality');
    assert.equal(parseUsd(result.response.headers.get('x-request-cost')), charge);
    assert.equal(parseUsd(String((result.data.usage as any).cost.total_cost)), charge);
  });

  it('images, SSE with a warning: no cost header; the completed events carry the charge', async () => {
    const account = await t.createAccount('1');
    const { result, charge } = await charged(t, account, async () => {
      const response = await post(account.key, '/v1/images/generations', {
        model: 'deepshi-sketch',
        prompt: 'a',
        size: '64x64',
        stream: true,
        quality: 'high',
      });
      return { headers: response.headers, text: await response.text() };
    });
    assert.equal(charge, 1_000_000n);
    assert.equal(result.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal(result.headers.get('x-request-cost'), null);
    assert.equal(result.headers.get('x-deepshi-warnings'), 'quality');
    const completed = events(result.text).filter((event) => event.type === 'image_generation.completed');
    assert.equal(
      completed.reduce((sum, event) => sum + parseUsd(String(event.usage.cost.total_cost)), 0n),
      charge,
    );
    assert.deepEqual(
      completed.at(-1).warnings.map((warning: { param: string }) => warning.param),
      ['quality'],
    );
    // The event fields the SDKs type as always present: quality and background (`auto` where the model has no such setting).
    assert.deepEqual(
      [completed[0].quality, completed[0].background, completed[0].output_format, completed[0].size],
      ['auto', 'auto', 'png', '64x64'],
    );
    assert.equal(completed[0].usage.total_tokens, 0);
  });

  it('chat, JSON and SSE with a warning: the header is the charge on JSON, absent on the stream', async () => {
    const account = await t.createAccount('1');
    const body = { model: 'deepshi-echo', messages: [{ role: 'user' as const, content: 'hello there' }], temperature: 0.2 };
    const json = await charged(t, account, () => t.client(account.key).chat.completions.create(body).withResponse());
    assert.ok(json.charge > 0n);
    assert.match(json.result.response.headers.get('x-deepshi-warnings') ?? '', /temperature/);
    assert.equal(parseUsd(json.result.response.headers.get('x-request-cost')), json.charge);

    const streamed = await charged(t, account, async () => {
      const response = await post(account.key, '/v1/chat/completions', { ...body, stream: true, stream_options: { include_usage: true } });
      return { headers: response.headers, text: await response.text() };
    });
    assert.equal(streamed.charge, json.charge);
    assert.equal(streamed.result.headers.get('x-request-cost'), null);
    assert.match(streamed.result.headers.get('x-deepshi-warnings') ?? '', /temperature/);
    const usage = events(streamed.result.text).at(-1).usage;
    assert.equal(parseUsd(String(usage.cost.total_cost)), streamed.charge);
  });

  it('idempotent replays: JSON repeats the first charge (and charges nothing); a replayed stream has no cost header', async () => {
    const account = await t.createAccount('1');
    const jsonKey = randomUUID();
    const body = { model: 'deepshi-sketch', prompt: 'a fox', size: '64x64', quality: 'high' };
    const first = await charged(t, account, () => post(account.key, '/v1/images/generations', body, jsonKey));
    const replay = await charged(t, account, () => post(account.key, '/v1/images/generations', body, jsonKey));
    assert.equal(replay.result.headers.get('idempotent-replayed'), 'true');
    assert.equal(replay.charge, 0n);
    assert.equal(parseUsd(first.result.headers.get('x-request-cost')), first.charge);
    assert.equal(replay.result.headers.get('x-request-cost'), first.result.headers.get('x-request-cost'));
    assert.equal(replay.result.headers.get('x-deepshi-warnings'), 'quality');

    for (const [path, streamBody] of [
      ['/v1/images/generations', { ...body, stream: true }],
      ['/v1/chat/completions', { model: 'deepshi-echo', messages: [{ role: 'user', content: 'hi' }], temperature: 1, stream: true }],
    ] as const) {
      const streamKey = randomUUID();
      const original = await post(account.key, path, streamBody, streamKey);
      await original.text();
      const again = await charged(t, account, () => post(account.key, path, streamBody, streamKey));
      assert.equal(again.result.headers.get('idempotent-replayed'), 'true', path);
      assert.equal(again.charge, 0n);
      assert.equal(original.headers.get('x-request-cost'), null, path);
      assert.equal(again.result.headers.get('x-request-cost'), null, path);
      assert.ok(again.result.headers.get('x-deepshi-warnings'), path);
    }
  });
});
