/**
 * Async jobs on real adapters against their simulators (OpenAI and BFL), generations and edits: the job succeeds, the
 * upstream got exactly one request per call, and the job's cost is exactly the ledger's settlement of its hold.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { renderSketch } from '../../src/images/sketch.ts';
import { startOpenAiSimulator, type SimulatorHandle } from '../simulators/openai-simulator.ts';
import { BflSimulator } from '../simulators/bfl-simulator.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';
import { assertLedgerInvariant } from '../store/store-contract.ts';

describe('async jobs on the OpenAI and BFL adapters', () => {
  let t: TestServer;
  let openai: SimulatorHandle;
  const bfl = new BflSimulator();

  before(async () => {
    openai = await startOpenAiSimulator({ apiKey: 'sk-sim' });
    await bfl.start();
    t = await startTestServer({
      env: {
        OPENAI_API_KEY: 'sk-sim',
        OPENAI_BASE_URL: openai.url,
        BFL_API_KEY: bfl.key,
        BFL_BASE_URL: bfl.url,
        DEEPSHI_JOB_POLL_MS: '50',
      },
    });
  });
  after(async () => {
    await t.close();
    await bfl.close();
    await openai.close();
  });

  async function runJob(key: string, endpoint: 'generations' | 'edits', fields: Record<string, string | number>): Promise<any> {
    let response: Response;
    if (endpoint === 'generations') {
      response = await fetch(`${t.url}/v1/images/generations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: 'respond-async' },
        body: JSON.stringify(fields),
      });
    } else {
      const form = new FormData();
      for (const [name, value] of Object.entries(fields)) form.set(name, String(value));
      const input = await renderSketch({ prompt: 'input', seed: 5, width: 256, height: 256, format: 'png' });
      form.append('image[]', new Blob([new Uint8Array(input)], { type: 'image/png' }), 'input.png');
      response = await fetch(`${t.url}/v1/images/edits`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, prefer: 'respond-async' },
        body: form,
      });
    }
    const submitted = (await response.json()) as any;
    assert.equal(response.status, 202, JSON.stringify(submitted));
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      const job = (await (
        await fetch(`${t.url}/v1/images/jobs/${submitted.id}`, { headers: { authorization: `Bearer ${key}` } })
      ).json()) as any;
      if (!['queued', 'in_progress'].includes(job.status)) return job;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`job ${submitted.id} did not end`);
  }

  async function assertChargedAsLedger(accountId: string, job: any): Promise<void> {
    assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
    const record = (await t.server.store.getJob(job.id))!;
    const hold = (await t.server.store.getRequest(record.requestId))!;
    assert.equal(hold.status, 'settled');
    assert.ok(hold.cost > 0n);
    assert.equal(Math.round(job.result.usage.cost.total_cost * 1e9), Number(hold.cost));
    const entries = (await t.server.store.listLedger(accountId, 100)).filter((entry) => entry.requestId === record.requestId);
    assert.deepEqual(entries.map((entry) => entry.kind).sort(), ['hold', 'settle']);
    await assertLedgerInvariant(t.server.store, accountId);
    const link = new URL(job.result.data[0].url);
    assert.equal((await fetch(`${t.url}${link.pathname}${link.search}`)).status, 200);
  }

  it('gpt-image-1.5: generation and edit as jobs, one upstream request each, charged as the ledger says', async () => {
    const account = await t.createAccount('5');
    const before = openai.requests.length;
    const generated = await runJob(account.key, 'generations', {
      model: 'gpt-image-1.5',
      prompt: 'a teapot',
      quality: 'low',
      size: '1024x1024',
    });
    await assertChargedAsLedger(account.accountId, generated);
    assert.ok(generated.result.usage.input_tokens > 0, 'token usage from the upstream');
    const edited = await runJob(account.key, 'edits', {
      model: 'gpt-image-1.5',
      prompt: 'make it blue',
      quality: 'low',
      size: '1024x1024',
    });
    await assertChargedAsLedger(account.accountId, edited);
    assert.equal(openai.requests.length - before, 2);
  });

  it('flux-2-pro: generation and edit as jobs, one submit each, charged as the ledger says', async () => {
    const account = await t.createAccount('5');
    bfl.reset();
    const generated = await runJob(account.key, 'generations', { model: 'flux-2-pro', prompt: 'a lighthouse', width: 512, height: 512 });
    await assertChargedAsLedger(account.accountId, generated);
    const edited = await runJob(account.key, 'edits', { model: 'flux-2-pro', prompt: 'at night', width: 512, height: 512 });
    await assertChargedAsLedger(account.accountId, edited);
    assert.equal(bfl.submits().length, 2);
  });
});
