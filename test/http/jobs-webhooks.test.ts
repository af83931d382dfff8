/**
 * Job webhooks per Standard Webhooks: every delivery verified by the `standardwebhooks` library, retried with the same
 * webhook-id until a 2xx, stopped by 410, listed on the job's `webhook` field; secret rotation signs with both secrets.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { assertMatchesSpec } from '../helpers/openapi-validator.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

interface Received {
  headers: Record<string, string>;
  body: string;
}

/** A webhook receiver (test code): answers each delivery with the next status of `script` (then 200). */
class Receiver {
  readonly received: Received[] = [];
  script: number[] = [];
  url = '';
  private server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      this.received.push({ headers: request.headers as Record<string, string>, body });
      response.writeHead(this.script.shift() ?? 200).end();
    });
  });

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('job webhooks', () => {
  let t: TestServer;
  const receiver = new Receiver();

  before(async () => {
    await receiver.start();
    t = await startTestServer({
      env: { DEEPSHI_JOB_POLL_MS: '50', DEEPSHI_WEBHOOKS_ALLOW_PRIVATE: 'true', DEEPSHI_WEBHOOK_RETRY_DELAYS_MS: '50,50,50' },
    });
  });
  after(async () => {
    await t.close();
    await receiver.stop();
  });

  const submit = async (key: string, body: Record<string, unknown>) => {
    const response = await fetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ async: true, ...body }),
    });
    return { status: response.status, body: (await response.json()) as any };
  };

  it("a webhook_url needs the account's secret; an unsafe target is refused without the operator's permission", async () => {
    const account = await t.createAccount('1');
    const missing = await submit(account.key, { model: 'deepshi-sketch', prompt: 'x', webhook_url: receiver.url });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.code, 'webhook_secret_missing');
    const bad = await submit(account.key, { model: 'deepshi-sketch', prompt: 'x', webhook_url: 'ftp://example.com/x' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.param, 'webhook_url');
    assert.deepEqual(await t.server.store.listJobs(account.accountId, { limit: 5 }), []);
  });

  it('a receiver that fails twice then succeeds gets the event three times with the same webhook-id, each verified', async () => {
    const account = await t.createAccount('1');
    const created = await t.admin('POST', `/admin/v1/accounts/${account.accountId}/webhook-secret`);
    assert.match(created.secret, /^whsec_[A-Za-z0-9+/=]{40,}$/);
    // The database keeps it sealed, never in clear.
    const settings = (await t.server.store.getWebhookSettings(account.accountId))!;
    assert.ok(!settings.sealedSecret!.includes(created.secret.slice(6)));

    receiver.received.length = 0;
    receiver.script = [500, 503];
    const job = await submit(account.key, {
      model: 'deepshi-sketch',
      prompt: 'hooked',
      webhook_url: receiver.url,
      response_format: 'b64_json',
    });
    assert.equal(job.status, 202);
    await waitFor('three deliveries', () => receiver.received.length >= 3);
    const verifier = new Webhook(created.secret);
    const ids = new Set<string>();
    for (const delivery of receiver.received) {
      const payload = verifier.verify(delivery.body, delivery.headers) as any;
      ids.add(delivery.headers['webhook-id']);
      assert.equal(payload.type, 'image.job.succeeded');
      // A delivery carries the job object without its own delivery log, `webhook` (src/services/jobs/webhooks.ts).
      assert.equal('webhook' in payload.data, false);
      assertMatchesSpec('ImageJob', { ...payload.data, webhook: null }, 'webhook');
      assert.equal(payload.data.id, job.body.id);
      assert.equal(payload.data.status, 'succeeded');
      assert.match(payload.data.result.data[0].url, /\/v1\/files\/file_/);
      assert.equal(payload.data.result.data[0].b64_json, undefined, 'links, never base64');
      assert.ok(Buffer.byteLength(delivery.body) < 20 * 1024);
    }
    assert.equal(ids.size, 1, 'the same webhook-id on every attempt');
    assert.throws(() =>
      new Webhook(`whsec_${Buffer.alloc(32, 7).toString('base64')}`).verify(receiver.received[0].body, receiver.received[0].headers),
    );

    const polled = await waitFor('the attempts on the job', async () => {
      const body = (await (
        await fetch(`${t.url}/v1/images/jobs/${job.body.id}`, { headers: { authorization: `Bearer ${account.key}` } })
      ).json()) as any;
      return body.webhook?.deliveries?.[0]?.status === 'succeeded' ? body : undefined;
    });
    assert.equal(polled.webhook.url, receiver.url);
    assert.deepEqual(
      polled.webhook.deliveries[0].attempts.map((attempt: { status: number }) => attempt.status),
      [500, 503, 200],
    );
    assert.equal(polled.webhook.deliveries[0].event, 'image.job.succeeded');
  });

  it('410 stops the retries; the account default URL is used when the job names none', async () => {
    const account = await t.createAccount('1');
    await t.admin('POST', `/admin/v1/accounts/${account.accountId}/webhook-secret`);
    await t.admin('PUT', `/admin/v1/accounts/${account.accountId}/webhook`, { url: receiver.url });
    receiver.received.length = 0;
    receiver.script = [410];
    const job = await submit(account.key, { model: 'deepshi-sketch', prompt: 'gone' });
    await waitFor('the delivery to fail', async () => (await t.server.store.listWebhookDeliveries(job.body.id))[0]?.status === 'failed');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(receiver.received.length, 1, 'no retry after 410');
  });

  it('during a rotation both secrets verify the delivery', async () => {
    const account = await t.createAccount('1');
    const first = await t.admin('POST', `/admin/v1/accounts/${account.accountId}/webhook-secret`);
    const second = await t.admin('POST', `/admin/v1/accounts/${account.accountId}/webhook-secret`);
    assert.notEqual(first.secret, second.secret);
    assert.ok(second.previous_secret_valid_until > Date.now() / 1000);
    receiver.received.length = 0;
    receiver.script = [];
    const job = await submit(account.key, { model: 'deepshi-sketch', prompt: 'rotated', webhook_url: receiver.url });
    await waitFor('the delivery', () => receiver.received.length >= 1);
    const delivery = receiver.received[0];
    assert.equal(delivery.headers['webhook-signature'].split(' ').length, 2, 'two signatures during the rotation');
    assert.equal((new Webhook(first.secret).verify(delivery.body, delivery.headers) as any).data.id, job.body.id);
    assert.equal((new Webhook(second.secret).verify(delivery.body, delivery.headers) as any).data.id, job.body.id);
  });
});
