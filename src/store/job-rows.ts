import type { Row } from './rows.ts';
import type { HostedFile, JobRecord, JobStatus, JobUpstreamState, WebhookDelivery, WebhookSettings } from './jobs.ts';

/** Row → record mapping for the job tables, shared by both stores; `readJson` as in rows.ts. */
export function jobRowMappers(readJson: (value: unknown) => unknown) {
  const json = <T>(value: unknown): T | null => (readJson(value) as T | null) ?? null;
  const intOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
  const strOrNull = (value: unknown): string | null => (value === null || value === undefined ? null : String(value));
  return {
    toJob: (row: Row): JobRecord => ({
      id: String(row.id),
      accountId: String(row.account_id),
      keyId: String(row.key_id),
      requestId: String(row.request_id),
      model: String(row.model),
      endpoint: row.endpoint as JobRecord['endpoint'],
      status: row.status as JobRecord['status'],
      request: json<Record<string, unknown>>(row.request) ?? {},
      inputFiles: json<string[]>(row.input_files) ?? [],
      webhookUrl: strOrNull(row.webhook_url),
      idempotencyKey: strOrNull(row.idempotency_key),
      createdAt: Number(row.created_at),
      startedAt: intOrNull(row.started_at),
      completedAt: intOrNull(row.completed_at),
      expiresAt: intOrNull(row.expires_at),
      result: json<Record<string, unknown>>(row.result),
      error: json<Record<string, unknown>>(row.error),
      claimedBy: strOrNull(row.claimed_by),
      leaseUntil: intOrNull(row.lease_until),
      runAfter: Number(row.run_after),
      upstream: json<JobUpstreamState>(row.upstream) ?? { state: 'none' },
      cancelRequested: Boolean(Number(row.cancel_requested)),
      claims: Number(row.claims),
    }),
    toFile: (row: Row): HostedFile => ({
      id: String(row.id),
      accountId: String(row.account_id),
      jobId: strOrNull(row.job_id),
      kind: row.kind as HostedFile['kind'],
      mediaType: String(row.media_type),
      bytes: Number(row.bytes),
      storageKey: String(row.storage_key),
      createdAt: Number(row.created_at),
      expiresAt: Number(row.expires_at),
      deletedAt: intOrNull(row.deleted_at),
    }),
    toDelivery: (row: Row): WebhookDelivery => ({
      id: String(row.id),
      jobId: String(row.job_id),
      accountId: String(row.account_id),
      url: String(row.url),
      eventType: row.event_type as WebhookDelivery['eventType'],
      payload: String(row.payload),
      status: row.status as WebhookDelivery['status'],
      attempts: json<WebhookDelivery['attempts']>(row.attempts) ?? [],
      nextAttemptAt: intOrNull(row.next_attempt_at),
      claimedBy: strOrNull(row.claimed_by),
      leaseUntil: intOrNull(row.lease_until),
      createdAt: Number(row.created_at),
    }),
    toWebhookSettings: (row: Row): WebhookSettings => ({
      accountId: String(row.account_id),
      sealedSecret: strOrNull(row.sealed_secret),
      sealedPreviousSecret: strOrNull(row.sealed_previous_secret),
      previousUntil: intOrNull(row.previous_until),
      defaultUrl: strOrNull(row.default_url),
      updatedAt: Number(row.updated_at),
    }),
  };
}

/** The job tables' column lists for the patch statements (names as in both schemas). */
export function patchColumns(patch: import('./jobs.ts').JobPatch): Array<[column: string, value: unknown, json: boolean]> {
  const columns: Array<[string, unknown, boolean]> = [];
  if (patch.status !== undefined) columns.push(['status', patch.status, false]);
  if (patch.startedAt !== undefined) columns.push(['started_at', patch.startedAt, false]);
  if (patch.completedAt !== undefined) columns.push(['completed_at', patch.completedAt, false]);
  if (patch.expiresAt !== undefined) columns.push(['expires_at', patch.expiresAt, false]);
  if (patch.result !== undefined) columns.push(['result', patch.result === null ? null : JSON.stringify(patch.result), true]);
  if (patch.error !== undefined) columns.push(['error', patch.error === null ? null : JSON.stringify(patch.error), true]);
  if (patch.upstream !== undefined) columns.push(['upstream', JSON.stringify(patch.upstream), true]);
  return columns;
}

/** `SELECT status, COUNT(*) AS n … GROUP BY status` rows → a count for every status, zero where no row came back. */
export function statusCounts<S extends string>(rows: Row[], statuses: readonly S[]): Record<S, number> {
  const counts = Object.fromEntries(statuses.map((status) => [status, 0])) as Record<S, number>;
  for (const row of rows) counts[row.status as S] = Number(row.n);
  return counts;
}

export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'in_progress', 'succeeded', 'failed', 'cancelled'];
export const DELIVERY_STATUSES: readonly WebhookDelivery['status'][] = ['pending', 'succeeded', 'failed'];
