/**
 * The JobStore part of the Store contract (src/store/jobs.ts), run by test/store/store-contract.ts on SQLite and
 * PostgreSQL: jobs and their leases, hosted files, webhook deliveries, account webhook settings.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Account, Store } from '../../src/store/types.ts';
import type { NewJob } from '../../src/store/jobs.ts';

export function jobStoreScenarios(getStore: () => Store, account: (credits: bigint) => Promise<Account>): void {
  const uid = (prefix: string) => `${prefix}_${randomUUID().replace(/-/g, '')}`;
  // A model name unique to each scenario keeps claims from picking up other scenarios' jobs.
  const newJob = (accountId: string, model: string, extra: Partial<NewJob> = {}): NewJob => ({
    id: uid('imgjob'),
    accountId,
    keyId: 'key_jobs',
    requestId: uid('req'),
    model,
    endpoint: 'images.generations',
    request: { prompt: 'a fox', n: 1 },
    inputFiles: [],
    webhookUrl: null,
    idempotencyKey: null,
    createdAt: Date.now(),
    ...extra,
  });
  /** Claims only jobs of `model` (every other model in the database is excluded by claiming until none is left). */
  async function claimOf(model: string, owner: string, now: number, leaseUntil: number) {
    const store = getStore();
    const skipped: string[] = [];
    for (let i = 0; i < 50; i++) {
      const job = await store.claimJob(owner, now, leaseUntil, skipped.length ? [...new Set(skipped)] : []);
      if (!job) return undefined;
      if (job.model === model) return job;
      // Someone else's job: give it back untouched and exclude its model from the next claim.
      await store.unclaimJob(job.id, owner, 0);
      skipped.push(job.model);
    }
    return undefined;
  }

  describe('jobs', () => {
    it('creates a queued job and reads it back with every field', async () => {
      const owner = await account(0n);
      const job = newJob(owner.id, uid('model'), {
        webhookUrl: 'https://example.com/hook',
        idempotencyKey: 'idem-1',
        inputFiles: ['file_a'],
      });
      const created = await getStore().createJob(job);
      assert.equal(created.status, 'queued');
      assert.deepEqual(created.request, job.request);
      assert.deepEqual(created.inputFiles, ['file_a']);
      assert.equal(created.webhookUrl, 'https://example.com/hook');
      assert.equal(created.idempotencyKey, 'idem-1');
      assert.deepEqual(created.upstream, { state: 'none' });
      assert.equal(created.claimedBy, null);
      assert.equal(created.cancelRequested, false);
      assert.deepEqual(await getStore().getJob(job.id), created);
      assert.equal(await getStore().getJob('imgjob_missing'), undefined);
    });

    it('a job is claimed by one owner at a time; a lapsed lease makes it claimable again', async () => {
      const store = getStore();
      const owner = await account(0n);
      const model = uid('model');
      const job = await store.createJob(newJob(owner.id, model));
      const now = Date.now();
      const claimed = await claimOf(model, 'instance-a', now, now + 1000);
      assert.equal(claimed?.id, job.id);
      assert.equal(claimed?.claimedBy, 'instance-a');
      assert.equal(claimed?.claims, 1);
      assert.equal(await claimOf(model, 'instance-b', now + 10, now + 2000), undefined, 'held by a live lease');
      // A worker that no longer holds the job cannot change it.
      assert.equal(await store.updateHeldJob(job.id, 'instance-b', { status: 'in_progress' }), false);
      assert.equal(
        await store.updateHeldJob(job.id, 'instance-a', { status: 'in_progress', startedAt: now, upstream: { state: 'calling' } }),
        true,
      );
      const taken = await claimOf(model, 'instance-b', now + 1001, now + 5000);
      assert.equal(taken?.id, job.id, 'the lease lapsed: another instance takes it over');
      assert.equal(taken?.status, 'in_progress');
      assert.deepEqual(taken?.upstream, { state: 'calling' });
      assert.equal(taken?.claims, 2);
      assert.equal(await store.updateHeldJob(job.id, 'instance-a', { status: 'failed' }), false, 'the old owner lost it');
    });

    it('concurrent claims of one job: exactly one wins', async () => {
      const store = getStore();
      const owner = await account(0n);
      const model = uid('model');
      await store.createJob(newJob(owner.id, model));
      const others = (await store.jobStats()).byStatus; // other scenarios' open jobs may exist; claims exclude them by model below
      void others;
      const now = Date.now();
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => claimOf(model, `owner-${i}`, now, now + 60_000)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    it('renews leases, unclaims, excludes models, and ends jobs once', async () => {
      const store = getStore();
      const owner = await account(0n);
      const model = uid('model');
      const job = await store.createJob(newJob(owner.id, model));
      const now = Date.now();
      assert.equal((await claimOf(model, 'w', now, now + 100))?.id, job.id);
      const renewed = await store.renewJobLeases('w', [job.id, 'imgjob_other'], now + 10_000);
      assert.deepEqual(
        renewed.map((record) => [record.id, record.leaseUntil]),
        [[job.id, now + 10_000]],
      );
      assert.equal(await claimOf(model, 'x', now + 500, now + 600), undefined, 'renewed lease still live');
      assert.equal(await store.unclaimJob(job.id, 'w', now + 5_000), true);
      assert.equal(await claimOf(model, 'x', now + 1_000, now + 2_000), undefined, 'not before run_after');
      assert.equal(
        await store.claimJob('x', now + 6_000, now + 7_000, [model]).then((found) => found?.model === model),
        false,
        'excluded model',
      );
      assert.equal((await claimOf(model, 'x', now + 6_000, now + 7_000))?.id, job.id);
      assert.equal(
        await store.updateHeldJob(job.id, 'x', { status: 'succeeded', completedAt: now, result: { data: [] }, expiresAt: now + 1 }),
        true,
      );
      assert.equal(await store.updateHeldJob(job.id, 'x', { status: 'failed' }), false, 'an ended job never changes again');
      const done = await store.getJob(job.id);
      assert.equal(done?.status, 'succeeded');
      assert.deepEqual(done?.result, { data: [] });
      assert.equal(await claimOf(model, 'y', now + 1e9, now + 2e9), undefined, 'ended jobs are never claimed');
      assert.equal(await store.renewJobLeases('x', [job.id], now + 1e9).then((list) => list.length), 0);
    });

    it('SIGTERM hand-back: only queued jobs go back; cancel ends a free queued job at once, a held one on request', async () => {
      const store = getStore();
      const owner = await account(0n);
      const model = uid('model');
      const queued = await store.createJob(newJob(owner.id, model));
      const running = await store.createJob(newJob(owner.id, model, { createdAt: Date.now() + 1 }));
      const now = Date.now();
      await claimOf(model, 'w', now, now + 60_000);
      await claimOf(model, 'w', now, now + 60_000);
      await store.updateHeldJob(running.id, 'w', { status: 'in_progress', startedAt: now });
      assert.equal(await store.unclaimAllJobs('w'), 1);
      assert.equal((await store.getJob(queued.id))?.claimedBy, null);
      assert.equal(await store.cancelJob(queued.id, 'acct_other', now), undefined, "another account's job");
      assert.equal(await store.cancelJob(queued.id, owner.id, now), 'cancelled');
      assert.equal((await store.getJob(queued.id))?.status, 'cancelled');
      assert.equal((await store.getJob(queued.id))?.error?.code, 'cancelled');
      assert.equal(await store.cancelJob(queued.id, owner.id, now), undefined, 'already ended');
      assert.equal(await store.cancelJob(running.id, owner.id, now), 'requested');
      const requested = await store.getJob(running.id);
      assert.equal(requested?.status, 'in_progress');
      assert.equal(requested?.cancelRequested, true);
    });

    it("lists an account's jobs newest first with status filter and paging; counts a key's open jobs", async () => {
      const store = getStore();
      const owner = await account(0n);
      const keyId = uid('key');
      const base = Date.now();
      const jobs = [];
      for (let i = 0; i < 5; i++) jobs.push(await store.createJob(newJob(owner.id, uid('model'), { keyId, createdAt: base + i })));
      await store.cancelJob(jobs[1].id, owner.id, base);
      const all = await store.listJobs(owner.id, { limit: 10 });
      assert.deepEqual(
        all.map((job) => job.id),
        jobs.map((job) => job.id).reverse(),
      );
      const page = await store.listJobs(owner.id, { limit: 2, after: jobs[3].id });
      assert.deepEqual(
        page.map((job) => job.id),
        [jobs[2].id, jobs[1].id],
      );
      assert.deepEqual(
        (await store.listJobs(owner.id, { limit: 10, status: 'cancelled' })).map((job) => job.id),
        [jobs[1].id],
      );
      assert.equal(await store.countOpenJobs(keyId), 4);
    });

    it('finds ended jobs whose hold is still held', async () => {
      const store = getStore();
      const owner = await account(1_000n);
      const job = newJob(owner.id, uid('model'));
      await store.reserveCredits({
        requestId: job.requestId,
        accountId: owner.id,
        keyId: 'k',
        model: job.model,
        endpoint: 'images.generations',
        amount: 100n,
        expiresAt: Date.now() + 60_000,
      });
      await store.createJob(job);
      assert.ok(!(await store.listEndedJobsWithHolds(1000)).some((found) => found.id === job.id), 'an open job keeps its hold');
      await store.cancelJob(job.id, owner.id, Date.now());
      assert.ok((await store.listEndedJobsWithHolds(1000)).some((found) => found.id === job.id));
      await store.releaseReservation(job.requestId, 'cancelled');
      assert.ok(!(await store.listEndedJobsWithHolds(1000)).some((found) => found.id === job.id));
    });
  });

  describe('hosted files', () => {
    it('records files, lists the expired live ones, and marks them deleted once', async () => {
      const store = getStore();
      const owner = await account(0n);
      const now = Date.now();
      const fresh = await store.createFile({
        id: uid('file'),
        accountId: owner.id,
        jobId: 'imgjob_x',
        kind: 'result',
        mediaType: 'image/png',
        bytes: 123,
        storageKey: 'a/b.png',
        createdAt: now,
        expiresAt: now + 60_000,
      });
      assert.equal(fresh.deletedAt, null);
      const input = await store.createFile({ ...fresh, id: uid('file'), kind: 'input', createdAt: now + 1 });
      assert.deepEqual((await store.listJobFiles('imgjob_x', 'input')).map((file) => file.id).slice(-1), [input.id]);
      assert.ok((await store.listJobFiles('imgjob_x', 'result')).some((file) => file.id === fresh.id));
      assert.deepEqual(await store.getFile(fresh.id), fresh);
      const old = await store.createFile({ ...fresh, id: uid('file'), expiresAt: now - 1 });
      const expired = await store.listExpiredFiles(now, 10_000);
      assert.ok(expired.some((file) => file.id === old.id));
      assert.ok(!expired.some((file) => file.id === fresh.id));
      assert.equal(await store.markFileDeleted(old.id, now), true);
      assert.equal(await store.markFileDeleted(old.id, now), false);
      assert.equal((await store.getFile(old.id))?.deletedAt, now);
      assert.ok(!(await store.listExpiredFiles(now, 10_000)).some((file) => file.id === old.id));
    });
  });

  describe('webhook deliveries', () => {
    it('claims due deliveries once, records attempts in order, and stops when done', async () => {
      const store = getStore();
      const owner = await account(0n);
      const jobId = uid('imgjob');
      const now = Date.now();
      const delivery = await store.createWebhookDelivery({
        id: uid('msg'),
        jobId,
        accountId: owner.id,
        url: 'https://example.com/h',
        eventType: 'image.job.succeeded',
        payload: '{"a":1}',
        nextAttemptAt: now,
        createdAt: now,
      });
      assert.equal(delivery.status, 'pending');
      assert.deepEqual(delivery.attempts, []);
      const first = (await store.claimDueWebhookDeliveries('a', now, now + 1000, 1000)).filter((found) => found.id === delivery.id);
      assert.equal(first.length, 1);
      assert.equal(
        (await store.claimDueWebhookDeliveries('b', now, now + 1000, 1000)).some((found) => found.id === delivery.id),
        false,
      );
      assert.equal(
        await store.recordWebhookAttempt(delivery.id, 'b', { at: now, status: 500 }, { status: 'pending', nextAttemptAt: now + 10 }),
        false,
      );
      assert.equal(
        await store.recordWebhookAttempt(delivery.id, 'a', { at: now, status: 500 }, { status: 'pending', nextAttemptAt: now + 10 }),
        true,
      );
      assert.equal(
        (await store.claimDueWebhookDeliveries('b', now + 5, now + 1000, 1000)).some((found) => found.id === delivery.id),
        false,
        'not due yet',
      );
      assert.equal(
        (await store.claimDueWebhookDeliveries('b', now + 10, now + 1000, 1000)).some((found) => found.id === delivery.id),
        true,
      );
      assert.equal(
        await store.recordWebhookAttempt(
          delivery.id,
          'b',
          { at: now + 10, status: null, error: 'refused' },
          { status: 'succeeded', nextAttemptAt: null },
        ),
        true,
      );
      const [listed] = await store.listWebhookDeliveries(jobId);
      assert.equal(listed.status, 'succeeded');
      assert.deepEqual(listed.attempts, [
        { at: now, status: 500 },
        { at: now + 10, status: null, error: 'refused' },
      ]);
      assert.equal(listed.payload, '{"a":1}');
      assert.equal(
        (await store.claimDueWebhookDeliveries('c', now + 1e9, now + 2e9, 1000)).some((found) => found.id === delivery.id),
        false,
      );
      assert.ok((await store.webhookDeliveryStats()).succeeded >= 1);
    });

    it("keeps an account's sealed secret, the previous one during a rotation, and its default URL", async () => {
      const store = getStore();
      const owner = await account(0n);
      assert.equal(await store.getWebhookSettings(owner.id), undefined);
      const first = await store.setWebhookSecret(owner.id, 'sealed-1', null, null, 1);
      assert.deepEqual([first.sealedSecret, first.sealedPreviousSecret, first.defaultUrl], ['sealed-1', null, null]);
      await store.setWebhookDefaultUrl(owner.id, 'https://example.com/d', 2);
      const rotated = await store.setWebhookSecret(owner.id, 'sealed-2', 'sealed-1', 99, 3);
      assert.deepEqual(
        [rotated.sealedSecret, rotated.sealedPreviousSecret, rotated.previousUntil, rotated.defaultUrl, rotated.updatedAt],
        ['sealed-2', 'sealed-1', 99, 'https://example.com/d', 3],
      );
    });
  });
}
