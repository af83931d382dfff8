/**
 * The result storage contract, run on the filesystem and on a real S3-compatible server (s3rver, started here): bytes
 * stored, read back exactly, missing keys are undefined, delete is idempotent.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FilesystemResultStorage } from '../../../src/store/results/filesystem-storage.ts';
import type { ResultStorage } from '../../../src/store/results/result-storage.ts';
import { S3ResultStorage } from '../../../src/store/results/s3-storage.ts';
import { S3_CREDENTIALS, startS3 } from '../../helpers/s3.ts';

function storageContract(name: string, open: () => Promise<{ storage: ResultStorage; close(): Promise<void> }>): void {
  describe(`result storage: ${name}`, () => {
    let opened: { storage: ResultStorage; close(): Promise<void> };
    before(async () => {
      opened = await open();
    });
    after(() => opened.close());

    it('stores bytes and reads them back exactly; a missing key is undefined; delete is idempotent', async () => {
      const { storage } = opened;
      const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 256));
      await storage.put('2026-01-01/file_abc', bytes, 'image/png');
      assert.deepEqual(await storage.get('2026-01-01/file_abc'), bytes);
      assert.equal(await storage.get('2026-01-01/file_missing'), undefined);
      await storage.put('2026-01-01/file_abc', Buffer.from('replaced'), 'image/png');
      assert.equal((await storage.get('2026-01-01/file_abc'))?.toString(), 'replaced');
      await storage.delete('2026-01-01/file_abc');
      assert.equal(await storage.get('2026-01-01/file_abc'), undefined);
      await storage.delete('2026-01-01/file_abc');
    });
  });
}

storageContract('filesystem', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepshi-results-'));
  return { storage: new FilesystemResultStorage(dir), close: async () => fs.rmSync(dir, { recursive: true, force: true }) };
});

storageContract('S3 (s3rver)', async () => {
  const s3 = await startS3('results');
  const storage = new S3ResultStorage({
    bucket: 'results',
    endpoint: s3.endpoint,
    region: 'us-east-1',
    ...S3_CREDENTIALS,
    forcePathStyle: true,
  });
  return {
    storage,
    close: async () => {
      storage.close();
      await s3.close();
    },
  };
});
