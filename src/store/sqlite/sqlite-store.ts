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
import { prepareStatements, type SqliteStatements } from './statements.ts';

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
  private readonly statements: SqliteStatements;
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
    this.statements = prepareStatements(this.db);
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
      limits.maxQueuedJobs ?? null,
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
