import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { HostedFile } from '../../store/jobs.ts';
import type { ResultStorage } from '../../store/results/result-storage.ts';
import type { Store } from '../../store/types.ts';
import type { ServerKeys } from './secrets.ts';

/**
 * Files Deepshi hosts: job results (served by signed, expiring links) and the input images of queued edits. Bytes go
 * to the result storage first, then the metadata row, so a recorded file always has its bytes; the sweeper deletes
 * bytes first, then marks the row, so a crash between the two only leaves a row to sweep again.
 */
export class HostedFiles {
  constructor(private readonly deps: { store: Store; storage: ResultStorage; keys: ServerKeys; ttlMs: number; logger: Logger }) {}

  get ttlMs(): number {
    return this.deps.ttlMs;
  }

  get storageKind(): ResultStorage['kind'] {
    return this.deps.storage.kind;
  }

  async save(input: {
    accountId: string;
    jobId: string | null;
    kind: HostedFile['kind'];
    bytes: Buffer;
    mediaType: string;
    expiresAt?: number;
  }): Promise<HostedFile> {
    const now = Date.now();
    const id = `file_${randomUUID().replace(/-/g, '')}`;
    const storageKey = `${new Date(now).toISOString().slice(0, 10)}/${id}`;
    await this.deps.storage.put(storageKey, input.bytes, input.mediaType);
    return this.deps.store.createFile({
      id,
      accountId: input.accountId,
      jobId: input.jobId,
      kind: input.kind,
      mediaType: input.mediaType,
      bytes: input.bytes.length,
      storageKey,
      createdAt: now,
      expiresAt: input.expiresAt ?? now + this.deps.ttlMs,
    });
  }

  /** `<base>/v1/files/<id>/content?expires=<unix s>&signature=…`, valid until the file expires. */
  link(file: HostedFile, baseUrl: string): string {
    const expires = Math.floor(file.expiresAt / 1000);
    return `${baseUrl}/v1/files/${file.id}/content?expires=${expires}&signature=${this.deps.keys.signLink(file.id, expires)}`;
  }

  verifyLink(fileId: string, expires: number, signature: string): boolean {
    return this.deps.keys.verifyLink(fileId, expires, signature);
  }

  /** A live file and its bytes; undefined once expired, deleted or missing. */
  async read(id: string, now = Date.now()): Promise<{ file: HostedFile; bytes: Buffer } | undefined> {
    const file = await this.deps.store.getFile(id);
    if (!file || file.deletedAt !== null || file.expiresAt <= now) return undefined;
    const bytes = await this.deps.storage.get(file.storageKey);
    return bytes ? { file, bytes } : undefined;
  }

  async get(id: string): Promise<HostedFile | undefined> {
    return this.deps.store.getFile(id);
  }

  /** Deletes expired files (bytes, then the row's mark); returns how many. */
  async sweep(now = Date.now()): Promise<number> {
    let deleted = 0;
    for (const file of await this.deps.store.listExpiredFiles(now, 500)) {
      try {
        await this.deps.storage.delete(file.storageKey);
        if (await this.deps.store.markFileDeleted(file.id, now)) deleted++;
      } catch (error) {
        this.deps.logger.error({ err: error, fileId: file.id }, 'could not delete an expired result file; retried on the next sweep');
      }
    }
    return deleted;
  }
}
