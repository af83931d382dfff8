/**
 * Async image jobs on one instance (SQLite): submit → poll → succeeded for generations and edits, the charge equal to
 * the ledger's, cancel, Idempotency-Key, ownership, max_queued_jobs, the per-model cap that queues instead of refusing,
 * and the events stream. Hosted results (signed links, expiry, the TTL sweeper) on the filesystem and S3:
 * jobs-results.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { parse as parseYaml } from 'yaml';
import { renderSketch } from '../../src/images/sketch.ts';
import type { ImageAdapter, ImageCallContext, ImageGenerationResult, NormalizedImageRequest } from '../../src/providers/types.ts';
import { assertDocumentedResponse } from '../helpers/openapi-responses.ts';
import { assertMatchesSpec } from '../helpers/openapi-validator.ts';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../helpers/test-server.ts';
import { assertLedgerInvariant } from '../store/store-contract.ts';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

/** An upstream (test code) that holds each call until released or `delayMs` passes, and measures its concurrency. */
class GatedAdapter implements ImageAdapter {
  readonly provider = 'gated';
  readonly capabilities = {
    maxImagesPerCall: 4,
    supportsSeed: true,
    supportsPartialImages: false,
    supportsEdits: true,
    nativeFormats: ['png' as const],
  };
  delayMs = 0;
  hold = false;
  calls = 0;
  inFlight = 0;
  peak = 0;
  private waiting: Array<() => void> = [];

  isConfigured(): boolean {
    return true;
  }

  releaseAll(): void {
    this.hold = false;
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  async generate(request: NormalizedImageRequest, _route: unknown, context: ImageCallContext): Promise<ImageGenerationResult> {
    this.calls++;
    this.inFlight++;
    this.peak = Math.max(this.peak, this.inFlight);
    try {
      await new Promise<void>((resolve, reject) => {
        if (this.hold) this.waiting.push(resolve);
        else setTimeout(resolve, this.delayMs);
        context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true });
      });
      const base64 = (await renderSketch({ prompt: request.prompt, seed: 1, width: 64, height: 64, format: 'png' })).toString('base64');
      return { images: Array.from({ length: request.n }, () => ({ base64, mediaType: 'image/png' })), warnings: [] };
    } finally {
      this.inFlight--;
    }
  }
}

function jobsCatalog(): string {
  const catalog = parseYaml(fs.readFileSync(new URL('../../catalog/models.yaml', import.meta.url), 'utf8'));
  const sketch = catalog.models.find((model: { id: string }) => model.id === 'deepshi-sketch');
  catalog.models.push({
    ...structuredClone(sketch),
    id: 'gated-image',
    name: 'Gated test upstream',
    streaming: false,
    max_partial_images: 0,
    pricing: { unit: 'image', base: '0.01' },
    max_concurrency: 2,
    routes: [{ provider: 'gated' }],
  });
  return JSON.stringify(catalog);
}

async function call(t: TestServer, key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${t.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  let json: any = text;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  // Every answer here, job or error, must be one the served /openapi.json documents (path, status, content type, body).
  assertDocumentedResponse(method, path, response.status, response.headers.get('content-type'), json);
  return { status: response.status, headers: response.headers, body: json };
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function waitForStatus(t: TestServer, key: string, id: string, statuses: string[]): Promise<any> {
  return waitFor(`job ${id} to reach ${statuses.join('/')}`, async () => {
    const got = await call(t, key, 'GET', `/v1/images/jobs/${id}`);
    assert.equal(got.status, 200);
    return statuses.includes(got.body.status) ? got.body : undefined;
  });
}

describe('async image jobs (SQLite, one instance)', () => {
  let t: TestServer;
  const gated = new GatedAdapter();

  before(async () => {
    t = await startTestServer({
      catalog: jobsCatalog(),
      adapters: [gated],
      env: { DEEPSHI_JOB_POLL_MS: '50', DEEPSHI_SWEEP_INTERVAL_MS: '100' },
    });
  });
  after(() => t.close());

  it("Prefer: respond-async → 202 with Location and the job; polling reaches succeeded; the charge is the ledger's", async () => {
    const account = await t.createAccount('1');
    const submitted = await call(
      t,
      account.key,
      'POST',
      '/v1/images/generations',
      { model: 'deepshi-sketch', prompt: 'a red fox', size: '256x256', response_format: 'url' },
      { prefer: 'respond-async' },
    );
    assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
    assert.match(submitted.body.id, /^imgjob_/);
    assert.equal(submitted.headers.get('location'), `/v1/images/jobs/${submitted.body.id}`);
    assert.equal(submitted.body.object, 'image.job');
    assert.ok(['queued', 'in_progress', 'succeeded'].includes(submitted.body.status));
    assert.equal(submitted.body.model, 'deepshi-sketch');
    assert.equal(submitted.body.endpoint, '/v1/images/generations');

    const done = await waitForStatus(t, account.key, submitted.body.id, ['succeeded', 'failed']);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
    assert.equal(done.error, null);
    assert.ok(done.started_at >= done.created_at && done.completed_at >= done.started_at);
    assert.ok(done.expires_at > done.completed_at);
    const result = done.result;
    assert.equal(result.model, 'deepshi-sketch');
    assert.equal(result.size, '256x256');
    assert.equal(result.data.length, 1);
    assert.match(result.data[0].url, /\/v1\/files\/file_\w+\/content\?expires=\d+&signature=[\w-]+$/);
    assert.equal(result.data[0].b64_json, undefined, 'response_format url: links only');

    // The job's cost is exactly the ledger's settlement of its hold, and the balance moved by that much.
    const job = (await t.server.store.getJob(done.id))!;
    const hold = (await t.server.store.getRequest(job.requestId))!;
    assert.equal(hold.status, 'settled');
    assert.equal(Math.round(result.usage.cost.total_cost * 1e9), Number(hold.cost));
    assert.ok(hold.cost > 0n);
    const ledger = await t.server.store.listLedger(account.accountId, 100);
    assert.deepEqual(
      ledger
        .filter((entry) => entry.requestId === job.requestId)
        .map((entry) => entry.kind)
        .sort(),
      ['hold', 'settle'],
    );
    const state = (await t.server.store.getAccount(account.accountId))!;
    assert.equal(state.held, 0n);
    assert.equal(state.balance, 1_000_000_000n - hold.cost);
    await assertLedgerInvariant(t.server.store, account.accountId);

    // Served by its signed link (the link rules: jobs-results.test.ts).
    const link = new URL(result.data[0].url);
    const image = await fetch(`${t.url}${link.pathname}${link.search}`);
    assert.equal(image.status, 200);
    assert.deepEqual(Buffer.from(await image.arrayBuffer()).subarray(0, 4), PNG_SIGNATURE);
  });

  it('"async": true on an edit (multipart) runs the edit as a job, and b64_json callers get the image inline too', async () => {
    const account = await t.createAccount('1');
    const input = await renderSketch({ prompt: 'input', seed: 3, width: 64, height: 64, format: 'png' });
    const form = new FormData();
    form.set('model', 'deepshi-sketch');
    form.set('prompt', 'add a hat');
    form.set('async', 'true');
    form.set('response_format', 'b64_json');
    form.append('image[]', new Blob([new Uint8Array(input)], { type: 'image/png' }), 'in.png');
    const response = await fetch(`${t.url}/v1/images/edits`, {
      method: 'POST',
      headers: { authorization: `Bearer ${account.key}` },
      body: form,
    });
    const submitted = (await response.json()) as any;
    assert.equal(response.status, 202, JSON.stringify(submitted));
    assert.equal(submitted.endpoint, '/v1/images/edits');
    const done = await waitForStatus(t, account.key, submitted.id, ['succeeded', 'failed']);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
    const inline = Buffer.from(done.result.data[0].b64_json, 'base64');
    assert.deepEqual(inline.subarray(0, 4), PNG_SIGNATURE);
    const link = new URL(done.result.data[0].url);
    assert.deepEqual(Buffer.from(await (await fetch(`${t.url}${link.pathname}${link.search}`)).arrayBuffer()), inline);
    const job = (await t.server.store.getJob(done.id))!;
    assert.equal((await t.server.store.getRequest(job.requestId))!.status, 'settled');
    await assertLedgerInvariant(t.server.store, account.accountId);
  });

  it("validation, limits and credit stay synchronous and unbilled; another account's job is a 404", async () => {
    const account = await t.createAccount('0.001');
    const missing = await call(t, account.key, 'POST', '/v1/images/generations', { model: 'deepshi-sketch', async: true });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.param, 'prompt');
    const badAsync = await call(t, account.key, 'POST', '/v1/images/generations', { model: 'deepshi-sketch', prompt: 'x', async: 'yes' });
    assert.equal(badAsync.status, 400);
    assert.equal(badAsync.body.error.param, 'async');
    const streamed = await call(t, account.key, 'POST', '/v1/images/generations', {
      model: 'deepshi-sketch',
      prompt: 'x',
      async: true,
      stream: true,
    });
    assert.equal(streamed.status, 400);
    const broke = await call(t, account.key, 'POST', '/v1/images/generations', { model: 'gated-image', prompt: 'x', n: 4, async: true });
    assert.equal(broke.status, 402);
    assert.deepEqual(await t.server.store.listJobs(account.accountId, { limit: 10 }), []);
    assert.equal((await t.server.store.getAccount(account.accountId))!.held, 0n);

    const owner = await t.createAccount('1');
    const job = await call(t, owner.key, 'POST', '/v1/images/generations', { model: 'deepshi-sketch', prompt: 'mine', async: true });
    assert.equal(job.status, 202);
    assert.equal((await call(t, account.key, 'GET', `/v1/images/jobs/${job.body.id}`)).status, 404);
    assert.equal((await call(t, account.key, 'POST', `/v1/images/jobs/${job.body.id}/cancel`)).status, 404);
    assert.equal((await call(t, account.key, 'GET', '/v1/images/jobs')).body.data.length, 0);
    await waitForStatus(t, owner.key, job.body.id, ['succeeded']);
  });

  it('an Idempotency-Key returns the same job, charged once', async () => {
    const account = await t.createAccount('1');
    const key = randomUUID();
    const body = { model: 'deepshi-sketch', prompt: 'once', async: true };
    const first = await call(t, account.key, 'POST', '/v1/images/generations', body, { 'idempotency-key': key });
    const second = await call(t, account.key, 'POST', '/v1/images/generations', body, { 'idempotency-key': key });
    assert.equal(first.status, 202);
    assert.equal(second.status, 202);
    assert.equal(second.body.id, first.body.id);
    assert.equal(second.headers.get('idempotent-replayed'), 'true');
    await waitForStatus(t, account.key, first.body.id, ['succeeded']);
    assert.equal((await t.server.store.listJobs(account.accountId, { limit: 10 })).length, 1);
    const holds = await t.server.store.listRequests(account.accountId, 10);
    assert.equal(holds.length, 1);
  });

  it('cancel: a queued job ends cancelled with its hold released; 100 jobs with a per-model cap of 2 never run more than 2 at once and all complete', async () => {
    const account = await t.createAccount('10');
    gated.hold = true;
    gated.peak = 0;
    const submitted = [];
    for (let i = 0; i < 100; i++) {
      const response = await call(
        t,
        account.key,
        'POST',
        '/v1/images/generations',
        { model: 'gated-image', prompt: `job ${i}`, size: '64x64' },
        { prefer: 'respond-async' },
      );
      assert.equal(response.status, 202, JSON.stringify(response.body));
      submitted.push(response.body.id as string);
    }
    // The key has no max_queued_jobs of its own: the server default (DEEPSHI_DEFAULT_MAX_QUEUED_JOBS, 100) applies.
    const over = await call(t, account.key, 'POST', '/v1/images/generations', {
      model: 'gated-image',
      prompt: 'one too many',
      async: true,
    });
    assert.equal(over.status, 429);
    assert.match(over.body.error.message, /100 jobs queued or running \(max_queued_jobs\)/);
    await waitFor('two jobs at the upstream', async () => gated.inFlight === 2);
    // The last one is still queued (two are running, held at the upstream): cancelling it ends it at once.
    const cancelled = await call(t, account.key, 'POST', `/v1/images/jobs/${submitted[99]}/cancel`);
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.body.status, 'cancelled');
    assert.equal(cancelled.body.error.code, 'cancelled');
    const cancelledHold = (await t.server.store.getRequest((await t.server.store.getJob(submitted[99]))!.requestId))!;
    assert.equal(cancelledHold.status, 'released');
    const listedQueued = await call(t, account.key, 'GET', '/v1/images/jobs?status=queued&limit=100');
    assert.ok(listedQueued.body.data.length >= 90, `most jobs wait in the queue (${listedQueued.body.data.length})`);

    gated.delayMs = 5;
    gated.releaseAll();
    for (const id of submitted.slice(0, 99)) {
      const done = await waitForStatus(t, account.key, id, ['succeeded', 'failed', 'cancelled']);
      assert.equal(done.status, 'succeeded', `${id}: ${JSON.stringify(done.error)}`);
    }
    assert.equal(gated.peak, 2, 'never more than the cap at the upstream');
    const state = (await t.server.store.getAccount(account.accountId))!;
    assert.equal(state.held, 0n);
    assert.equal(state.balance, 10_000_000_000n - 99n * 10_000_000n, '99 images at $0.01, the cancelled one free');
    await assertLedgerInvariant(t.server.store, account.accountId);

    const page1 = await call(t, account.key, 'GET', '/v1/images/jobs?limit=60');
    assert.equal(page1.body.data.length, 60);
    assert.equal(page1.body.has_more, true);
    const page2 = await call(t, account.key, 'GET', `/v1/images/jobs?limit=60&after=${page1.body.last_id}`);
    assert.equal(page2.body.data.length, 40);
    assert.equal(page2.body.has_more, false);
    assert.equal(new Set([...page1.body.data, ...page2.body.data].map((job: { id: string }) => job.id)).size, 100);
  });

  it("max_queued_jobs: the key's own quota (admin route) bounds its queued and running jobs; one more is a 429 with Retry-After", async () => {
    const account = await t.createAccount('1');
    const other = await t.admin('POST', '/admin/v1/keys', { account_id: account.accountId, name: 'other' });
    const limitsRoute = `/admin/v1/keys/${account.keyId}/limits`;
    const bad = await call(t, ADMIN_TOKEN, 'POST', limitsRoute, { max_queued_jobs: -1 });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.param, 'max_queued_jobs');
    const set = await call(t, ADMIN_TOKEN, 'POST', limitsRoute, { max_queued_jobs: 3 });
    assert.equal(set.status, 200);
    assert.equal(set.body.limits.max_queued_jobs, 3);
    assert.equal(set.body.limits.requests_per_minute, null, 'the other limits are unchanged');

    gated.hold = true;
    const client = t.client(account.key);
    const submit = (prompt: string) =>
      client.post<any>('/images/generations', { body: { model: 'gated-image', prompt, size: '64x64', async: true } });
    const jobs = [await submit('one'), await submit('two'), await submit('three')];
    // Two run (the model's cap), one waits: running and queued both count.
    await waitFor('two jobs at the upstream', async () => gated.inFlight === 2);
    const refused = await submit('four').then(
      () => assert.fail('a fourth job was accepted'),
      (error: unknown) => error,
    );
    assert.ok(refused instanceof OpenAI.APIError, String(refused));
    assert.equal(refused.status, 429);
    assert.equal(refused.code, 'rate_limit_exceeded');
    assert.equal(refused.type, 'rate_limit_error');
    assert.match(refused.message, /already has 3 jobs queued or running \(max_queued_jobs\)\. Wait for some to finish, or cancel some\./);
    assert.ok(Number(refused.headers?.get('retry-after')) >= 1, 'Retry-After says when to try again');
    assert.equal((await t.server.store.listJobs(account.accountId, { limit: 10 })).length, 3, 'no job for the refusal');
    assert.equal((await t.server.store.listRequests(account.accountId, 10)).length, 3, 'and no hold');
    // The quota is the key's: another key of the same account is not bound by it.
    const others = await t
      .client(other.key)
      .post<any>('/images/generations', { body: { model: 'gated-image', prompt: 'elsewhere', async: true } });
    assert.equal(others.status, 'queued');

    // Cancelling the queued one frees a place.
    const queued = await waitFor('a queued job of the three', async () => {
      const states = await Promise.all(jobs.map((job) => call(t, account.key, 'GET', `/v1/images/jobs/${job.id}`)));
      return states.find((state) => state.body.status === 'queued')?.body;
    });
    assert.equal((await call(t, account.key, 'POST', `/v1/images/jobs/${queued.id}/cancel`)).body.status, 'cancelled');
    const fourth = await submit('four, later');
    assert.equal(fourth.object, 'image.job');

    const cleared = await call(t, ADMIN_TOKEN, 'POST', limitsRoute, { max_queued_jobs: null });
    assert.equal(cleared.body.limits.max_queued_jobs, null, 'null: back to the server default');
    gated.releaseAll();
    for (const job of [...jobs.filter((job) => job.id !== queued.id), fourth]) {
      assert.equal((await waitForStatus(t, account.key, job.id, ['succeeded', 'failed'])).status, 'succeeded');
    }
    assert.equal((await waitForStatus(t, other.key, others.id, ['succeeded', 'failed'])).status, 'succeeded');
    assert.equal((await t.server.store.getAccount(account.accountId))!.held, 0n);
    await assertLedgerInvariant(t.server.store, account.accountId);
  });

  it('cancelling a running job stops it: cancelled, hold released, nothing charged', async () => {
    const account = await t.createAccount('1');
    gated.hold = true;
    const job = await call(t, account.key, 'POST', '/v1/images/generations', { model: 'gated-image', prompt: 'long', async: true });
    await waitForStatus(t, account.key, job.body.id, ['in_progress']);
    await waitFor('the call to reach the upstream', async () => gated.inFlight >= 1);
    await call(t, account.key, 'POST', `/v1/images/jobs/${job.body.id}/cancel`);
    const done = await waitForStatus(t, account.key, job.body.id, ['cancelled', 'succeeded', 'failed']);
    gated.releaseAll();
    assert.equal(done.status, 'cancelled');
    const state = (await t.server.store.getAccount(account.accountId))!;
    assert.deepEqual([state.balance, state.held], [1_000_000_000n, 0n]);
  });

  it('events: a late joiner gets the current state first, then the changes until the job ends', async () => {
    const account = await t.createAccount('1');
    gated.hold = true;
    const job = await call(t, account.key, 'POST', '/v1/images/generations', { model: 'gated-image', prompt: 'watched', async: true });
    await waitForStatus(t, account.key, job.body.id, ['in_progress']);
    const response = await fetch(`${t.url}/v1/images/jobs/${job.body.id}/events`, { headers: { authorization: `Bearer ${account.key}` } });
    assert.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const reader = response.body!.getReader();
    let text = '';
    const decoder = new TextDecoder();
    const readUntil = async (marker: string) => {
      while (!text.includes(marker)) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
    };
    await readUntil('event: image.job.in_progress');
    assert.ok(text.startsWith('event: image.job.in_progress'), 'the current state comes first');
    gated.releaseAll();
    await readUntil('event: image.job.succeeded');
    const { done } = await reader.read();
    assert.equal(done, true, 'the stream ends with the job');
    for (const data of text.matchAll(/^data: (.*)$/gm)) assertMatchesSpec('ImageJobEvent', JSON.parse(data[1]), 'job events');
    const final = JSON.parse(/event: image\.job\.succeeded\ndata: (.*)\n/.exec(text)![1]);
    assert.equal(final.data.status, 'succeeded');
    assert.ok(final.data.result.data[0].url);
    // Joining after the end: the final state at once, then the end.
    const late = await (
      await fetch(`${t.url}/v1/images/jobs/${job.body.id}/events`, { headers: { authorization: `Bearer ${account.key}` } })
    ).text();
    assert.match(late, /^event: image\.job\.succeeded\n/);
  });
});
