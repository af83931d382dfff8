import type Database from 'better-sqlite3';
import { DELIVERY_STATUSES, JOB_STATUSES, jobRowMappers, patchColumns, statusCounts } from '../job-rows.ts';
import type { Row } from '../rows.ts';
import type {
  HostedFile,
  JobListQuery,
  JobPatch,
  JobRecord,
  JobStatus,
  JobStore,
  NewJob,
  WebhookAttempt,
  WebhookDelivery,
  WebhookSettings,
} from '../jobs.ts';

/** The job tables' migration, appended to the SQLite store's list (src/store/sqlite/sqlite-store.ts). */
export const SQLITE_JOBS_MIGRATION = `
CREATE TABLE image_jobs (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  key_id TEXT NOT NULL,
  request_id TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  endpoint TEXT NOT NULL CHECK (endpoint IN ('images.generations','images.edits')),
  status TEXT NOT NULL CHECK (status IN ('queued','in_progress','succeeded','failed','cancelled')),
  request TEXT NOT NULL,
  input_files TEXT NOT NULL,
  webhook_url TEXT,
  idempotency_key TEXT,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  completed_at INTEGER,
  expires_at INTEGER,
  result TEXT,
  error TEXT,
  claimed_by TEXT,
  lease_until INTEGER,
  run_after INTEGER NOT NULL DEFAULT 0,
  upstream TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  claims INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX image_jobs_by_account ON image_jobs(account_id, created_at, id);
CREATE INDEX image_jobs_open ON image_jobs(created_at, id) WHERE status IN ('queued','in_progress');
CREATE INDEX image_jobs_open_by_key ON image_jobs(key_id) WHERE status IN ('queued','in_progress');
CREATE TABLE hosted_files (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  job_id TEXT,
  kind TEXT NOT NULL CHECK (kind IN ('result','input')),
  media_type TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  storage_key TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  deleted_at INTEGER
);
CREATE INDEX hosted_files_live_by_expiry ON hosted_files(expires_at) WHERE deleted_at IS NULL;
CREATE INDEX hosted_files_by_job ON hosted_files(job_id, created_at);
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  url TEXT NOT NULL,
  event_type TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending','succeeded','failed')),
  attempts TEXT NOT NULL DEFAULT '[]',
  next_attempt_at INTEGER,
  claimed_by TEXT,
  lease_until INTEGER,
  created_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries(job_id, created_at);
CREATE TABLE account_webhooks (
  account_id TEXT PRIMARY KEY REFERENCES accounts(id),
  sealed_secret TEXT,
  sealed_previous_secret TEXT,
  previous_until INTEGER,
  default_url TEXT,
  updated_at INTEGER NOT NULL
);
`;

const OPEN = "status IN ('queued','in_progress')";
const { toJob, toFile, toDelivery, toWebhookSettings } = jobRowMappers((value) => (value ? JSON.parse(String(value)) : null));

/**
 * JobStore on the embedded database. Every claim is one UPDATE … WHERE id = (SELECT …) … RETURNING: SQLite runs a
 * statement with the database's write lock held, so the choice of job and the claim cannot interleave with another
 * claim, from this process or another one on the same file.
 */
export class SqliteJobs implements JobStore {
  private readonly statements;

  constructor(private readonly db: Database.Database) {
    this.statements = {
      insertJob:
        db.prepare(`INSERT INTO image_jobs (id, account_id, key_id, request_id, model, endpoint, status, request, input_files, webhook_url,
        idempotency_key, created_at, upstream) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, '{"state":"none"}')`),
      getJob: db.prepare('SELECT * FROM image_jobs WHERE id = ?'),
      countOpen: db.prepare(`SELECT COUNT(*) AS n FROM image_jobs WHERE key_id = ? AND ${OPEN}`),
      claim: db.prepare(`UPDATE image_jobs SET claimed_by = ?, lease_until = ?, claims = claims + 1 WHERE id = (
          SELECT id FROM image_jobs WHERE ${OPEN} AND (lease_until IS NULL OR lease_until < ?) AND run_after <= ?
            AND model NOT IN (SELECT value FROM json_each(?)) ORDER BY created_at, id LIMIT 1
        ) RETURNING *`),
      renew: db.prepare(
        `UPDATE image_jobs SET lease_until = ? WHERE claimed_by = ? AND ${OPEN} AND id IN (SELECT value FROM json_each(?)) RETURNING *`,
      ),
      unclaim: db.prepare(
        "UPDATE image_jobs SET claimed_by = NULL, lease_until = NULL, run_after = ? WHERE id = ? AND claimed_by = ? AND status = 'queued'",
      ),
      unclaimAll: db.prepare("UPDATE image_jobs SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = ? AND status = 'queued'"),
      cancelFree:
        db.prepare(`UPDATE image_jobs SET status = 'cancelled', completed_at = ?, cancel_requested = 1, error = '{"message":"The job was cancelled; you were not charged.","type":"invalid_request_error","code":"cancelled","param":null}'
        WHERE id = ? AND account_id = ? AND status = 'queued' AND (lease_until IS NULL OR lease_until < ?)`),
      cancelHeld: db.prepare(`UPDATE image_jobs SET cancel_requested = 1 WHERE id = ? AND account_id = ? AND ${OPEN}`),
      endedWithHolds: db.prepare(`SELECT j.* FROM image_jobs j JOIN requests r ON r.id = j.request_id
        WHERE j.status IN ('failed','cancelled') AND r.status = 'held' LIMIT ?`),
      countByStatus: db.prepare('SELECT status, COUNT(*) AS n FROM image_jobs GROUP BY status'),
      oldestQueued: db.prepare("SELECT MIN(created_at) AS oldest FROM image_jobs WHERE status = 'queued'"),
      insertFile:
        db.prepare(`INSERT INTO hosted_files (id, account_id, job_id, kind, media_type, bytes, storage_key, created_at, expires_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      getFile: db.prepare('SELECT * FROM hosted_files WHERE id = ?'),
      jobFiles: db.prepare('SELECT * FROM hosted_files WHERE job_id = ? AND kind = ? ORDER BY created_at, rowid'),
      expiredFiles: db.prepare('SELECT * FROM hosted_files WHERE deleted_at IS NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?'),
      deleteFile: db.prepare('UPDATE hosted_files SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL'),
      insertDelivery:
        db.prepare(`INSERT INTO webhook_deliveries (id, job_id, account_id, url, event_type, payload, status, next_attempt_at, created_at)
        VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)`),
      getDelivery: db.prepare('SELECT * FROM webhook_deliveries WHERE id = ?'),
      claimDeliveries: db.prepare(`UPDATE webhook_deliveries SET claimed_by = ?, lease_until = ? WHERE id IN (
          SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)
          ORDER BY next_attempt_at LIMIT ?
        ) RETURNING *`),
      recordAttempt:
        db.prepare(`UPDATE webhook_deliveries SET attempts = json_insert(attempts, '$[#]', json(?)), status = ?, next_attempt_at = ?,
          claimed_by = NULL, lease_until = NULL WHERE id = ? AND claimed_by = ? AND status = 'pending'`),
      listDeliveries: db.prepare('SELECT * FROM webhook_deliveries WHERE job_id = ? ORDER BY created_at, id'),
      deliveryStats: db.prepare('SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status'),
      getSettings: db.prepare('SELECT * FROM account_webhooks WHERE account_id = ?'),
      setSecret: db.prepare(`INSERT INTO account_webhooks (account_id, sealed_secret, sealed_previous_secret, previous_until, updated_at)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET sealed_secret = excluded.sealed_secret,
        sealed_previous_secret = excluded.sealed_previous_secret, previous_until = excluded.previous_until, updated_at = excluded.updated_at`),
      setDefaultUrl: db.prepare(`INSERT INTO account_webhooks (account_id, default_url, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (account_id) DO UPDATE SET default_url = excluded.default_url, updated_at = excluded.updated_at`),
    };
  }

  async createJob(job: NewJob): Promise<JobRecord> {
    this.statements.insertJob.run(
      job.id,
      job.accountId,
      job.keyId,
      job.requestId,
      job.model,
      job.endpoint,
      JSON.stringify(job.request),
      JSON.stringify(job.inputFiles),
      job.webhookUrl,
      job.idempotencyKey,
      job.createdAt,
    );
    return (await this.getJob(job.id))!;
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    const row = this.statements.getJob.get(id) as Row | undefined;
    return row ? toJob(row) : undefined;
  }

  async listJobs(accountId: string, query: JobListQuery): Promise<JobRecord[]> {
    const where = ['account_id = ?'];
    const params: unknown[] = [accountId];
    if (query.status) {
      where.push('status = ?');
      params.push(query.status);
    }
    if (query.after) {
      where.push('(created_at, id) < (SELECT created_at, id FROM image_jobs WHERE id = ? AND account_id = ?)');
      params.push(query.after, accountId);
    }
    const sql = `SELECT * FROM image_jobs WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...params, query.limit) as Row[]).map(toJob);
  }

  async countOpenJobs(keyId: string): Promise<number> {
    return Number((this.statements.countOpen.get(keyId) as Row).n);
  }

  async claimJob(owner: string, now: number, leaseUntil: number, excludeModels: string[]): Promise<JobRecord | undefined> {
    const row = this.statements.claim.get(owner, leaseUntil, now, now, JSON.stringify(excludeModels)) as Row | undefined;
    return row ? toJob(row) : undefined;
  }

  async renewJobLeases(owner: string, ids: string[], leaseUntil: number): Promise<JobRecord[]> {
    if (ids.length === 0) return [];
    return (this.statements.renew.all(leaseUntil, owner, JSON.stringify(ids)) as Row[]).map(toJob);
  }

  async updateHeldJob(id: string, owner: string, patch: JobPatch): Promise<boolean> {
    const columns = patchColumns(patch);
    if (columns.length === 0) return false;
    const sql = `UPDATE image_jobs SET ${columns.map(([name]) => `${name} = ?`).join(', ')} WHERE id = ? AND claimed_by = ? AND ${OPEN}`;
    return this.db.prepare(sql).run(...columns.map(([, value]) => value), id, owner).changes === 1;
  }

  async unclaimJob(id: string, owner: string, runAfter: number): Promise<boolean> {
    return this.statements.unclaim.run(runAfter, id, owner).changes === 1;
  }

  async unclaimAllJobs(owner: string): Promise<number> {
    return this.statements.unclaimAll.run(owner).changes;
  }

  async cancelJob(id: string, accountId: string, now: number): Promise<'cancelled' | 'requested' | undefined> {
    return this.db
      .transaction(() => {
        if (this.statements.cancelFree.run(now, id, accountId, now).changes === 1) return 'cancelled' as const;
        if (this.statements.cancelHeld.run(id, accountId).changes === 1) return 'requested' as const;
        return undefined;
      })
      .immediate();
  }

  async listEndedJobsWithHolds(limit: number): Promise<JobRecord[]> {
    return (this.statements.endedWithHolds.all(limit) as Row[]).map(toJob);
  }

  async jobStats(): Promise<{ byStatus: Record<JobStatus, number>; oldestQueuedAt: number | null }> {
    const byStatus = statusCounts(this.statements.countByStatus.all() as Row[], JOB_STATUSES);
    const oldest = (this.statements.oldestQueued.get() as Row).oldest;
    return { byStatus, oldestQueuedAt: oldest === null ? null : Number(oldest) };
  }

  async createFile(file: Omit<HostedFile, 'deletedAt'>): Promise<HostedFile> {
    this.statements.insertFile.run(
      file.id,
      file.accountId,
      file.jobId,
      file.kind,
      file.mediaType,
      file.bytes,
      file.storageKey,
      file.createdAt,
      file.expiresAt,
    );
    return (await this.getFile(file.id))!;
  }

  async getFile(id: string): Promise<HostedFile | undefined> {
    const row = this.statements.getFile.get(id) as Row | undefined;
    return row ? toFile(row) : undefined;
  }

  async listJobFiles(jobId: string, kind: HostedFile['kind']): Promise<HostedFile[]> {
    return (this.statements.jobFiles.all(jobId, kind) as Row[]).map(toFile);
  }

  async listExpiredFiles(now: number, limit: number): Promise<HostedFile[]> {
    return (this.statements.expiredFiles.all(now, limit) as Row[]).map(toFile);
  }

  async markFileDeleted(id: string, now: number): Promise<boolean> {
    return this.statements.deleteFile.run(now, id).changes === 1;
  }

  async createWebhookDelivery(
    delivery: Omit<WebhookDelivery, 'attempts' | 'status' | 'claimedBy' | 'leaseUntil'>,
  ): Promise<WebhookDelivery> {
    this.statements.insertDelivery.run(
      delivery.id,
      delivery.jobId,
      delivery.accountId,
      delivery.url,
      delivery.eventType,
      delivery.payload,
      delivery.nextAttemptAt,
      delivery.createdAt,
    );
    return toDelivery(this.statements.getDelivery.get(delivery.id) as Row);
  }

  async claimDueWebhookDeliveries(owner: string, now: number, leaseUntil: number, limit: number): Promise<WebhookDelivery[]> {
    return (this.statements.claimDeliveries.all(owner, leaseUntil, now, now, limit) as Row[]).map(toDelivery);
  }

  async recordWebhookAttempt(
    id: string,
    owner: string,
    attempt: WebhookAttempt,
    next: { status: WebhookDelivery['status']; nextAttemptAt: number | null },
  ): Promise<boolean> {
    return this.statements.recordAttempt.run(JSON.stringify(attempt), next.status, next.nextAttemptAt, id, owner).changes === 1;
  }

  async listWebhookDeliveries(jobId: string): Promise<WebhookDelivery[]> {
    return (this.statements.listDeliveries.all(jobId) as Row[]).map(toDelivery);
  }

  async webhookDeliveryStats(): Promise<Record<WebhookDelivery['status'], number>> {
    return statusCounts(this.statements.deliveryStats.all() as Row[], DELIVERY_STATUSES);
  }

  async getWebhookSettings(accountId: string): Promise<WebhookSettings | undefined> {
    const row = this.statements.getSettings.get(accountId) as Row | undefined;
    return row ? toWebhookSettings(row) : undefined;
  }

  async setWebhookSecret(
    accountId: string,
    sealed: string,
    sealedPrevious: string | null,
    previousUntil: number | null,
    now: number,
  ): Promise<WebhookSettings> {
    this.statements.setSecret.run(accountId, sealed, sealedPrevious, previousUntil, now);
    return (await this.getWebhookSettings(accountId))!;
  }

  async setWebhookDefaultUrl(accountId: string, url: string | null, now: number): Promise<WebhookSettings> {
    this.statements.setDefaultUrl.run(accountId, url, now);
    return (await this.getWebhookSettings(accountId))!;
  }
}
