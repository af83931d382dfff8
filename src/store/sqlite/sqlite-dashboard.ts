import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { Nanos } from '../../domain/money.ts';
import type {
  CreditCodeRecord,
  DailyModelSpend,
  DashboardStore,
  DebitResult,
  ModelMargin,
  NewCreditCode,
  NewSession,
  NewUser,
  RedeemResult,
  SessionRecord,
  SpendTotals,
  UsageFilter,
  UserRecord,
} from '../dashboard-types.ts';
import { dashboardRowMappers, KeyUseThrottle } from '../dashboard-rows.ts';
import { rowMappers, type Row } from '../rows.ts';
import { prepareModelMargins } from './sqlite-margins.ts';
import type { Account, ApiKeyRecord, LedgerEntry, NewApiKey, RequestRecord } from '../types.ts';

/** Appended to SqliteStore's migrations (src/store/sqlite/sqlite-store.ts). */
export const SQLITE_DASHBOARD_MIGRATION = `
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
ALTER TABLE api_keys ADD COLUMN session_hash TEXT;
CREATE INDEX api_keys_by_session ON api_keys(session_hash) WHERE session_hash IS NOT NULL;
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('member','operator')),
  account_id TEXT REFERENCES accounts(id),
  created_at INTEGER NOT NULL,
  password_changed_at INTEGER NOT NULL,
  CHECK (role = 'operator' OR account_id IS NOT NULL)
);
CREATE INDEX users_by_account ON users(account_id);
CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  user_id TEXT REFERENCES users(id),
  role TEXT NOT NULL CHECK (role IN ('member','operator')),
  credential TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);
CREATE TABLE credit_codes (
  id TEXT PRIMARY KEY,
  code_hash TEXT NOT NULL UNIQUE,
  code_prefix TEXT NOT NULL,
  amount INTEGER NOT NULL CHECK (amount > 0),
  note TEXT,
  created_at INTEGER NOT NULL,
  redeemed_at INTEGER,
  redeemed_by TEXT REFERENCES accounts(id)
);
CREATE INDEX credit_codes_by_created ON credit_codes(created_at);
`;

const { toAccount, toApiKey, toLedgerEntry, toRequest } = rowMappers((value) => (value ? JSON.parse(String(value)) : null));
const { toUser, toCreditCode } = dashboardRowMappers;

/** Money operations go through the store's group commit (SqliteStore.grouped), so they share its fsyncs. */
type Grouped = <T>(operation: () => T) => Promise<T>;

export class SqliteDashboardStore implements DashboardStore {
  private readonly s: ReturnType<SqliteDashboardStore['prepare']>;
  private readonly keyUse = new KeyUseThrottle();
  private readonly margins: (since: number) => ModelMargin[];

  constructor(
    private readonly db: Database.Database,
    private readonly grouped: Grouped,
  ) {
    this.s = this.prepare();
    this.margins = prepareModelMargins(db);
  }

  private prepare() {
    const db = this.db;
    const money = <T extends Database.Statement>(statement: T): T => statement.safeIntegers(true) as T;
    return {
      insertUser: db.prepare(
        'INSERT INTO users (id, email, password_hash, role, account_id, created_at, password_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING',
      ),
      getUser: db.prepare('SELECT * FROM users WHERE id = ?'),
      userByEmail: db.prepare('SELECT * FROM users WHERE email = ?'),
      listUsers: db.prepare('SELECT * FROM users ORDER BY created_at, id'),
      listAccountUsers: db.prepare('SELECT * FROM users WHERE account_id = ? ORDER BY created_at, id'),
      setPassword: db.prepare('UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?'),
      deleteUserSessionKeys: db.prepare(
        "UPDATE api_keys SET status = 'deleted', key_hash = NULL WHERE session_hash IN (SELECT token_hash FROM sessions WHERE user_id = ? AND token_hash IS NOT ?)",
      ),
      deleteUserSessions: db.prepare('DELETE FROM sessions WHERE user_id = ? AND token_hash IS NOT ?'),
      insertAccount: db.prepare('INSERT INTO accounts (id, name, balance, held, created_at) VALUES (?, ?, ?, 0, ?)'),
      insertLedger: db.prepare(
        'INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at) VALUES (?, ?, ?, ?, NULL, ?, ?)',
      ),
      getAccount: money(db.prepare('SELECT * FROM accounts WHERE id = ?')),
      insertSession: db.prepare(
        'INSERT INTO sessions (token_hash, user_id, role, credential, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      getSession: db.prepare('SELECT * FROM sessions WHERE token_hash = ? AND expires_at > ?'),
      deleteSessionKeys: db.prepare(
        "UPDATE api_keys SET status = 'deleted', key_hash = NULL WHERE session_hash = ? AND status != 'deleted'",
      ),
      deleteSession: db.prepare('DELETE FROM sessions WHERE token_hash = ?'),
      expiredSessions: db.prepare('SELECT token_hash FROM sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?'),
      insertPlaygroundKey: db.prepare(
        "INSERT INTO api_keys (id, account_id, name, models, status, key_hash, display, created_at, expires_at, session_hash) VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)",
      ),
      getKey: db.prepare('SELECT * FROM api_keys WHERE id = ?'),
      touchKey: db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)'),
      insertCode: db.prepare('INSERT INTO credit_codes (id, code_hash, code_prefix, amount, note, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      getCode: money(db.prepare('SELECT * FROM credit_codes WHERE id = ?')),
      codeByHash: money(db.prepare('SELECT * FROM credit_codes WHERE code_hash = ?')),
      listCodes: money(db.prepare('SELECT * FROM credit_codes ORDER BY created_at DESC, id DESC LIMIT ?')),
      claimCode: money(
        db.prepare(
          'UPDATE credit_codes SET redeemed_at = ?, redeemed_by = ? WHERE code_hash = ? AND redeemed_at IS NULL RETURNING amount, code_prefix',
        ),
      ),
      credit: db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?'),
      debit: db.prepare('UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ?'),
      searchAccounts: money(
        db.prepare(`
        SELECT * FROM accounts a
        WHERE instr(lower(a.id), @q) > 0 OR instr(lower(a.name), @q) > 0
           OR EXISTS (SELECT 1 FROM users u WHERE u.account_id = a.id AND instr(u.email, @q) > 0)
        ORDER BY a.created_at DESC, a.id DESC LIMIT @limit`),
      ),
      spendSince: money(
        db.prepare(`
        SELECT COALESCE(SUM(CASE WHEN created_at >= @today THEN cost ELSE 0 END), 0) AS today,
               COALESCE(SUM(CASE WHEN created_at >= @week THEN cost ELSE 0 END), 0) AS week,
               COALESCE(SUM(cost), 0) AS month
        FROM requests WHERE account_id = @account AND status = 'settled' AND created_at >= @month`),
      ),
      dailySpend: money(
        db.prepare(`
        SELECT created_at / 86400000 AS day, model, SUM(cost) AS cost
        FROM requests WHERE account_id = ? AND status = 'settled' AND created_at >= ?
        GROUP BY day, model HAVING SUM(cost) > 0 ORDER BY day, model`),
      ),
      // One statement for every filter combination: a null parameter switches its condition off.
      queryUsage: money(
        db.prepare(`
        SELECT * FROM requests
        WHERE account_id = @account
          AND (@key IS NULL OR key_id = @key) AND (@model IS NULL OR model = @model)
          AND (@status IS NULL OR status = @status) AND (@endpoint IS NULL OR endpoint = @endpoint)
          AND (@from IS NULL OR created_at >= @from) AND (@to IS NULL OR created_at < @to)
          AND (@beforeAt IS NULL OR created_at < @beforeAt OR (created_at = @beforeAt AND id < @beforeId))
        ORDER BY created_at DESC, id DESC LIMIT @limit`),
      ),
      ledgerPage: money(db.prepare('SELECT * FROM ledger_entries WHERE account_id = ? AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?')),
    };
  }

  async createUser(user: NewUser): Promise<UserRecord | undefined> {
    const now = Date.now();
    const result = this.s.insertUser.run(user.id, user.email, user.passwordHash, user.role, user.accountId, now, now);
    return result.changes === 1 ? this.getUser(user.id) : undefined;
  }

  async createAccountWithUser(input: { accountName: string; credits: Nanos; note: string; user: Omit<NewUser, 'accountId' | 'role'> }) {
    const accountId = `acct_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
    const now = Date.now();
    const created = this.db
      .transaction(() => {
        if (this.s.userByEmail.get(input.user.email)) return false;
        this.s.insertAccount.run(accountId, input.accountName, input.credits, now);
        if (input.credits > 0n) this.s.insertLedger.run(accountId, 'credit', input.credits, 0n, input.note, now);
        this.s.insertUser.run(input.user.id, input.user.email, input.user.passwordHash, 'member', accountId, now, now);
        return true;
      })
      .immediate();
    if (!created) return undefined;
    return { account: toAccount(this.s.getAccount.get(accountId) as Row), user: (await this.getUser(input.user.id))! };
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const row = this.s.getUser.get(id) as Row | undefined;
    return row ? toUser(row) : undefined;
  }

  async findUserByEmail(email: string): Promise<UserRecord | undefined> {
    const row = this.s.userByEmail.get(email) as Row | undefined;
    return row ? toUser(row) : undefined;
  }

  async listUsers(accountId?: string): Promise<UserRecord[]> {
    const rows = (accountId === undefined ? this.s.listUsers.all() : this.s.listAccountUsers.all(accountId)) as Row[];
    return rows.map(toUser);
  }

  async setUserPassword(userId: string, passwordHash: string, keepSession: string | null): Promise<boolean> {
    return this.db
      .transaction(() => {
        if (this.s.setPassword.run(passwordHash, Date.now(), userId).changes !== 1) return false;
        this.s.deleteUserSessionKeys.run(userId, keepSession);
        this.s.deleteUserSessions.run(userId, keepSession);
        return true;
      })
      .immediate();
  }

  async createSession(session: NewSession): Promise<void> {
    this.s.insertSession.run(session.tokenHash, session.userId, session.role, session.credential, Date.now(), session.expiresAt);
  }

  async getSession(tokenHash: string, now: number): Promise<SessionRecord | undefined> {
    const row = this.s.getSession.get(tokenHash, now) as Row | undefined;
    if (!row) return undefined;
    const user = row.user_id === null ? null : ((await this.getUser(String(row.user_id))) ?? null);
    if (row.user_id !== null && !user) return undefined;
    return {
      tokenHash: String(row.token_hash),
      userId: (row.user_id as string | null) ?? null,
      role: row.role as SessionRecord['role'],
      credential: (row.credential as string | null) ?? null,
      createdAt: Number(row.created_at),
      expiresAt: Number(row.expires_at),
      user,
    };
  }

  async deleteSession(tokenHash: string): Promise<boolean> {
    return this.db
      .transaction(() => {
        this.s.deleteSessionKeys.run(tokenHash);
        return this.s.deleteSession.run(tokenHash).changes === 1;
      })
      .immediate();
  }

  async deleteExpiredSessions(now: number, limit: number): Promise<number> {
    const hashes = (this.s.expiredSessions.all(now, limit) as Row[]).map((row) => String(row.token_hash));
    let deleted = 0;
    for (const hash of hashes) if (await this.deleteSession(hash)) deleted++;
    return deleted;
  }

  async createPlaygroundKey(key: NewApiKey & { sessionHash: string; expiresAt: number }): Promise<ApiKeyRecord> {
    this.s.insertPlaygroundKey.run(
      key.id,
      key.accountId,
      key.name,
      key.models ? JSON.stringify(key.models) : null,
      key.hash,
      key.display,
      Date.now(),
      key.expiresAt,
      key.sessionHash,
    );
    return toApiKey(this.s.getKey.get(key.id) as Row);
  }

  noteKeyUse(keyId: string, now: number): void {
    if (!this.keyUse.due(keyId, now)) return;
    // Rides in the next group commit: no fsync of its own under load, and the request never waits for it.
    this.grouped(() => this.s.touchKey.run(now, keyId, now - KeyUseThrottle.intervalMs)).catch(() => this.keyUse.forget(keyId));
  }

  async createCreditCodes(codes: NewCreditCode[]): Promise<CreditCodeRecord[]> {
    const now = Date.now();
    this.db
      .transaction(() => {
        for (const code of codes) this.s.insertCode.run(code.id, code.hash, code.prefix, code.amount, code.note, now);
      })
      .immediate();
    return codes.map((code) => toCreditCode(this.s.getCode.get(code.id) as Row));
  }

  async listCreditCodes(limit: number): Promise<CreditCodeRecord[]> {
    return (this.s.listCodes.all(limit) as Row[]).map(toCreditCode);
  }

  async redeemCreditCode(input: { hash: string; accountId: string; note: string }): Promise<RedeemResult> {
    const now = Date.now();
    return this.grouped((): RedeemResult => {
      if (!this.s.getAccount.get(input.accountId)) return { outcome: 'unknown' };
      const claimed = this.s.claimCode.get(now, input.accountId, input.hash) as Row | undefined;
      if (!claimed) return this.s.codeByHash.get(input.hash) ? { outcome: 'already_redeemed' } : { outcome: 'unknown' };
      const amount = claimed.amount as bigint;
      this.s.credit.run(amount, input.accountId);
      this.s.insertLedger.run(input.accountId, 'credit', amount, 0n, `${input.note} ${String(claimed.code_prefix)}…`, now);
      return { outcome: 'redeemed', account: toAccount(this.s.getAccount.get(input.accountId) as Row), amount };
    });
  }

  async debitAccount(accountId: string, amount: Nanos, note: string | null): Promise<DebitResult> {
    if (amount <= 0n) throw new RangeError('debitAccount takes a positive amount');
    const now = Date.now();
    return this.grouped((): DebitResult => {
      if (!this.s.getAccount.get(accountId)) return { outcome: 'unknown' };
      if (this.s.debit.run(amount, accountId, amount).changes !== 1) return { outcome: 'insufficient' };
      this.s.insertLedger.run(accountId, 'adjustment', -amount, 0n, note, now);
      return { outcome: 'debited', account: toAccount(this.s.getAccount.get(accountId) as Row) };
    });
  }

  async searchAccounts(query: string, limit: number): Promise<Account[]> {
    return (this.s.searchAccounts.all({ q: query.toLowerCase(), limit }) as Row[]).map(toAccount);
  }

  async spendSince(accountId: string, since: { today: number; week: number; month: number }): Promise<SpendTotals> {
    const row = this.s.spendSince.get({ account: accountId, ...since }) as Row;
    return { today: BigInt(row.today as bigint), last7Days: BigInt(row.week as bigint), last30Days: BigInt(row.month as bigint) };
  }

  async dailySpend(accountId: string, since: number): Promise<DailyModelSpend[]> {
    return (this.s.dailySpend.all(accountId, since) as Row[]).map((row) => ({
      day: Number(row.day),
      model: String(row.model),
      cost: BigInt(row.cost as bigint),
    }));
  }

  async modelMargins(since: number): Promise<ModelMargin[]> {
    return this.margins(since);
  }

  async queryUsage(filter: UsageFilter): Promise<RequestRecord[]> {
    const rows = this.s.queryUsage.all({
      account: filter.accountId,
      key: filter.keyId ?? null,
      model: filter.model ?? null,
      status: filter.status ?? null,
      endpoint: filter.endpoint ?? null,
      from: filter.from ?? null,
      to: filter.to ?? null,
      beforeAt: filter.before?.createdAt ?? null,
      beforeId: filter.before?.id ?? null,
      limit: filter.limit,
    }) as Row[];
    return rows.map(toRequest);
  }

  async listLedgerPage(accountId: string, limit: number, beforeId: number | null): Promise<LedgerEntry[]> {
    return (this.s.ledgerPage.all(accountId, beforeId, beforeId, limit) as Row[]).map(toLedgerEntry);
  }
}
