import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Nanos } from '../../domain/money.ts';
import { rowMappers, type Row } from '../rows.ts';
import type {
  Account,
  ApiKeyLimits,
  ApiKeyRecord,
  IdempotencyClaim,
  IdempotencyClaimInput,
  IdempotencyRecord,
  LedgerEntry,
  NewApiKey,
  RequestRecord,
  ReserveInput,
  SettleInput,
  Store,
  StoredResponse,
} from '../types.ts';
import { MIGRATIONS } from './migrations.ts';
import { SQL } from './statements.ts';
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
      key.id,
      key.accountId,
      key.name,
      modelsParam(key.models),
      key.hash,
      key.display,
      Date.now(),
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
    const { rows } = await this.run('setKeyLimits', [
      id,
      limits.requestsPerMinute,
      limits.imagesPerMinute,
      limits.maxInFlight,
      limits.tokensPerMinute ?? null,
      limits.maxQueuedJobs ?? null,
    ]);
    return rows[0] ? toApiKey(rows[0]) : undefined;
  }

  async reserveCredits(input: ReserveInput): Promise<boolean> {
    const result = await this.run('reserve', [
      n(input.amount),
      input.accountId,
      input.requestId,
      input.keyId,
      input.model,
      input.endpoint,
      Date.now(),
      input.expiresAt,
    ]);
    return result.rowCount === 1;
  }

  async settleReservation(input: SettleInput): Promise<boolean> {
    if (input.idempotency) {
      const { accountId, key, response } = input.idempotency;
      const upstreamCost = input.upstreamCost !== undefined && input.upstreamCost >= 0n ? input.upstreamCost : null;
      const result = await this.run('settleWithIdem', [
        input.requestId,
        n(input.cost),
        nOrNull(upstreamCost),
        input.images,
        input.detail ? JSON.stringify(input.detail) : null,
        Date.now(),
        accountId,
        key,
        response.status,
        JSON.stringify(response.headers),
        response.body,
      ]);
      return result.rowCount === 1;
    }
    return this.resolve(input.requestId, 'settled', input.cost, input.upstreamCost ?? null, input.images, input.detail ?? null);
  }

  async releaseReservation(requestId: string, reason: string): Promise<boolean> {
    return this.resolve(requestId, 'released', 0n, null, 0, { reason });
  }

  private async resolve(
    requestId: string,
    status: 'settled' | 'released',
    cost: Nanos,
    upstreamCost: Nanos | null,
    images: number,
    detail: Record<string, unknown> | null,
  ): Promise<boolean> {
    const result = await this.run('resolve', [
      requestId,
      status,
      n(cost),
      nOrNull(upstreamCost !== null && upstreamCost >= 0n ? upstreamCost : null),
      images,
      detail ? JSON.stringify(detail) : null,
      Date.now(),
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
        input.accountId,
        input.key,
        input.requestHash,
        input.requestId,
        input.now,
        input.lockedUntil,
        input.expiresAt,
      ]);
      if (claimed.rowCount === 1) return { claimed: true };
      const existing = await this.getIdempotencyKey(input.accountId, input.key);
      if (existing) return { claimed: false, existing };
    }
    throw new Error('idempotency key claim did not settle after 3 attempts');
  }

  async takeOverIdempotencyKey(input: {
    accountId: string;
    key: string;
    fromRequestId: string;
    requestId: string;
    lockedUntil: number;
  }): Promise<boolean> {
    const result = await this.run('takeOverIdem', [input.accountId, input.key, input.fromRequestId, input.requestId, input.lockedUntil]);
    return result.rowCount === 1;
  }

  async completeIdempotencyKey(accountId: string, key: string, requestId: string, response: StoredResponse): Promise<boolean> {
    const result = await this.run('completeIdem', [
      accountId,
      key,
      requestId,
      response.status,
      JSON.stringify(response.headers),
      response.body,
    ]);
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
          throw new Error(`PostgreSQL migration ${migration.version} (${migration.name}) failed: ${(error as Error).message}`, {
            cause: error,
          });
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
