import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Nanos } from '../../domain/money.ts';
import { rowMappers, type Row } from '../rows.ts';
import type {
  Account, ApiKeyLimits, ApiKeyRecord, IdempotencyClaim, IdempotencyClaimInput, IdempotencyRecord, LedgerEntry, NewApiKey,
  RequestRecord, ReserveInput, SettleInput, Store, StoredResponse,
} from '../types.ts';
import { MIGRATIONS } from './migrations.ts';
import { delegateJobStore, type JobStore } from '../jobs.ts';
import { PostgresJobs } from './postgres-jobs.ts';
import type { DashboardStore } from '../dashboard-types.ts';
import { PostgresDashboardStore } from './postgres-dashboard.ts';

// JSONB columns arrive parsed.
const { toAccount, toApiKey, toIdempotency, toLedgerEntry, toRequest } = rowMappers((value) => value);

const INT8_OID = 20;
/** First key of the two-key advisory lock that serialises migrations; the second is the target schema's hash. */
const MIGRATION_LOCK_NAMESPACE = 0x44656570; // 'Deep'

/**
 * int8 (BIGINT) arrives as bigint instead of pg's default string; every other type keeps pg's default parser.
 * Set on this store's pool only, so other pg users in the process are unaffected.
 */
const TYPES = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8_OID && format !== 'binary') return (value: string) => BigInt(value);
    return pg.types.getTypeParser(oid, format ?? 'text');
  },
} as unknown as pg.CustomTypesConfig;

/** bigint params travel as decimal strings, so no value ever passes through a JS number. */
const n = (value: Nanos): string => value.toString();
const nOrNull = (value: Nanos | null | undefined): string | null => (value === null || value === undefined ? null : value.toString());

// Every statement below is named, so pg prepares it once per connection and later calls skip parse/plan.
// Money movements are each ONE statement (data-modifying CTEs): one round-trip, one implicit transaction, atomic.
const SQL = {
  // Account row and its opening credit entry together; the entry only exists when credits > 0.
  createAccount: `
    WITH a AS (
      INSERT INTO accounts (id, name, balance, held, created_at) VALUES ($1, $2, $3::bigint, 0, $4)
      RETURNING *
    ), l AS (
      INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
      SELECT a.id, 'credit', $3::bigint, 0, NULL, $5, $4 FROM a WHERE $3::bigint > 0
    )
    SELECT * FROM a`,
  getAccount: 'SELECT * FROM accounts WHERE id = $1',
  listAccounts: 'SELECT * FROM accounts ORDER BY created_at, id',
  isEmpty: 'SELECT NOT EXISTS (SELECT 1 FROM accounts) AS empty',
  addCredits: `
    WITH a AS (
      UPDATE accounts SET balance = balance + $2::bigint WHERE id = $1
      RETURNING *
    ), l AS (
      INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
      SELECT a.id, 'credit', $2::bigint, 0, NULL, $3, $4 FROM a
    )
    SELECT * FROM a`,
  listLedger: 'SELECT * FROM ledger_entries WHERE account_id = $1 ORDER BY id DESC LIMIT $2',

  insertKey: `
    INSERT INTO api_keys (id, account_id, name, models, status, key_hash, display, created_at)
    VALUES ($1, $2, $3, $4::jsonb, 'active', $5, $6, $7)
    RETURNING *`,
  getKey: 'SELECT * FROM api_keys WHERE id = $1',
  // Playground keys (tied to a dashboard session) are never listed, and stop matching when they expire.
  listKeys: "SELECT * FROM api_keys WHERE account_id = $1 AND status <> 'deleted' AND session_hash IS NULL ORDER BY created_at, id",
  findKey: "SELECT * FROM api_keys WHERE key_hash = $1 AND status <> 'deleted' AND (expires_at IS NULL OR expires_at > $2)",
  rotateKey: "UPDATE api_keys SET key_hash = $2, display = $3 WHERE id = $1 AND status = 'active' RETURNING *",
  revokeKey: "UPDATE api_keys SET status = 'revoked' WHERE id = $1 AND status <> 'deleted' RETURNING *",
  deleteKey: "UPDATE api_keys SET status = 'deleted', key_hash = NULL WHERE id = $1 AND status <> 'deleted'",
  setKeyModels: "UPDATE api_keys SET models = $2::jsonb WHERE id = $1 AND status <> 'deleted' RETURNING *",
  setKeyLimits: `
    UPDATE api_keys SET requests_per_minute = $2, images_per_minute = $3, max_in_flight = $4, tokens_per_minute = $5
    WHERE id = $1 AND status <> 'deleted' RETURNING *`,

  // The guarded reservation. The WHERE clause is the balance check, so check and debit cannot be separated:
  // concurrent reservations queue on the account row lock and each re-evaluates `balance >= $1` on the row as
  // the previous one left it. The request row and the hold entry are written only if the debit happened.
  reserve: `
    WITH a AS (
      UPDATE accounts SET balance = balance - $1::bigint, held = held + $1::bigint
      WHERE id = $2 AND balance >= $1::bigint
      RETURNING id
    ), r AS (
      INSERT INTO requests (id, account_id, key_id, model, endpoint, status, hold, created_at, expires_at)
      SELECT $3, a.id, $4, $5, $6, 'held', $1::bigint, $7, $8 FROM a
      RETURNING id, account_id
    )
    INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
    SELECT r.account_id, 'hold', -$1::bigint, $1::bigint, r.id, NULL, $7 FROM r
    RETURNING id`,
  // Resolves a held request exactly once: concurrent resolvers queue on the request row and re-check
  // `status = 'held'`, so only the first one changes anything. The cost is clamped to [0, hold] in SQL.
  resolve: `
    WITH r AS (
      UPDATE requests
      SET status = $2, cost = LEAST(GREATEST($3::bigint, 0), hold), upstream_cost = $4::bigint, images = $5,
          detail = $6::jsonb, resolved_at = $7
      WHERE id = $1 AND status = 'held'
      RETURNING id, account_id, hold, cost
    ), a AS (
      UPDATE accounts SET held = accounts.held - r.hold, balance = accounts.balance + (r.hold - r.cost)
      FROM r WHERE accounts.id = r.account_id
      RETURNING accounts.id
    )
    INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
    SELECT r.account_id, $8, r.hold - r.cost, -r.hold, r.id, NULL, $7 FROM r JOIN a ON a.id = r.account_id
    RETURNING id`,
  // resolve, and the Idempotency-Key's response saved in the same statement (so the same transaction).
  settleWithIdem: `
    WITH r AS (
      UPDATE requests
      SET status = 'settled', cost = LEAST(GREATEST($2::bigint, 0), hold), upstream_cost = $3::bigint, images = $4,
          detail = $5::jsonb, resolved_at = $6
      WHERE id = $1 AND status = 'held'
      RETURNING id, account_id, hold, cost
    ), a AS (
      UPDATE accounts SET held = accounts.held - r.hold, balance = accounts.balance + (r.hold - r.cost)
      FROM r WHERE accounts.id = r.account_id
      RETURNING accounts.id
    ), k AS (
      UPDATE idempotency_keys SET status = 'completed', response_status = $9, response_headers = $10::jsonb, response_body = $11
      FROM r WHERE idempotency_keys.account_id = $7 AND idempotency_keys.idem_key = $8 AND idempotency_keys.request_id = r.id
        AND idempotency_keys.status = 'running'
      RETURNING 1
    )
    INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
    SELECT r.account_id, 'settle', r.hold - r.cost, -r.hold, r.id, NULL, $6 FROM r JOIN a ON a.id = r.account_id
    RETURNING id`,
  getRequest: 'SELECT * FROM requests WHERE id = $1',
  listRequests: 'SELECT * FROM requests WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2',
  expired: "SELECT id FROM requests WHERE status = 'held' AND expires_at < $1 ORDER BY expires_at LIMIT $2",

  // The claim is arbitrated by the primary key: concurrent claims of one key queue on it, and exactly one inserts
  // (or replaces an expired record). The losers get no row back and read the winner's record in a new statement.
  claimIdem: `
    INSERT INTO idempotency_keys (account_id, idem_key, request_hash, request_id, status, created_at, locked_until, expires_at)
    VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)
    ON CONFLICT (account_id, idem_key) DO UPDATE
      SET request_hash = EXCLUDED.request_hash, request_id = EXCLUDED.request_id, status = 'running',
          response_status = NULL, response_headers = NULL, response_body = NULL,
          created_at = EXCLUDED.created_at, locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at
      WHERE idempotency_keys.expires_at <= $5
    RETURNING request_id`,
  getIdem: 'SELECT * FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2',
  takeOverIdem: `
    UPDATE idempotency_keys SET request_id = $4, locked_until = $5
    WHERE account_id = $1 AND idem_key = $2 AND request_id = $3 AND status = 'running'`,
  completeIdem: `
    UPDATE idempotency_keys SET status = 'completed', response_status = $4, response_headers = $5::jsonb, response_body = $6
    WHERE account_id = $1 AND idem_key = $2 AND request_id = $3 AND status = 'running'`,
  releaseIdem: "DELETE FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2 AND request_id = $3 AND status = 'running'",
  reapIdem: `
    DELETE FROM idempotency_keys WHERE (account_id, idem_key) IN (
      SELECT account_id, idem_key FROM idempotency_keys WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
    )`,
} as const;

type StatementName = keyof typeof SQL;

/**
 * The PostgreSQL store, for several gateway instances sharing one database. Same semantics as SqliteStore;
 * every money movement is a single atomic statement, so no interleaving of instances can overdraw an account
 * or resolve a hold twice.
 */
// The job tables' methods come from PostgresJobs (delegateJobStore below).
export interface PostgresStore extends JobStore {}
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the JobStore methods are put on the prototype by delegateJobStore (end of file).
export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  private closed = false;
  readonly jobs: PostgresJobs;
  readonly dashboard: DashboardStore;

  private constructor(private readonly pool: pg.Pool) {
    this.jobs = new PostgresJobs(pool);
    this.dashboard = new PostgresDashboardStore(pool);
  }

  /** Opens a pool on `url` and brings the schema up to date (safe when several instances start at once). */
  static async connect(url: string, options: { max?: number } = {}): Promise<PostgresStore> {
    const pool = new pg.Pool({ connectionString: url, types: TYPES, ...(options.max ? { max: options.max } : {}) });
    // An idle client losing its connection (server restart, network) must not crash the process: the pool drops
    // that client and the next query opens a new connection.
    pool.on('error', () => {});
    try {
      await migrate(pool);
    } catch (error) {
      await pool.end().catch(() => {});
      throw error;
    }
    return new PostgresStore(pool);
  }

  private async run(name: StatementName, values: unknown[]): Promise<pg.QueryResult<Row>> {
    return this.pool.query<Row>({ name: `deepshi_${name}`, text: SQL[name], values });
  }

  async createAccount(input: { name: string; credits: Nanos; note?: string }): Promise<Account> {
    const id = `acct_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
    const { rows } = await this.run('createAccount', [id, input.name, n(input.credits), Date.now(), input.note ?? 'initial credit']);
    return toAccount(rows[0]);
  }

  async getAccount(id: string): Promise<Account | undefined> {
    const { rows } = await this.run('getAccount', [id]);
    return rows[0] ? toAccount(rows[0]) : undefined;
  }

  async listAccounts(): Promise<Account[]> {
    return (await this.run('listAccounts', [])).rows.map(toAccount);
  }

  async addCredits(accountId: string, amount: Nanos, note: string | null): Promise<Account | undefined> {
    if (amount <= 0n) throw new RangeError('addCredits takes a positive amount');
    const { rows } = await this.run('addCredits', [accountId, n(amount), note, Date.now()]);
    return rows[0] ? toAccount(rows[0]) : undefined;
  }

  async listLedger(accountId: string, limit: number): Promise<LedgerEntry[]> {
    return (await this.run('listLedger', [accountId, limit])).rows.map(toLedgerEntry);
  }

  async createApiKey(key: NewApiKey): Promise<ApiKeyRecord> {
    const { rows } = await this.run('insertKey', [
      key.id, key.accountId, key.name, modelsParam(key.models), key.hash, key.display, Date.now(),
    ]);
    return toApiKey(rows[0]);
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.run('getKey', [id]);
    return rows[0] ? toApiKey(rows[0]) : undefined;
  }

  async listApiKeys(accountId: string): Promise<ApiKeyRecord[]> {
    return (await this.run('listKeys', [accountId])).rows.map(toApiKey);
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const now = Date.now();
    const { rows } = await this.run('findKey', [hash, now]);
    if (!rows[0]) return undefined;
    if (rows[0].status === 'active') this.dashboard.noteKeyUse(String(rows[0].id), now);
    return toApiKey(rows[0]);
  }

  async rotateApiKey(id: string, hash: string, display: string): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.run('rotateKey', [id, hash, display]);
    return rows[0] ? toApiKey(rows[0]) : undefined;
  }

  async revokeApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.run('revokeKey', [id]);
    return rows[0] ? toApiKey(rows[0]) : undefined;
  }

  async deleteApiKey(id: string): Promise<boolean> {
    return (await this.run('deleteKey', [id])).rowCount === 1;
  }

  async setApiKeyModels(id: string, models: string[] | null): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.run('setKeyModels', [id, modelsParam(models)]);
    return rows[0] ? toApiKey(rows[0]) : undefined;
  }

  async setApiKeyLimits(id: string, limits: ApiKeyLimits): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.run('setKeyLimits', [id, limits.requestsPerMinute, limits.imagesPerMinute, limits.maxInFlight, limits.tokensPerMinute ?? null]);
    return rows[0] ? toApiKey(rows[0]) : undefined;
  }

  async reserveCredits(input: ReserveInput): Promise<boolean> {
    const result = await this.run('reserve', [
      n(input.amount), input.accountId, input.requestId, input.keyId, input.model, input.endpoint, Date.now(), input.expiresAt,
    ]);
    return result.rowCount === 1;
  }

  async settleReservation(input: SettleInput): Promise<boolean> {
    if (input.idempotency) {
      const { accountId, key, response } = input.idempotency;
      const upstreamCost = input.upstreamCost !== undefined && input.upstreamCost >= 0n ? input.upstreamCost : null;
      const result = await this.run('settleWithIdem', [
        input.requestId, n(input.cost), nOrNull(upstreamCost), input.images, input.detail ? JSON.stringify(input.detail) : null, Date.now(),
        accountId, key, response.status, JSON.stringify(response.headers), response.body,
      ]);
      return result.rowCount === 1;
    }
    return this.resolve(input.requestId, 'settled', input.cost, input.upstreamCost ?? null, input.images, input.detail ?? null);
  }

  async releaseReservation(requestId: string, reason: string): Promise<boolean> {
    return this.resolve(requestId, 'released', 0n, null, 0, { reason });
  }

  private async resolve(
    requestId: string, status: 'settled' | 'released', cost: Nanos, upstreamCost: Nanos | null, images: number,
    detail: Record<string, unknown> | null,
  ): Promise<boolean> {
    const result = await this.run('resolve', [
      requestId, status, n(cost), nOrNull(upstreamCost !== null && upstreamCost >= 0n ? upstreamCost : null), images, detail ? JSON.stringify(detail) : null, Date.now(),
      status === 'settled' ? 'settle' : 'release',
    ]);
    return result.rowCount === 1;
  }

  async getRequest(id: string): Promise<RequestRecord | undefined> {
    const { rows } = await this.run('getRequest', [id]);
    return rows[0] ? toRequest(rows[0]) : undefined;
  }

  async listRequests(accountId: string, limit: number): Promise<RequestRecord[]> {
    return (await this.run('listRequests', [accountId, limit])).rows.map(toRequest);
  }

  async listExpiredReservations(now: number, limit: number): Promise<string[]> {
    return (await this.run('expired', [now, limit])).rows.map((row) => String(row.id));
  }

  async claimIdempotencyKey(input: IdempotencyClaimInput): Promise<IdempotencyClaim> {
    // A record read as absent was reaped between the two statements: claim again (bounded; it cannot keep happening).
    for (let attempt = 0; attempt < 3; attempt++) {
      const claimed = await this.run('claimIdem', [
        input.accountId, input.key, input.requestHash, input.requestId, input.now, input.lockedUntil, input.expiresAt,
      ]);
      if (claimed.rowCount === 1) return { claimed: true };
      const existing = await this.getIdempotencyKey(input.accountId, input.key);
      if (existing) return { claimed: false, existing };
    }
    throw new Error('idempotency key claim did not settle after 3 attempts');
  }

  async takeOverIdempotencyKey(input: { accountId: string; key: string; fromRequestId: string; requestId: string; lockedUntil: number }): Promise<boolean> {
    const result = await this.run('takeOverIdem', [input.accountId, input.key, input.fromRequestId, input.requestId, input.lockedUntil]);
    return result.rowCount === 1;
  }

  async completeIdempotencyKey(accountId: string, key: string, requestId: string, response: StoredResponse): Promise<boolean> {
    const result = await this.run('completeIdem', [accountId, key, requestId, response.status, JSON.stringify(response.headers), response.body]);
    return result.rowCount === 1;
  }

  async releaseIdempotencyKey(accountId: string, key: string, requestId: string): Promise<boolean> {
    return (await this.run('releaseIdem', [accountId, key, requestId])).rowCount === 1;
  }

  async getIdempotencyKey(accountId: string, key: string): Promise<IdempotencyRecord | undefined> {
    const { rows } = await this.run('getIdem', [accountId, key]);
    return rows[0] ? toIdempotency(rows[0]) : undefined;
  }

  async deleteExpiredIdempotencyKeys(now: number, limit: number): Promise<number> {
    return (await this.run('reapIdem', [now, limit])).rowCount ?? 0;
  }

  async isEmpty(): Promise<boolean> {
    return (await this.run('isEmpty', [])).rows[0].empty === true;
  }

  async ping(): Promise<void> {
    await this.pool.query('SELECT 1');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/**
 * Applies pending migrations, each in its own transaction, under a session advisory lock keyed by the target
 * schema: instances starting together queue here, and each one after the first finds nothing left to do.
 */
async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const lockArgs = [MIGRATION_LOCK_NAMESPACE];
    const lockKey = "$1::int, hashtext(coalesce(current_schema(), ''))";
    await client.query(`SELECT pg_advisory_lock(${lockKey})`, lockArgs);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
      )`);
      const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
      const applied = new Set(rows.map((row) => Number(row.version)));
      for (const migration of MIGRATIONS) {
        if (applied.has(migration.version)) continue;
        await client.query('BEGIN');
        try {
          await client.query(migration.sql);
          await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch(() => {});
          throw new Error(`PostgreSQL migration ${migration.version} (${migration.name}) failed: ${(error as Error).message}`, { cause: error });
        }
      }
    } finally {
      await client.query(`SELECT pg_advisory_unlock(${lockKey})`, lockArgs).catch((error: Error) => {
        broken = error; // a connection that may still hold the lock must not go back to the pool
      });
    }
  } catch (error) {
    broken ??= error as Error;
    throw error;
  } finally {
    client.release(broken ?? false);
  }
}

function modelsParam(models: string[] | null): string | null {
  return models ? JSON.stringify(models) : null;
}

delegateJobStore(PostgresStore.prototype, (store) => store.jobs);
