import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import type { Nanos } from '../../domain/money.ts';
import { rowMappers, type Row } from '../rows.ts';
import type { DashboardStore } from '../dashboard-types.ts';
import { SqliteDashboardStore } from './sqlite-dashboard.ts';
import type {
  Account,
  ApiKeyLimits,
  ApiKeyRecord,
  IdempotencyClaim,
  IdempotencyClaimInput,
  IdempotencyRecord,
  LedgerEntry,
  LedgerKind,
  NewApiKey,
  RequestRecord,
  ReserveInput,
  SettleInput,
  Store,
  StoredResponse,
} from '../types.ts';
import { delegateJobStore, type JobStore } from '../jobs.ts';
import { SqliteJobs } from './sqlite-jobs.ts';
import { MIGRATIONS } from './migrations.ts';

// JSON columns are stored as text.
const { toAccount, toApiKey, toIdempotency, toLedgerEntry, toRequest } = rowMappers((value) => (value ? JSON.parse(String(value)) : null));

/**
 * The embedded store. Durable by construction: WAL with synchronous=FULL (a committed charge survives power
 * loss), and every money transaction is BEGIN IMMEDIATE so a read-then-write never upgrades its lock late.
 */
// The job tables' methods come from SqliteJobs (delegateJobStore below).
export interface SqliteStore extends JobStore {}
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the JobStore methods are put on the prototype by delegateJobStore (end of file).
export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;
  readonly jobs: SqliteJobs;
  private readonly statements: ReturnType<SqliteStore['prepare']>;
  private readonly pending: Array<{ operation: () => unknown; resolve: (value: unknown) => void; reject: (error: unknown) => void }> = [];
  readonly dashboard: DashboardStore;

  constructor(filename: string) {
    if (filename !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(filename)), { recursive: true });
    this.db = new Database(filename);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('foreign_keys = ON');
    this.migrate();
    this.statements = this.prepare();
    this.jobs = new SqliteJobs(this.db);
    this.dashboard = new SqliteDashboardStore(this.db, (operation) => this.grouped(operation));
  }

  private migrate(): void {
    const current = Number(this.db.pragma('user_version', { simple: true }));
    for (let version = current; version < MIGRATIONS.length; version++) {
      this.db
        .transaction(() => {
          this.db.exec(MIGRATIONS[version]);
          this.db.pragma(`user_version = ${version + 1}`);
        })
        .immediate();
    }
  }

  private prepare() {
    const db = this.db;
    const money = <T extends Database.Statement>(statement: T): T => statement.safeIntegers(true) as T;
    return {
      insertAccount: db.prepare('INSERT INTO accounts (id, name, balance, held, created_at) VALUES (?, ?, 0, 0, ?)'),
      getAccount: money(db.prepare('SELECT * FROM accounts WHERE id = ?')),
      listAccounts: money(db.prepare('SELECT * FROM accounts ORDER BY created_at, id')),
      countAccounts: db.prepare('SELECT COUNT(*) AS n FROM accounts'),
      credit: db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?'),
      insertLedger: db.prepare(
        'INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      listLedger: money(db.prepare('SELECT * FROM ledger_entries WHERE account_id = ? ORDER BY id DESC LIMIT ?')),
      insertKey: db.prepare(
        "INSERT INTO api_keys (id, account_id, name, models, status, key_hash, display, created_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?)",
      ),
      getKey: db.prepare('SELECT * FROM api_keys WHERE id = ?'),
      // Playground keys (tied to a dashboard session) are never listed, and stop matching when they expire.
      listKeys: db.prepare(
        "SELECT * FROM api_keys WHERE account_id = ? AND status != 'deleted' AND session_hash IS NULL ORDER BY created_at, id",
      ),
      findKey: db.prepare("SELECT * FROM api_keys WHERE key_hash = ? AND status != 'deleted' AND (expires_at IS NULL OR expires_at > ?)"),
      rotateKey: db.prepare("UPDATE api_keys SET key_hash = ?, display = ? WHERE id = ? AND status = 'active'"),
      revokeKey: db.prepare("UPDATE api_keys SET status = 'revoked' WHERE id = ? AND status != 'deleted'"),
      deleteKey: db.prepare("UPDATE api_keys SET status = 'deleted', key_hash = NULL WHERE id = ? AND status != 'deleted'"),
      setKeyModels: db.prepare("UPDATE api_keys SET models = ? WHERE id = ? AND status != 'deleted'"),
      setKeyLimits: db.prepare(
        "UPDATE api_keys SET requests_per_minute = ?, images_per_minute = ?, max_in_flight = ?, tokens_per_minute = ? WHERE id = ? AND status != 'deleted'",
      ),
      // The guarded reservation: the WHERE clause is the balance check, so check and debit cannot be separated.
      reserve: db.prepare('UPDATE accounts SET balance = balance - ?, held = held + ? WHERE id = ? AND balance >= ?'),
      insertRequest: db.prepare(
        "INSERT INTO requests (id, account_id, key_id, model, endpoint, status, hold, created_at, expires_at) VALUES (?, ?, ?, ?, ?, 'held', ?, ?, ?)",
      ),
      getRequest: money(db.prepare('SELECT * FROM requests WHERE id = ?')),
      resolveRequest: db.prepare(
        "UPDATE requests SET status = ?, cost = ?, upstream_cost = ?, images = ?, detail = ?, resolved_at = ? WHERE id = ? AND status = 'held'",
      ),
      unhold: db.prepare('UPDATE accounts SET held = held - ?, balance = balance + ? WHERE id = ?'),
      listRequests: money(db.prepare('SELECT * FROM requests WHERE account_id = ? ORDER BY created_at DESC, id DESC LIMIT ?')),
      expired: db.prepare("SELECT id FROM requests WHERE status = 'held' AND expires_at < ? ORDER BY expires_at LIMIT ?"),
      getIdem: db.prepare('SELECT * FROM idempotency_keys WHERE account_id = ? AND idem_key = ?'),
      putIdem: db.prepare(
        "INSERT OR REPLACE INTO idempotency_keys (account_id, idem_key, request_hash, request_id, status, created_at, locked_until, expires_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
      ),
      takeOverIdem: db.prepare(
        "UPDATE idempotency_keys SET request_id = ?, locked_until = ? WHERE account_id = ? AND idem_key = ? AND request_id = ? AND status = 'running'",
      ),
      completeIdem: db.prepare(
        "UPDATE idempotency_keys SET status = 'completed', response_status = ?, response_headers = ?, response_body = ? WHERE account_id = ? AND idem_key = ? AND request_id = ? AND status = 'running'",
      ),
      releaseIdem: db.prepare(
        "DELETE FROM idempotency_keys WHERE account_id = ? AND idem_key = ? AND request_id = ? AND status = 'running'",
      ),
      reapIdem: db.prepare(
        'DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)',
      ),
    };
  }

  private ledger(
    accountId: string,
    kind: LedgerKind,
    availableDelta: Nanos,
    heldDelta: Nanos,
    requestId: string | null,
    note: string | null,
    now: number,
  ) {
    this.statements.insertLedger.run(accountId, kind, availableDelta, heldDelta, requestId, note, now);
  }

  async createAccount(input: { name: string; credits: Nanos; note?: string }): Promise<Account> {
    const id = `acct_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
    const now = Date.now();
    this.db
      .transaction(() => {
        this.statements.insertAccount.run(id, input.name, now);
        if (input.credits > 0n) {
          this.statements.credit.run(input.credits, id);
          this.ledger(id, 'credit', input.credits, 0n, null, input.note ?? 'initial credit', now);
        }
      })
      .immediate();
    return (await this.getAccount(id))!;
  }

  async getAccount(id: string): Promise<Account | undefined> {
    const row = this.statements.getAccount.get(id) as Row | undefined;
    return row ? toAccount(row) : undefined;
  }

  async listAccounts(): Promise<Account[]> {
    return (this.statements.listAccounts.all() as Row[]).map(toAccount);
  }

  async addCredits(accountId: string, amount: Nanos, note: string | null): Promise<Account | undefined> {
    if (amount <= 0n) throw new RangeError('addCredits takes a positive amount');
    const now = Date.now();
    const changed = await this.grouped(() => {
      const result = this.statements.credit.run(amount, accountId);
      if (result.changes !== 1) return false;
      this.ledger(accountId, 'credit', amount, 0n, null, note, now);
      return true;
    });
    return changed ? this.getAccount(accountId) : undefined;
  }

  async listLedger(accountId: string, limit: number): Promise<LedgerEntry[]> {
    return (this.statements.listLedger.all(accountId, limit) as Row[]).map(toLedgerEntry);
  }

  async createApiKey(key: NewApiKey): Promise<ApiKeyRecord> {
    this.statements.insertKey.run(
      key.id,
      key.accountId,
      key.name,
      key.models ? JSON.stringify(key.models) : null,
      key.hash,
      key.display,
      Date.now(),
    );
    return (await this.getApiKey(key.id))!;
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const row = this.statements.getKey.get(id) as Row | undefined;
    return row ? toApiKey(row) : undefined;
  }

  async listApiKeys(accountId: string): Promise<ApiKeyRecord[]> {
    return (this.statements.listKeys.all(accountId) as Row[]).map(toApiKey);
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const now = Date.now();
    const row = this.statements.findKey.get(hash, now) as Row | undefined;
    if (!row) return undefined;
    if (row.status === 'active') this.dashboard.noteKeyUse(String(row.id), now);
    return toApiKey(row);
  }

  async rotateApiKey(id: string, hash: string, display: string): Promise<ApiKeyRecord | undefined> {
    const result = this.statements.rotateKey.run(hash, display, id);
    return result.changes === 1 ? this.getApiKey(id) : undefined;
  }

  async revokeApiKey(id: string): Promise<ApiKeyRecord | undefined> {
    const result = this.statements.revokeKey.run(id);
    return result.changes === 1 ? this.getApiKey(id) : undefined;
  }

  async deleteApiKey(id: string): Promise<boolean> {
    return this.statements.deleteKey.run(id).changes === 1;
  }

  async setApiKeyModels(id: string, models: string[] | null): Promise<ApiKeyRecord | undefined> {
    const result = this.statements.setKeyModels.run(models ? JSON.stringify(models) : null, id);
    return result.changes === 1 ? this.getApiKey(id) : undefined;
  }

  async setApiKeyLimits(id: string, limits: ApiKeyLimits): Promise<ApiKeyRecord | undefined> {
    const result = this.statements.setKeyLimits.run(
      limits.requestsPerMinute,
      limits.imagesPerMinute,
      limits.maxInFlight,
      limits.tokensPerMinute ?? null,
      id,
    );
    return result.changes === 1 ? this.getApiKey(id) : undefined;
  }

  async reserveCredits(input: ReserveInput): Promise<boolean> {
    const now = Date.now();
    return this.grouped(() => {
      const result = this.statements.reserve.run(input.amount, input.amount, input.accountId, input.amount);
      if (result.changes !== 1) return false;
      this.statements.insertRequest.run(
        input.requestId,
        input.accountId,
        input.keyId,
        input.model,
        input.endpoint,
        input.amount,
        now,
        input.expiresAt,
      );
      this.ledger(input.accountId, 'hold', -input.amount, input.amount, input.requestId, null, now);
      return true;
    });
  }

  async settleReservation(input: SettleInput): Promise<boolean> {
    return this.resolve(
      input.requestId,
      'settled',
      input.cost,
      input.upstreamCost ?? null,
      input.images,
      input.detail ?? null,
      input.idempotency,
    );
  }

  async releaseReservation(requestId: string, reason: string): Promise<boolean> {
    return this.resolve(requestId, 'released', 0n, null, 0, { reason });
  }

  private resolve(
    requestId: string,
    status: 'settled' | 'released',
    cost: Nanos,
    upstreamCost: Nanos | null,
    images: number,
    detail: Record<string, unknown> | null,
    idempotency?: SettleInput['idempotency'],
  ): Promise<boolean> {
    const now = Date.now();
    return this.grouped(() => {
      const row = this.statements.getRequest.get(requestId) as Row | undefined;
      if (row?.status !== 'held') return false;
      const hold = row.hold as bigint;
      const charged = cost > hold ? hold : cost < 0n ? 0n : cost;
      const reported = upstreamCost !== null && upstreamCost >= 0n ? upstreamCost : null;
      const result = this.statements.resolveRequest.run(
        status,
        charged,
        reported,
        images,
        detail ? JSON.stringify(detail) : null,
        now,
        requestId,
      );
      if (result.changes !== 1) return false;
      const accountId = String(row.account_id);
      this.statements.unhold.run(hold, hold - charged, accountId);
      this.ledger(accountId, status === 'settled' ? 'settle' : 'release', hold - charged, -hold, requestId, null, now);
      if (idempotency) {
        const { response } = idempotency;
        this.statements.completeIdem.run(
          response.status,
          JSON.stringify(response.headers),
          response.body,
          idempotency.accountId,
          idempotency.key,
          requestId,
        );
      }
      return true;
    });
  }

  /**
   * Group commit: money operations issued in the same turn of the event loop share one IMMEDIATE transaction
   * and so one fsync, yet each runs in its own savepoint, keeps its own guard and fails alone. No caller is
   * answered before the transaction holding its operation has committed, so durability is unchanged; under
   * load this turns one fsync per operation into one per batch.
   */
  private grouped<T>(operation: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ operation, resolve: resolve as (value: unknown) => void, reject });
      if (this.pending.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      this.db
        .transaction(() => {
          for (const item of batch) {
            try {
              outcomes.push({ ok: true, value: this.db.transaction(item.operation)() });
            } catch (error) {
              outcomes.push({ ok: false, error });
            }
          }
        })
        .immediate();
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, index) => {
      const outcome = outcomes[index];
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }

  async getRequest(id: string): Promise<RequestRecord | undefined> {
    const row = this.statements.getRequest.get(id) as Row | undefined;
    return row ? toRequest(row) : undefined;
  }

  async listRequests(accountId: string, limit: number): Promise<RequestRecord[]> {
    return (this.statements.listRequests.all(accountId, limit) as Row[]).map(toRequest);
  }

  async listExpiredReservations(now: number, limit: number): Promise<string[]> {
    return (this.statements.expired.all(now, limit) as Row[]).map((row) => String(row.id));
  }

  async claimIdempotencyKey(input: IdempotencyClaimInput): Promise<IdempotencyClaim> {
    return this.db
      .transaction((): IdempotencyClaim => {
        const row = this.statements.getIdem.get(input.accountId, input.key) as Row | undefined;
        if (row && Number(row.expires_at) > input.now) return { claimed: false, existing: toIdempotency(row) };
        this.statements.putIdem.run(
          input.accountId,
          input.key,
          input.requestHash,
          input.requestId,
          input.now,
          input.lockedUntil,
          input.expiresAt,
        );
        return { claimed: true };
      })
      .immediate();
  }

  async takeOverIdempotencyKey(input: {
    accountId: string;
    key: string;
    fromRequestId: string;
    requestId: string;
    lockedUntil: number;
  }): Promise<boolean> {
    return (
      this.statements.takeOverIdem.run(input.requestId, input.lockedUntil, input.accountId, input.key, input.fromRequestId).changes === 1
    );
  }

  async completeIdempotencyKey(accountId: string, key: string, requestId: string, response: StoredResponse): Promise<boolean> {
    const result = this.statements.completeIdem.run(
      response.status,
      JSON.stringify(response.headers),
      response.body,
      accountId,
      key,
      requestId,
    );
    return result.changes === 1;
  }

  async releaseIdempotencyKey(accountId: string, key: string, requestId: string): Promise<boolean> {
    return this.statements.releaseIdem.run(accountId, key, requestId).changes === 1;
  }

  async getIdempotencyKey(accountId: string, key: string): Promise<IdempotencyRecord | undefined> {
    const row = this.statements.getIdem.get(accountId, key) as Row | undefined;
    return row ? toIdempotency(row) : undefined;
  }

  async deleteExpiredIdempotencyKeys(now: number, limit: number): Promise<number> {
    return this.statements.reapIdem.run(now, limit).changes;
  }

  async isEmpty(): Promise<boolean> {
    return Number((this.statements.countAccounts.get() as Row).n) === 0;
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

delegateJobStore(SqliteStore.prototype, (store) => store.jobs);
