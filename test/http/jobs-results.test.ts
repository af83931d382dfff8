/**
 * Hosted job results, one specification run over both storages (issue #12: "S3 storage passes the same result tests as
 * the filesystem"): the local filesystem under the data directory (the default) and an S3-compatible bucket (s3rver,
 * a real S3 server started here). A generation or edit job submitted with the openai SDK succeeds with its image stored
 * there; its signed link serves the stored bytes without a key (and the owner's key reads it without a signature); a
 * tampered, re-dated or stranger's read is refused; and after DEEPSHI_RESULT_TTL_HOURS the sweeper deletes the bytes
 * from the storage, the link is refused as expired and the owner gets a 404.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toFile } from 'openai';
import { renderSketch } from '../../src/images/sketch.ts';
import { FilesystemResultStorage } from '../../src/store/results/filesystem-storage.ts';
import type { ResultStorage } from '../../src/store/results/result-storage.ts';
import { S3ResultStorage } from '../../src/store/results/s3-storage.ts';
import { assertDocumentedResponse } from '../helpers/openapi-responses.ts';
import { S3_CREDENTIALS, startS3 } from '../helpers/s3.ts';
import { startTestServer, type TestServer } from '../helpers/test-server.ts';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47]);

/** A storage the servers under test are configured with, and the test's own reader of the same place. */
interface Backend {
  name: string;
  start(): Promise<{ env: Record<string, string>; storage: ResultStorage; stop(): Promise<void> }>;
}

const BACKENDS: Backend[] = [
  {
    name: 'the filesystem',
    async start() {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-results-'));
      return {
        env: { DEEPSHI_DATA_DIR: dataDir },
        storage: new FilesystemResultStorage(dataDir),
        stop: async () => fs.rmSync(dataDir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: 'an S3 bucket',
    async start() {
      const s3 = await startS3('deepshi-results');
      const bucket = new S3ResultStorage({
        bucket: 'deepshi-results',
        endpoint: s3.endpoint,
        region: 'us-east-1',
        ...S3_CREDENTIALS,
        forcePathStyle: true,
      });
      return {
        env: {
          DEEPSHI_RESULTS_S3_BUCKET: 'deepshi-results',
          DEEPSHI_RESULTS_S3_ENDPOINT: s3.endpoint,
          DEEPSHI_RESULTS_S3_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
          DEEPSHI_RESULTS_S3_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
        },
        storage: bucket,
        stop: async () => {
          bucket.close();
          await s3.close();
        },
      };
    },
  },
];

async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Polls the job with the SDK (each answer validated as ImageJob) until it ends. */
async function jobEnded(t: TestServer, key: string, id: string): Promise<any> {
  return waitFor(`job ${id} to end`, async () => {
    const job = await t.client(key).get<any>(`/images/jobs/${id}`);
    return ['succeeded', 'failed', 'cancelled'].includes(job.status) ? job : undefined;
  });
}

/** GET a path as an `<img>` tag or a webhook receiver would (no key), or with a key; checked against /openapi.json. */
async function read(t: TestServer, pathAndQuery: string, key?: string): Promise<{ status: number; type: string | null; bytes: Buffer }> {
  const response = await fetch(`${t.url}${pathAndQuery}`, key ? { headers: { authorization: `Bearer ${key}` } } : {});
  const bytes = Buffer.from(await response.arrayBuffer());
  const type = response.headers.get('content-type');
  const body = type?.startsWith('application/json') ? JSON.parse(bytes.toString('utf8')) : bytes.toString('latin1');
  assertDocumentedResponse('GET', pathAndQuery, response.status, type, body);
  return { status: response.status, type, bytes };
}

for (const backend of BACKENDS) {
  describe(`async job results on ${backend.name}`, () => {
    let storage: ResultStorage;
    let stop: () => Promise<void>;
    /** Results kept for a day: the links work. */
    let t: TestServer;
    /** Results kept 1.44 s (0.0004 h), swept every 100 ms. */
    let brief: TestServer;

    before(async () => {
      const started = await backend.start();
      storage = started.storage;
      stop = started.stop;
      const env = { ...started.env, DEEPSHI_JOB_POLL_MS: '50', DEEPSHI_SWEEP_INTERVAL_MS: '100' };
      t = await startTestServer({ env });
      brief = await startTestServer({ env: { ...env, DEEPSHI_RESULT_TTL_HOURS: '0.0004' } });
    });
    after(async () => {
      await t.close();
      await brief.close();
      await stop();
    });

    it('a generation job succeeds with its image in the storage; the signed link serves those bytes without a key; tampered, re-dated and strangers are refused', async () => {
      const account = await t.createAccount('1');
      const submitted = await t.client(account.key).post<any>('/images/generations', {
        body: { model: 'deepshi-sketch', prompt: 'a red fox', response_format: 'url', async: true },
      });
      assert.equal(submitted.object, 'image.job');
      const job = await jobEnded(t, account.key, submitted.id);
      assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
      const link = new URL(job.result.data[0].url);
      assert.match(link.pathname, /^\/v1\/files\/file_\w+\/content$/);
      const fileId = link.pathname.split('/')[3];
      const file = (await t.server.store.getFile(fileId))!;
      assert.equal(file.accountId, account.accountId);
      assert.equal(file.jobId, job.id);
      assert.equal(Math.floor(file.expiresAt / 1000), job.expires_at, 'the job expires with its files');
      assert.equal(file.expiresAt - file.createdAt, 24 * 3_600_000, 'kept DEEPSHI_RESULT_TTL_HOURS (24 by default)');
      const stored = await storage.get(file.storageKey);
      assert.ok(stored, `the image is in ${backend.name}`);
      assert.equal(stored.length, file.bytes);

      const served = await read(t, `${link.pathname}${link.search}`);
      assert.equal(served.status, 200);
      assert.equal(served.type, 'image/png');
      assert.deepEqual(served.bytes, stored, 'the link serves the stored bytes');
      assert.deepEqual(served.bytes.subarray(0, 4), PNG_SIGNATURE);
      assert.deepEqual((await read(t, link.pathname, account.key)).bytes, stored, "the owner's key reads it without a signature");

      const signature = link.searchParams.get('signature')!;
      const expires = Number(link.searchParams.get('expires'));
      const flipped = `${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BB' : 'AA'}`;
      assert.equal((await read(t, `${link.pathname}?expires=${expires}&signature=${flipped}`)).status, 403, 'tampered');
      assert.equal((await read(t, `${link.pathname}?expires=${expires + 3600}&signature=${signature}`)).status, 403, 're-dated');
      assert.equal((await read(t, link.pathname)).status, 401, 'no signature and no key');
      const stranger = await t.createAccount('1');
      assert.equal((await read(t, link.pathname, stranger.key)).status, 404, "another account's key");
    });

    it('an edit job (its input image kept in the storage while queued) succeeds the same way', async () => {
      const account = await t.createAccount('1');
      const input = await renderSketch({ prompt: 'input', seed: 3, width: 64, height: 64, format: 'png' });
      const submitted = (await t.client(account.key).images.edit({
        model: 'deepshi-sketch',
        prompt: 'add a hat',
        image: await toFile(input, 'in.png', { type: 'image/png' }),
        response_format: 'url',
        async: true,
      } as Parameters<ReturnType<TestServer['client']>['images']['edit']>[0])) as any;
      assert.equal(submitted.endpoint, '/v1/images/edits');
      const job = await jobEnded(t, account.key, submitted.id);
      assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
      const [inputFile] = await t.server.store.listJobFiles(job.id, 'input');
      assert.deepEqual(await storage.get(inputFile.storageKey), input, `the queued edit's input was kept in ${backend.name}`);
      const link = new URL(job.result.data[0].url);
      const [resultFile] = await t.server.store.listJobFiles(job.id, 'result');
      const served = await read(t, `${link.pathname}${link.search}`);
      assert.equal(served.status, 200);
      assert.deepEqual(served.bytes, await storage.get(resultFile.storageKey));
      assert.equal((await read(t, `/v1/files/${inputFile.id}/content`, account.key)).status, 404, 'inputs are not served');
    });

    it('after the TTL the sweeper deletes the bytes from the storage; the link is refused as expired and the owner gets a 404', async () => {
      const account = await brief.createAccount('1');
      const submitted = await brief.client(account.key).post<any>('/images/generations', {
        body: { model: 'deepshi-sketch', prompt: 'brief', response_format: 'url', async: true },
      });
      const job = await jobEnded(brief, account.key, submitted.id);
      assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
      const link = new URL(job.result.data[0].url);
      const file = (await brief.server.store.getFile(link.pathname.split('/')[3]))!;
      assert.equal(file.expiresAt - file.createdAt, 1_440, 'DEEPSHI_RESULT_TTL_HOURS=0.0004');
      const swept = await waitFor('the sweeper to delete the file', async () => {
        const row = await brief.server.store.getFile(file.id);
        return row?.deletedAt != null ? row : undefined;
      });
      assert.ok(swept.deletedAt! >= file.expiresAt, 'not before it expired');
      assert.equal(await storage.get(file.storageKey), undefined, `the bytes are gone from ${backend.name}`);
      const expired = await read(brief, `${link.pathname}${link.search}`);
      assert.equal(expired.status, 403);
      assert.match(JSON.parse(expired.bytes.toString('utf8')).error.message, /expired/);
      assert.equal((await read(brief, link.pathname, account.key)).status, 404);
    });
  });
}
