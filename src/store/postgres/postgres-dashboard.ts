import { randomUUID } from 'node:crypto';
import type pg from 'pg';
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
import { queryModelMargins } from './postgres-margins.ts';
import type { Account, ApiKeyRecord, LedgerEntry, NewApiKey, RequestRecord } from '../types.ts';

/** Appended to the PostgreSQL migrations (src/store/postgres/migrations.ts); mirrors SQLITE_DASHBOARD_MIGRATION. */
export const POSTGRES_DASHBOARD_MIGRATION: { name: string; sql: string } = {
  name: 'dashboard: users, sessions, credit codes, key last use, playground keys',
  sql: `
ALTER TABLE api_keys
  ADD COLUMN last_used_at BIGINT,
  -- Playground keys: tied to the dashboard session that made them, expiring on their own.
  ADD COLUMN expires_at BIGINT,
  ADD COLUMN session_hash TEXT;
CREATE INDEX api_keys_by_session ON api_keys(session_hash) WHERE session_hash IS NOT NULL;

CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  -- scrypt$N$r$p$salt$hash: never the password.
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('member','operator')),
  account_id TEXT REFERENCES accounts(id),
  created_at BIGINT NOT NULL,
  password_changed_at BIGINT NOT NULL,
  CHECK (role = 'operator' OR account_id IS NOT NULL)
);
CREATE INDEX users_by_account ON users(account_id);

-- token_hash is the SHA-256 of the cookie's token: the database alone cannot sign anyone in.
CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  user_id TEXT REFERENCES users(id),
  role TEXT NOT NULL CHECK (role IN ('member','operator')),
  credential TEXT,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);

CREATE TABLE credit_codes (
  id TEXT PRIMARY KEY,
  code_hash TEXT NOT NULL UNIQUE,
  code_prefix TEXT NOT NULL,
  amount BIGINT NOT NULL CHECK (amount > 0),
  note TEXT,
  created_at BIGINT NOT NULL,
  redeemed_at BIGINT,
  redeemed_by TEXT REFERENCES accounts(id)
);
CREATE INDEX credit_codes_by_created ON credit_codes(created_at);
`,
};

const { toAccount, toApiKey, toLedgerEntry, toRequest } = rowMappers((value) => value);
const { toUser, toCreditCode } = dashboardRowMappers;

const SQL = {
  insertUser: `
    INSERT INTO users (id, email, password_hash, role, account_id, created_at, password_changed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (email) DO NOTHING RETURNING *`,
  getUser: 'SELECT * FROM users WHERE id = $1',
  userByEmail: 'SELECT * FROM users WHERE email = $1',
  listUsers: 'SELECT * FROM users ORDER BY created_at, id',
  listAccountUsers: 'SELECT * FROM users WHERE account_id = $1 ORDER BY created_at, id',
  insertSession: 'INSERT INTO sessions (token_hash, user_id, role, credential, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)',
  getSession: `
    SELECT s.token_hash, s.user_id, s.role AS session_role, s.credential, s.created_at AS session_created_at, s.expires_at,
           u.id, u.email, u.password_hash, u.role, u.account_id, u.created_at, u.password_changed_at
    FROM sessions s LEFT JOIN users u ON u.id = s.user_id
    WHERE s.token_hash = $1 AND s.expires_at > $2`,
  // The session and its playground keys go together, in one statement.
  deleteSession: `
    WITH k AS (UPDATE api_keys SET status = 'deleted', key_hash = NULL WHERE session_hash = $1 AND status <> 'deleted')
    DELETE FROM sessions WHERE token_hash = $1`,
  expiredSessions: 'SELECT token_hash FROM sessions WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2',
  setPassword: `
    WITH u AS (UPDATE users SET password_hash = $2, password_changed_at = $3 WHERE id = $1 RETURNING id),
    gone AS (DELETE FROM sessions WHERE user_id IN (SELECT id FROM u) AND token_hash IS DISTINCT FROM $4 RETURNING token_hash),
    k AS (UPDATE api_keys SET status = 'deleted', key_hash = NULL WHERE session_hash IN (SELECT token_hash FROM gone) AND status <> 'deleted')
    SELECT id FROM u`,
  insertPlaygroundKey: `
    INSERT INTO api_keys (id, account_id, name, models, status, key_hash, display, created_at, expires_at, session_hash)
    VALUES ($1, $2, $3, $4::jsonb, 'active', $5, $6, $7, $8, $9) RETURNING *`,
  touchKey: 'UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)',
  listCodes: 'SELECT * FROM credit_codes ORDER BY created_at DESC, id DESC LIMIT $1',
  codeByHash: 'SELECT id FROM credit_codes WHERE code_hash = $1',
  // Claim and credit in one statement. Concurrent redemptions of one code queue on its row and re-check
  // `redeemed_at IS NULL`, so exactly one of them claims it, on any instance; the credit exists only if the claim does.
  redeem: `
    WITH c AS (
      UPDATE credit_codes SET redeemed_at = $3::bigint, redeemed_by = $2::text
      WHERE code_hash = $1 AND redeemed_at IS NULL AND EXISTS (SELECT 1 FROM accounts WHERE id = $2)
      RETURNING amount, code_prefix
    ), a AS (
      UPDATE accounts SET balance = balance + c.amount FROM c WHERE accounts.id = $2
      RETURNING accounts.*
    ), l AS (
      INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
      SELECT a.id, 'credit', c.amount, 0, NULL, $4::text || ' ' || c.code_prefix || '…', $3::bigint FROM a, c
    )
    SELECT a.*, c.amount AS code_amount FROM a, c`,
  debit: `
    WITH a AS (
      UPDATE accounts SET balance = balance - $2::bigint WHERE id = $1 AND balance >= $2::bigint
      RETURNING *
    ), l AS (
      INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
      SELECT a.id, 'adjustment', -$2::bigint, 0, NULL, $3::text, $4::bigint FROM a
    )
    SELECT * FROM a`,
  accountExists: 'SELECT 1 FROM accounts WHERE id = $1',
  searchAccounts: `
    SELECT * FROM accounts a
    WHERE strpos(lower(a.id), $1) > 0 OR strpos(lower(a.name), $1) > 0
       OR EXISTS (SELECT 1 FROM users u WHERE u.account_id = a.id AND strpos(u.email, $1) > 0)
    ORDER BY a.created_at DESC, a.id DESC LIMIT $2`,
  spendSince: `
    SELECT COALESCE(SUM(cost) FILTER (WHERE created_at >= $2), 0)::bigint AS today,
           COALESCE(SUM(cost) FILTER (WHERE created_at >= $3), 0)::bigint AS week,
           COALESCE(SUM(cost), 0)::bigint AS month
    FROM requests WHERE account_id = $1 AND status = 'settled' AND created_at >= $4`,
  dailySpend: `
    SELECT created_at / 86400000 AS day, model, SUM(cost)::bigint AS cost
    FROM requests WHERE account_id = $1 AND status = 'settled' AND created_at >= $2
    GROUP BY 1, model HAVING SUM(cost) > 0 ORDER BY 1, model`,
  // One statement for every filter combination: a null parameter switches its condition off.
  queryUsage: `
    SELECT * FROM requests
    WHERE account_id = $1
      AND ($2::text IS NULL OR key_id = $2) AND ($3::text IS NULL OR model = $3)
      AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR endpoint = $5)
      AND ($6::bigint IS NULL OR created_at >= $6) AND ($7::bigint IS NULL OR created_at < $7)
      AND ($8::bigint IS NULL OR (created_at, id) < ($8, $9::text))
    ORDER BY created_at DESC, id DESC LIMIT $10`,
  ledgerPage: 'SELECT * FROM ledger_entries WHERE account_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3',
} as const;

const EMAIL_TAKEN = new Error('email taken');

export class PostgresDashboardStore implements DashboardStore {
  private readonly keyUse = new KeyUseThrottle();

  constructor(private readonly pool: pg.Pool) {}

  private async run(name: keyof typeof SQL, values: unknown[]): Promise<pg.QueryResult<Row>> {
    return this.pool.query<Row>({ name: `deepshi_dash_${name}`, text: SQL[name], values });
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  async createUser(user: NewUser): Promise<UserRecord | undefined> {
    const { rows } = await this.run('insertUser', [user.id, user.email, user.passwordHash, user.role, user.accountId, Date.now()]);
    return rows[0] ? toUser(rows[0]) : undefined;
  }

  async createAccountWithUser(input: { accountName: string; credits: Nanos; note: string; user: Omit<NewUser, 'accountId' | 'role'> }) {
    const accountId = `acct_${randomUUID().replace(/-/g, '').slice(0, 24)}`;
    const now = Date.now();
    return this.transaction(async (client) => {
      const { rows: accounts } = await client.query<Row>(
        'INSERT INTO accounts (id, name, balance, held, created_at) VALUES ($1, $2, $3::bigint, 0, $4) RETURNING *',
        [accountId, input.accountName, input.credits.toString(), now],
      );
      if (input.credits > 0n) {
        await client.query(
          "INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at) VALUES ($1, 'credit', $2::bigint, 0, NULL, $3, $4)",
          [accountId, input.credits.toString(), input.note, now],
        );
      }
      const { rows: users } = await client.query<Row>(SQL.insertUser, [
        input.user.id,
        input.user.email,
        input.user.passwordHash,
        'member',
        accountId,
        now,
      ]);
      if (!users[0]) throw EMAIL_TAKEN; // rolls the account back
      return { account: toAccount(accounts[0]), user: toUser(users[0]) };
    }).catch((error: unknown) => {
      if (error === EMAIL_TAKEN) return undefined;
      throw error;
    });
  }

  async getUser(id: string): Promise<UserRecord | undefined> {
    const { rows } = await this.run('getUser', [id]);
    return rows[0] ? toUser(rows[0]) : undefined;
  }

  async findUserByEmail(email: string): Promise<UserRecord | undefined> {
    const { rows } = await this.run('userByEmail', [email]);
    return rows[0] ? toUser(rows[0]) : undefined;
  }

  async listUsers(accountId?: string): Promise<UserRecord[]> {
    const { rows } = accountId === undefined ? await this.run('listUsers', []) : await this.run('listAccountUsers', [accountId]);
    return rows.map(toUser);
  }

  async setUserPassword(userId: string, passwordHash: string, keepSession: string | null): Promise<boolean> {
    return (await this.run('setPassword', [userId, passwordHash, Date.now(), keepSession])).rowCount === 1;
  }

  async createSession(session: NewSession): Promise<void> {
    await this.run('insertSession', [session.tokenHash, session.userId, session.role, session.credential, Date.now(), session.expiresAt]);
  }

  async getSession(tokenHash: string, now: number): Promise<SessionRecord | undefined> {
    const { rows } = await this.run('getSession', [tokenHash, now]);
    const row = rows[0];
    if (!row) return undefined;
    if (row.user_id !== null && row.id === null) return undefined;
    return {
      tokenHash: String(row.token_hash),
      userId: (row.user_id as string | null) ?? null,
      role: row.session_role as SessionRecord['role'],
      credential: (row.credential as string | null) ?? null,
      createdAt: Number(row.session_created_at),
      expiresAt: Number(row.expires_at),
      user: row.user_id === null ? null : toUser(row),
    };
  }

  async deleteSession(tokenHash: string): Promise<boolean> {
    return (await this.run('deleteSession', [tokenHash])).rowCount === 1;
  }

  async deleteExpiredSessions(now: number, limit: number): Promise<number> {
    let deleted = 0;
    for (const row of (await this.run('expiredSessions', [now, limit])).rows) {
      if (await this.deleteSession(String(row.token_hash))) deleted++;
    }
    return deleted;
  }

  async createPlaygroundKey(key: NewApiKey & { sessionHash: string; expiresAt: number }): Promise<ApiKeyRecord> {
    const { rows } = await this.run('insertPlaygroundKey', [
      key.id,
      key.accountId,
      key.name,
      key.models ? JSON.stringify(key.models) : null,
      key.hash,
      key.display,
      Date.now(),
      key.expiresAt,
      key.sessionHash,
    ]);
    return toApiKey(rows[0]);
  }

  noteKeyUse(keyId: string, now: number): void {
    if (!this.keyUse.due(keyId, now)) return;
    // Not awaited by the request: one small statement per key per minute per instance.
    this.run('touchKey', [now, keyId, now - KeyUseThrottle.intervalMs]).catch(() => this.keyUse.forget(keyId));
  }

  async createCreditCodes(codes: NewCreditCode[]): Promise<CreditCodeRecord[]> {
    const now = Date.now();
    return this.transaction(async (client) => {
      const created: CreditCodeRecord[] = [];
      for (const code of codes) {
        const { rows } = await client.query<Row>(
          'INSERT INTO credit_codes (id, code_hash, code_prefix, amount, note, created_at) VALUES ($1, $2, $3, $4::bigint, $5, $6) RETURNING *',
          [code.id, code.hash, code.prefix, code.amount.toString(), code.note, now],
        );
        created.push(toCreditCode(rows[0]));
      }
      return created;
    });
  }

  async listCreditCodes(limit: number): Promise<CreditCodeRecord[]> {
    return (await this.run('listCodes', [limit])).rows.map(toCreditCode);
  }

  async redeemCreditCode(input: { hash: string; accountId: string; note: string }): Promise<RedeemResult> {
    const { rows } = await this.run('redeem', [input.hash, input.accountId, Date.now(), input.note]);
    if (rows[0]) return { outcome: 'redeemed', account: toAccount(rows[0]), amount: rows[0].code_amount as bigint };
    if ((await this.run('accountExists', [input.accountId])).rowCount === 0) return { outcome: 'unknown' };
    return (await this.run('codeByHash', [input.hash])).rowCount === 1 ? { outcome: 'already_redeemed' } : { outcome: 'unknown' };
  }

  async debitAccount(accountId: string, amount: Nanos, note: string | null): Promise<DebitResult> {
    if (amount <= 0n) throw new RangeError('debitAccount takes a positive amount');
    const { rows } = await this.run('debit', [accountId, amount.toString(), note, Date.now()]);
    if (rows[0]) return { outcome: 'debited', account: toAccount(rows[0]) };
    return (await this.run('accountExists', [accountId])).rowCount === 1 ? { outcome: 'insufficient' } : { outcome: 'unknown' };
  }

  async searchAccounts(query: string, limit: number): Promise<Account[]> {
    return (await this.run('searchAccounts', [query.toLowerCase(), limit])).rows.map(toAccount);
  }

  async spendSince(accountId: string, since: { today: number; week: number; month: number }): Promise<SpendTotals> {
    const row = (await this.run('spendSince', [accountId, since.today, since.week, since.month])).rows[0];
    return { today: row.today as bigint, last7Days: row.week as bigint, last30Days: row.month as bigint };
  }

  async dailySpend(accountId: string, since: number): Promise<DailyModelSpend[]> {
    return (await this.run('dailySpend', [accountId, since])).rows.map((row) => ({
      day: Number(row.day),
      model: String(row.model),
      cost: row.cost as bigint,
    }));
  }

  async modelMargins(since: number): Promise<ModelMargin[]> {
    return queryModelMargins(this.pool, since);
  }

  async queryUsage(filter: UsageFilter): Promise<RequestRecord[]> {
    const { rows } = await this.run('queryUsage', [
      filter.accountId,
      filter.keyId ?? null,
      filter.model ?? null,
      filter.status ?? null,
      filter.endpoint ?? null,
      filter.from ?? null,
      filter.to ?? null,
      filter.before?.createdAt ?? null,
      filter.before?.id ?? null,
      filter.limit,
    ]);
    return rows.map(toRequest);
  }

  async listLedgerPage(accountId: string, limit: number, beforeId: number | null): Promise<LedgerEntry[]> {
    return (await this.run('ledgerPage', [accountId, beforeId, limit])).rows.map(toLedgerEntry);
  }
}
