import type pg from 'pg';
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

/** The job tables (same columns as src/store/sqlite/sqlite-jobs.ts), appended to src/store/postgres/migrations.ts. */
export const POSTGRES_JOBS_MIGRATION = `
CREATE TABLE image_jobs (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  key_id TEXT NOT NULL,
  request_id TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  endpoint TEXT NOT NULL CHECK (endpoint IN ('images.generations','images.edits')),
  status TEXT NOT NULL CHECK (status IN ('queued','in_progress','succeeded','failed','cancelled')),
  request JSONB NOT NULL,
  input_files JSONB NOT NULL,
  webhook_url TEXT,
  idempotency_key TEXT,
  created_at BIGINT NOT NULL,
  started_at BIGINT,
  completed_at BIGINT,
  expires_at BIGINT,
  result JSONB,
  error JSONB,
  claimed_by TEXT,
  lease_until BIGINT,
  run_after BIGINT NOT NULL DEFAULT 0,
  upstream JSONB,
  cancel_requested BOOLEAN NOT NULL DEFAULT false,
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
  bytes BIGINT NOT NULL,
  storage_key TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  deleted_at BIGINT
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
  attempts JSONB NOT NULL DEFAULT '[]'::jsonb,
  next_attempt_at BIGINT,
  claimed_by TEXT,
  lease_until BIGINT,
  created_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries(job_id, created_at);
CREATE TABLE account_webhooks (
  account_id TEXT PRIMARY KEY REFERENCES accounts(id),
  sealed_secret TEXT,
  sealed_previous_secret TEXT,
  previous_until BIGINT,
  default_url TEXT,
  updated_at BIGINT NOT NULL
);
`;

const OPEN = "status IN ('queued','in_progress')";

const SQL = {
  insertJob: `INSERT INTO image_jobs (id, account_id, key_id, request_id, model, endpoint, status, request, input_files, webhook_url, idempotency_key,
      created_at, upstream) VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7::jsonb, $8::jsonb, $9, $10, $11, '{"state":"none"}'::jsonb) RETURNING *`,
  getJob: 'SELECT * FROM image_jobs WHERE id = $1',
  countOpen: `SELECT COUNT(*)::int AS n FROM image_jobs WHERE key_id = $1 AND ${OPEN}`,
  // SKIP LOCKED: instances claiming at once each take a different row instead of queueing on the same one; the lease
  // condition is re-checked on the locked row (READ COMMITTED re-evaluates FOR UPDATE quals on the newest version).
  claim: `UPDATE image_jobs SET claimed_by = $1, lease_until = $2, claims = claims + 1 WHERE id = (
      SELECT id FROM image_jobs WHERE ${OPEN} AND (lease_until IS NULL OR lease_until < $3) AND run_after <= $3
        AND NOT (model = ANY($4::text[])) ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
    ) RETURNING *`,
  renew: `UPDATE image_jobs SET lease_until = $1 WHERE claimed_by = $2 AND ${OPEN} AND id = ANY($3::text[]) RETURNING *`,
  unclaim:
    "UPDATE image_jobs SET claimed_by = NULL, lease_until = NULL, run_after = $1 WHERE id = $2 AND claimed_by = $3 AND status = 'queued'",
  unclaimAll: "UPDATE image_jobs SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = $1 AND status = 'queued'",
  cancelFree: `UPDATE image_jobs SET status = 'cancelled', completed_at = $1, cancel_requested = true,
      error = '{"message":"The job was cancelled; you were not charged.","type":"invalid_request_error","code":"cancelled","param":null}'::jsonb
      WHERE id = $2 AND account_id = $3 AND status = 'queued' AND (lease_until IS NULL OR lease_until < $1)`,
  cancelHeld: `UPDATE image_jobs SET cancel_requested = true WHERE id = $1 AND account_id = $2 AND ${OPEN}`,
  endedWithHolds: `SELECT j.* FROM image_jobs j JOIN requests r ON r.id = j.request_id
      WHERE j.status IN ('failed','cancelled') AND r.status = 'held' LIMIT $1`,
  countByStatus: 'SELECT status, COUNT(*)::int AS n FROM image_jobs GROUP BY status',
  oldestQueued: "SELECT MIN(created_at) AS oldest FROM image_jobs WHERE status = 'queued'",
  insertFile: `INSERT INTO hosted_files (id, account_id, job_id, kind, media_type, bytes, storage_key, created_at, expires_at)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
  getFile: 'SELECT * FROM hosted_files WHERE id = $1',
  jobFiles: 'SELECT * FROM hosted_files WHERE job_id = $1 AND kind = $2 ORDER BY created_at, id',
  expiredFiles: 'SELECT * FROM hosted_files WHERE deleted_at IS NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2',
  deleteFile: 'UPDATE hosted_files SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL',
  insertDelivery: `INSERT INTO webhook_deliveries (id, job_id, account_id, url, event_type, payload, status, next_attempt_at, created_at)
      VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) RETURNING *`,
  claimDeliveries: `UPDATE webhook_deliveries SET claimed_by = $1, lease_until = $2 WHERE id IN (
      SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
      ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED
    ) RETURNING *`,
  recordAttempt: `UPDATE webhook_deliveries SET attempts = attempts || jsonb_build_array($1::jsonb), status = $2, next_attempt_at = $3,
      claimed_by = NULL, lease_until = NULL WHERE id = $4 AND claimed_by = $5 AND status = 'pending'`,
  listDeliveries: 'SELECT * FROM webhook_deliveries WHERE job_id = $1 ORDER BY created_at, id',
  deliveryStats: 'SELECT status, COUNT(*)::int AS n FROM webhook_deliveries GROUP BY status',
  getSettings: 'SELECT * FROM account_webhooks WHERE account_id = $1',
  setSecret: `INSERT INTO account_webhooks (account_id, sealed_secret, sealed_previous_secret, previous_until, updated_at) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (account_id) DO UPDATE SET sealed_secret = EXCLUDED.sealed_secret, sealed_previous_secret = EXCLUDED.sealed_previous_secret,
      previous_until = EXCLUDED.previous_until, updated_at = EXCLUDED.updated_at RETURNING *`,
  setDefaultUrl: `INSERT INTO account_webhooks (account_id, default_url, updated_at) VALUES ($1, $2, $3)
      ON CONFLICT (account_id) DO UPDATE SET default_url = EXCLUDED.default_url, updated_at = EXCLUDED.updated_at RETURNING *`,
} as const;

// JSONB columns arrive parsed.
const { toJob, toFile, toDelivery, toWebhookSettings } = jobRowMappers((value) => value);

/** JobStore on PostgreSQL: every claim is one statement with FOR UPDATE SKIP LOCKED, safe across instances. */
export class PostgresJobs implements JobStore {
  constructor(private readonly pool: pg.Pool) {}

  private async run(name: keyof typeof SQL, values: unknown[]): Promise<pg.QueryResult<Row>> {
    return this.pool.query<Row>({ name: `deepshi_jobs_${name}`, text: SQL[name], values });
  }

  async createJob(job: NewJob): Promise<JobRecord> {
    const { rows } = await this.run('insertJob', [
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
    ]);
    return toJob(rows[0]);
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    const { rows } = await this.run('getJob', [id]);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  async listJobs(accountId: string, query: JobListQuery): Promise<JobRecord[]> {
    const where = ['account_id = $1'];
    const params: unknown[] = [accountId];
    if (query.status) {
      params.push(query.status);
      where.push(`status = $${params.length}`);
    }
    if (query.after) {
      params.push(query.after);
      where.push(`(created_at, id) < (SELECT created_at, id FROM image_jobs WHERE id = $${params.length} AND account_id = $1)`);
    }
    params.push(query.limit);
    const sql = `SELECT * FROM image_jobs WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT $${params.length}`;
    return (await this.pool.query<Row>(sql, params)).rows.map(toJob);
  }

  async countOpenJobs(keyId: string): Promise<number> {
    return Number((await this.run('countOpen', [keyId])).rows[0].n);
  }

  async claimJob(owner: string, now: number, leaseUntil: number, excludeModels: string[]): Promise<JobRecord | undefined> {
    const { rows } = await this.run('claim', [owner, leaseUntil, now, excludeModels]);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  async renewJobLeases(owner: string, ids: string[], leaseUntil: number): Promise<JobRecord[]> {
    if (ids.length === 0) return [];
    return (await this.run('renew', [leaseUntil, owner, ids])).rows.map(toJob);
  }

  async updateHeldJob(id: string, owner: string, patch: JobPatch): Promise<boolean> {
    const columns = patchColumns(patch);
    if (columns.length === 0) return false;
    const sets = columns.map(([name, , json], index) => `${name} = $${index + 1}${json ? '::jsonb' : ''}`);
    const sql = `UPDATE image_jobs SET ${sets.join(', ')} WHERE id = $${columns.length + 1} AND claimed_by = $${columns.length + 2} AND ${OPEN}`;
    return (await this.pool.query(sql, [...columns.map(([, value]) => value), id, owner])).rowCount === 1;
  }

  async unclaimJob(id: string, owner: string, runAfter: number): Promise<boolean> {
    return (await this.run('unclaim', [runAfter, id, owner])).rowCount === 1;
  }

  async unclaimAllJobs(owner: string): Promise<number> {
    return (await this.run('unclaimAll', [owner])).rowCount ?? 0;
  }

  async cancelJob(id: string, accountId: string, now: number): Promise<'cancelled' | 'requested' | undefined> {
    if ((await this.run('cancelFree', [now, id, accountId])).rowCount === 1) return 'cancelled';
    if ((await this.run('cancelHeld', [id, accountId])).rowCount === 1) return 'requested';
    return undefined;
  }

  async listEndedJobsWithHolds(limit: number): Promise<JobRecord[]> {
    return (await this.run('endedWithHolds', [limit])).rows.map(toJob);
  }

  async jobStats(): Promise<{ byStatus: Record<JobStatus, number>; oldestQueuedAt: number | null }> {
    const byStatus = statusCounts((await this.run('countByStatus', [])).rows, JOB_STATUSES);
    const oldest = (await this.run('oldestQueued', [])).rows[0].oldest;
    return { byStatus, oldestQueuedAt: oldest === null ? null : Number(oldest) };
  }

  async createFile(file: Omit<HostedFile, 'deletedAt'>): Promise<HostedFile> {
    const { rows } = await this.run('insertFile', [
      file.id,
      file.accountId,
      file.jobId,
      file.kind,
      file.mediaType,
      file.bytes,
      file.storageKey,
      file.createdAt,
      file.expiresAt,
    ]);
    return toFile(rows[0]);
  }

  async getFile(id: string): Promise<HostedFile | undefined> {
    const { rows } = await this.run('getFile', [id]);
    return rows[0] ? toFile(rows[0]) : undefined;
  }

  async listJobFiles(jobId: string, kind: HostedFile['kind']): Promise<HostedFile[]> {
    return (await this.run('jobFiles', [jobId, kind])).rows.map(toFile);
  }

  async listExpiredFiles(now: number, limit: number): Promise<HostedFile[]> {
    return (await this.run('expiredFiles', [now, limit])).rows.map(toFile);
  }

  async markFileDeleted(id: string, now: number): Promise<boolean> {
    return (await this.run('deleteFile', [now, id])).rowCount === 1;
  }

  async createWebhookDelivery(
    delivery: Omit<WebhookDelivery, 'attempts' | 'status' | 'claimedBy' | 'leaseUntil'>,
  ): Promise<WebhookDelivery> {
    const { rows } = await this.run('insertDelivery', [
      delivery.id,
      delivery.jobId,
      delivery.accountId,
      delivery.url,
      delivery.eventType,
      delivery.payload,
      delivery.nextAttemptAt,
      delivery.createdAt,
    ]);
    return toDelivery(rows[0]);
  }

  async claimDueWebhookDeliveries(owner: string, now: number, leaseUntil: number, limit: number): Promise<WebhookDelivery[]> {
    return (await this.run('claimDeliveries', [owner, leaseUntil, now, limit])).rows.map(toDelivery);
  }

  async recordWebhookAttempt(
    id: string,
    owner: string,
    attempt: WebhookAttempt,
    next: { status: WebhookDelivery['status']; nextAttemptAt: number | null },
  ): Promise<boolean> {
    return (await this.run('recordAttempt', [JSON.stringify(attempt), next.status, next.nextAttemptAt, id, owner])).rowCount === 1;
  }

  async listWebhookDeliveries(jobId: string): Promise<WebhookDelivery[]> {
    return (await this.run('listDeliveries', [jobId])).rows.map(toDelivery);
  }

  async webhookDeliveryStats(): Promise<Record<WebhookDelivery['status'], number>> {
    return statusCounts((await this.run('deliveryStats', [])).rows, DELIVERY_STATUSES);
  }

  async getWebhookSettings(accountId: string): Promise<WebhookSettings | undefined> {
    const { rows } = await this.run('getSettings', [accountId]);
    return rows[0] ? toWebhookSettings(rows[0]) : undefined;
  }

  async setWebhookSecret(
    accountId: string,
    sealed: string,
    sealedPrevious: string | null,
    previousUntil: number | null,
    now: number,
  ): Promise<WebhookSettings> {
    return toWebhookSettings((await this.run('setSecret', [accountId, sealed, sealedPrevious, previousUntil, now])).rows[0]);
  }

  async setWebhookDefaultUrl(accountId: string, url: string | null, now: number): Promise<WebhookSettings> {
    return toWebhookSettings((await this.run('setDefaultUrl', [accountId, url, now])).rows[0]);
  }
}
