/**
 * Async jobs across instances (PostgreSQL, real server processes), kill -9 of the instance running them:
 * (a) its queued jobs are run by the other instance; (b) jobs accepted by a slow BFL and a slow fal queue (simulators) are
 * resumed by their handles (BFL's polling URL, fal's request id and links) — each simulator sees exactly one submit and
 * the account is charged once for each; (c) a job on a slow synchronous upstream fails with its hold released. Every
 * hold is resolved exactly once.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { BflSimulator } from '../simulators/bfl-simulator.ts';
import { FalSimulator } from '../simulators/fal-simulator.ts';
import { assertLedgerInvariant } from '../store/store-contract.ts';
import { Cluster, createAccount, scaleSuite, sleep, type Instance } from './cluster.ts';

scaleSuite('async jobs survive kill -9 of their instance', () => {
  const cluster = new Cluster();
  const bfl = new BflSimulator();
  const fal = new FalSimulator();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-jobs-data-'));
  let env: Record<string, string>;

  before(async () => {
    await cluster.start();
    await bfl.start();
    await fal.start();
    env = {
      DEEPSHI_SERVER_SECRET: 'jobs-crash-test-secret-0123456789abcdef',
      DEEPSHI_DATA_DIR: dataDir,
      DEEPSHI_JOB_LEASE_MS: '1500',
      DEEPSHI_JOB_POLL_MS: '100',
      DEEPSHI_SWEEP_INTERVAL_MS: '200',
      BFL_API_KEY: bfl.key,
      BFL_BASE_URL: bfl.url,
      FAL_KEY: fal.key,
      FAL_BASE_URL: fal.url,
    };
  });
  after(async () => {
    await cluster.stop();
    await bfl.close();
    await fal.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const submit = async (instance: Instance, key: string, body: Record<string, unknown>) => {
    const response = await fetch(`${instance.url}/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: 'respond-async' },
      body: JSON.stringify(body),
    });
    const json = (await response.json()) as any;
    assert.equal(response.status, 202, JSON.stringify(json));
    return json.id as string;
  };
  const waitFor = async <T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await check();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(50);
    }
  };

  it("queued jobs run elsewhere, BFL and fal jobs are resumed (one submit, one charge each), a synchronous upstream's job fails with its hold released", async () => {
    // A runs three jobs at a time, so the rest stay queued in the database.
    const a = await cluster.startInstance('A', { ...env, DEEPSHI_JOB_CONCURRENCY: '3' });
    const account = await createAccount(a, '10');
    bfl.script = { readyAfterMs: 6_000, pendingPolls: 1 };
    fal.script = { completeAfterMs: 6_000 };
    cluster.upstream.hang = true;

    const resumable = await submit(a, account.key, { model: 'flux-2-pro', prompt: 'a slow lighthouse', width: 512, height: 512 });
    const falJob = await submit(a, account.key, { model: 'seedream-4.5', prompt: 'a slow paper crane' });
    const synchronous = await submit(a, account.key, { model: 'scale-upstream', prompt: 'hang on A' });
    const queued = [];
    for (let i = 0; i < 3; i++) queued.push(await submit(a, account.key, { model: 'scale-upstream', prompt: `queued ${i}` }));

    await waitFor('the BFL and fal jobs accepted upstream and the other one calling', async () => {
      const [b, f, c] = await Promise.all([
        cluster.store.getJob(resumable),
        cluster.store.getJob(falJob),
        cluster.store.getJob(synchronous),
      ]);
      return (
        b?.upstream.state === 'accepted' &&
        f?.upstream.state === 'accepted' &&
        c?.upstream.state === 'calling' &&
        cluster.upstream.received >= 1
      );
    });
    assert.equal(bfl.submits().length, 1);
    assert.equal(fal.submits().length, 1);
    assert.equal((await cluster.store.getJob(falJob))?.status, 'in_progress', 'fal is still working on it');
    for (const id of queued) assert.equal((await cluster.store.getJob(id))?.status, 'queued');

    await a.kill('SIGKILL');
    const b = await cluster.startInstance('B', env);

    const ended = async (id: string) =>
      waitFor(`job ${id} to end`, async () => {
        const job = await cluster.store.getJob(id);
        return job && ['succeeded', 'failed', 'cancelled'].includes(job.status) ? job : undefined;
      });
    for (const id of queued) assert.equal((await ended(id)).status, 'succeeded', `queued job ${id} ran on B`);

    const resumed = await ended(resumable);
    assert.equal(resumed.status, 'succeeded', JSON.stringify(resumed.error));
    assert.equal(resumed.claimedBy !== null && resumed.claims, 2, 'claimed by A, then taken over by B');
    assert.equal(bfl.submits().length, 1, 'the simulator saw exactly one submit');
    const resumedHold = (await cluster.store.getRequest(resumed.requestId))!;
    assert.equal(resumedHold.status, 'settled');
    assert.ok(resumedHold.cost > 0n);
    const polled = (await (
      await fetch(`${b.url}/v1/images/jobs/${resumable}`, { headers: { authorization: `Bearer ${account.key}` } })
    ).json()) as any;
    assert.equal(Math.round(polled.result.usage.cost.total_cost * 1e9), Number(resumedHold.cost), 'the job reports what was charged');
    const link = new URL(polled.result.data[0].url);
    const image = await fetch(`${b.url}${link.pathname}${link.search}`);
    assert.equal(image.status, 200);
    assert.ok((await image.arrayBuffer()).byteLength > 100);

    const falResumed = await ended(falJob);
    assert.equal(falResumed.status, 'succeeded', JSON.stringify(falResumed.error));
    assert.equal(falResumed.claims, 2, 'claimed by A, then taken over by B');
    assert.equal(fal.submits().length, 1, 'the fal simulator saw exactly one submit');
    assert.ok(fal.resultFetches().length >= 1, 'B collected the result by the handle');
    const falHold = (await cluster.store.getRequest(falResumed.requestId))!;
    assert.equal(falHold.status, 'settled');
    assert.equal(falHold.cost, 40_000_000n, 'seedream-4.5 on fal: $0.04, once');
    const falPolled = (await (
      await fetch(`${b.url}/v1/images/jobs/${falJob}`, { headers: { authorization: `Bearer ${account.key}` } })
    ).json()) as any;
    assert.equal(Math.round(falPolled.result.usage.cost.total_cost * 1e9), Number(falHold.cost));
    const falLink = new URL(falPolled.result.data[0].url);
    const falImage = await fetch(`${b.url}${falLink.pathname}${falLink.search}`);
    assert.equal(falImage.status, 200);
    assert.equal(falImage.headers.get('content-type'), 'image/jpeg');

    const interrupted = await ended(synchronous);
    assert.equal(interrupted.status, 'failed');
    assert.equal(interrupted.error?.code, 'job_interrupted');
    assert.equal((await cluster.store.getRequest(interrupted.requestId))!.status, 'released');
    assert.equal(cluster.upstream.received, 1 + queued.length, 'the synchronous upstream got the interrupted job once and never again');

    // Exactly one resolution per hold, nothing held, the balance is the start minus the settled costs.
    const requests = await cluster.store.listRequests(account.accountId, 100);
    assert.equal(requests.length, 6);
    const ledger = await cluster.store.listLedger(account.accountId, 1000);
    for (const request of requests) {
      const kinds = ledger
        .filter((entry) => entry.requestId === request.id)
        .map((entry) => entry.kind)
        .sort();
      assert.deepEqual(kinds, ['hold', request.status === 'settled' ? 'settle' : 'release'].sort(), `request ${request.id}`);
    }
    const spent = requests.filter((request) => request.status === 'settled').reduce((sum, request) => sum + request.cost, 0n);
    const state = (await cluster.store.getAccount(account.accountId))!;
    assert.equal(state.held, 0n);
    assert.equal(state.balance, 10_000_000_000n - spent);
    await assertLedgerInvariant(cluster.store, account.accountId);
  });
});
