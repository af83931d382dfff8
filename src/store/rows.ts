import type { Account, ApiKeyRecord, IdempotencyRecord, LedgerEntry, LedgerKind, RequestRecord } from './types.ts';

/**
 * Row → record mapping, shared by the SQLite and PostgreSQL stores (the two schemas have the same columns).
 * Money columns must already arrive as bigint (better-sqlite3 `safeIntegers`, pg's int8 parser); other integers
 * may be number or bigint and are read with Number(). The only difference is how a JSON column arrives, so each
 * store passes its own `readJson`.
 */
export type Row = Record<string, unknown>;

/** A JSON column's value (`null` for SQL NULL): SQLite stores JSON as text, PostgreSQL's JSONB arrives parsed. */
export type JsonReader = (value: unknown) => unknown;

export interface RowMappers {
  toAccount(row: Row): Account;
  toLedgerEntry(row: Row): LedgerEntry;
  toApiKey(row: Row): ApiKeyRecord;
  toRequest(row: Row): RequestRecord;
  toIdempotency(row: Row): IdempotencyRecord;
}

export function rowMappers(readJson: JsonReader): RowMappers {
  const json = <T>(value: unknown): T | null => (readJson(value) as T | null) ?? null;
  const intOrNull = (value: unknown): number | null => (value === null ? null : Number(value));
  return {
    toAccount: (row) => ({
      id: String(row.id),
      name: String(row.name),
      balance: row.balance as bigint,
      held: row.held as bigint,
      createdAt: Number(row.created_at),
    }),
    toLedgerEntry: (row) => ({
      id: Number(row.id),
      accountId: String(row.account_id),
      kind: row.kind as LedgerKind,
      availableDelta: row.available_delta as bigint,
      heldDelta: row.held_delta as bigint,
      requestId: (row.request_id as string | null) ?? null,
      note: (row.note as string | null) ?? null,
      createdAt: Number(row.created_at),
    }),
    toApiKey: (row) => ({
      id: String(row.id),
      accountId: String(row.account_id),
      name: String(row.name),
      models: json<string[]>(row.models),
      status: row.status as ApiKeyRecord['status'],
      display: String(row.display),
      createdAt: Number(row.created_at),
      limits: {
        requestsPerMinute: intOrNull(row.requests_per_minute),
        imagesPerMinute: intOrNull(row.images_per_minute),
        maxInFlight: intOrNull(row.max_in_flight),
        tokensPerMinute: intOrNull(row.tokens_per_minute ?? null),
        maxQueuedJobs: intOrNull(row.max_queued_jobs ?? null),
      },
      lastUsedAt: intOrNull(row.last_used_at ?? null),
    }),
    toRequest: (row) => ({
      id: String(row.id),
      accountId: String(row.account_id),
      keyId: String(row.key_id),
      model: String(row.model),
      endpoint: String(row.endpoint),
      status: row.status as RequestRecord['status'],
      hold: row.hold as bigint,
      cost: row.cost as bigint,
      upstreamCost: (row.upstream_cost as bigint | null) ?? null,
      images: Number(row.images),
      detail: json<Record<string, unknown>>(row.detail),
      createdAt: Number(row.created_at),
      resolvedAt: intOrNull(row.resolved_at),
      expiresAt: Number(row.expires_at),
    }),
    toIdempotency: (row) => {
      const completed = row.status === 'completed';
      return {
        accountId: String(row.account_id),
        key: String(row.idem_key),
        requestHash: String(row.request_hash),
        requestId: String(row.request_id),
        status: completed ? 'completed' : 'running',
        response: completed
          ? {
              status: Number(row.response_status),
              headers: json<Record<string, string>>(row.response_headers)!,
              body: String(row.response_body),
            }
          : null,
        createdAt: Number(row.created_at),
        lockedUntil: Number(row.locked_until),
        expiresAt: Number(row.expires_at),
      };
    },
  };
}
