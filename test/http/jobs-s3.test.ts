/**
 * Hosted results in an S3-compatible bucket (s3rver, a real S3 server started here): the same result behaviour as the
 * filesystem — a job's images are objects in the bucket, the signed link serves their bytes without a key, a tampered
 * link is refused, and after the TTL the objects are deleted and the links stop working.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { S3ResultStorage } from '../../src/store/results/s3-storage.ts';
import { S3_CREDENTIALS, startS3 } from '../helpers/s3.ts';
import { startTestServer, type TestServer, validatingFetch } from '../helpers/test-server.ts';

describe('async job results in S3', () => {
  let t: TestServer;
  let s3: Awaited<ReturnType<typeof startS3>>;
  let bucket: S3ResultStorage;

  before(async () => {
    s3 = await startS3('deepshi-results');
    bucket = new S3ResultStorage({
      bucket: 'deepshi-results',
      endpoint: s3.endpoint,
      region: 'us-east-1',
      ...S3_CREDENTIALS,
      forcePathStyle: true,
    });
    t = await startTestServer({
      env: {
        DEEPSHI_JOB_POLL_MS: '50',
        DEEPSHI_SWEEP_INTERVAL_MS: '100',
        DEEPSHI_RESULT_TTL_HOURS: '0.0006',
        DEEPSHI_RESULTS_S3_BUCKET: 'deepshi-results',
        DEEPSHI_RESULTS_S3_ENDPOINT: s3.endpoint,
        DEEPSHI_RESULTS_S3_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
        DEEPSHI_RESULTS_S3_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
      },
    });
  });
  after(async () => {
    await t.close();
    bucket.close();
    await s3.close();
  });

  it('submit → succeeded with its image in the bucket; signed link without a key; tampered refused; gone after the TTL', async () => {
    const account = await t.createAccount('1');
    const headers = { authorization: `Bearer ${account.key}` };
    const submitted = await validatingFetch(`${t.url}/v1/images/generations`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json', prefer: 'respond-async' },
      body: JSON.stringify({ model: 'deepshi-sketch', prompt: 'stored in a bucket', response_format: 'url' }),
    });
    assert.equal(submitted.status, 202);
    const { id } = (await submitted.json()) as { id: string };
    let job: any;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; ) {
      job = await (await validatingFetch(`${t.url}/v1/images/jobs/${id}`, { headers })).json();
      if (job.status !== 'queued' && job.status !== 'in_progress') break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
    const link = new URL(job.result.data[0].url);
    const fileId = /file_\w+/.exec(link.pathname)![0];
    const file = (await t.server.store.getFile(fileId))!;
    const stored = await bucket.get(file.storageKey);
    assert.ok(stored && stored.length === file.bytes, 'the object is in the bucket');

    const served = await fetch(`${t.url}${link.pathname}${link.search}`);
    assert.equal(served.status, 200);
    assert.deepEqual(Buffer.from(await served.arrayBuffer()), stored);
    const tampered = `${link.pathname}?expires=${link.searchParams.get('expires')}&signature=${'A'.repeat(43)}`;
    assert.equal((await fetch(`${t.url}${tampered}`)).status, 403);

    for (const deadline = Date.now() + 15_000; Date.now() < deadline; ) {
      if ((await t.server.store.getFile(fileId))?.deletedAt !== null) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.notEqual((await t.server.store.getFile(fileId))?.deletedAt, null, 'swept');
    assert.equal(await bucket.get(file.storageKey), undefined, 'the object was deleted from the bucket');
    assert.equal((await fetch(`${t.url}${link.pathname}${link.search}`)).status, 403, 'the link expired');
    assert.equal((await fetch(`${t.url}${link.pathname}`, { headers })).status, 404);
  });
});
