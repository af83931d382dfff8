import type { Nanos } from '../domain/money.ts';
import type { Account, ApiKeyRecord, LedgerEntry, NewApiKey, RequestRecord, RequestStatus } from './records.ts';

/**
 * Persistence behind the dashboard (docs/dashboard.md): the people who sign in, their sessions, credit codes, the
 * account holder's queries over usage and ledger, and the playground's temporary keys. Both stores implement it and
 * pass test/store/dashboard-store-contract.ts. Secrets never reach it in clear: passwords arrive as scrypt hashes,
 * session tokens and credit codes as SHA-256 digests.
 */
export type UserRole = 'member' | 'operator';

export interface UserRecord {
  id: string;
  /** Lower-cased and trimmed; unique. */
  email: string;
  /** `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>`: the parameters travel with the hash. */
  passwordHash: string;
  role: UserRole;
  /** Null only for operators, who may belong to no account. */
  accountId: string | null;
  createdAt: number;
  passwordChangedAt: number;
}

export interface NewUser {
  id: string;
  email: string;
  passwordHash: string;
  role: UserRole;
  accountId: string | null;
}

export interface SessionRecord {
  tokenHash: string;
  /** Null for an operator session opened with the admin token. */
  userId: string | null;
  role: UserRole;
  /** For admin-token sessions: a digest of the token it was opened with, so changing the token ends them. */
  credential: string | null;
  createdAt: number;
  expiresAt: number;
  /** The signed-in user (null for admin-token sessions). */
  user: UserRecord | null;
}

export interface NewSession {
  tokenHash: string;
  userId: string | null;
  role: UserRole;
  credential: string | null;
  expiresAt: number;
}

export interface CreditCodeRecord {
  id: string;
  /** The first characters of the code, enough to recognise it and never enough to redeem it. */
  prefix: string;
  amount: Nanos;
  note: string | null;
  createdAt: number;
  redeemedAt: number | null;
  redeemedBy: string | null;
}

export interface NewCreditCode {
  id: string;
  hash: string;
  prefix: string;
  amount: Nanos;
  note: string | null;
}

export type RedeemResult =
  | { outcome: 'redeemed'; account: Account; amount: Nanos }
  | { outcome: 'unknown' }
  | { outcome: 'already_redeemed' };

export type DebitResult = { outcome: 'debited'; account: Account } | { outcome: 'unknown' } | { outcome: 'insufficient' };

export interface UsageFilter {
  accountId: string;
  keyId?: string;
  model?: string;
  status?: RequestStatus;
  endpoint?: string;
  /** Epoch ms, inclusive. */
  from?: number;
  /** Epoch ms, exclusive. */
  to?: number;
  /** Keyset cursor: rows strictly older than (createdAt, id) in the listing order. */
  before?: { createdAt: number; id: string };
  limit: number;
}

export interface SpendTotals {
  today: Nanos;
  last7Days: Nanos;
  last30Days: Nanos;
}

export interface DailyModelSpend {
  /** Days since the unix epoch (UTC). */
  day: number;
  model: string;
  cost: Nanos;
}

/** One model's settled requests over a period, for the operator's margin (docs/dashboard.md). */
export interface ModelMargin {
  model: string;
  /** Settled requests. */
  requests: number;
  /** What callers were charged for them. */
  charged: Nanos;
  /** Of those, the requests whose upstream bill is known (requests.upstream_cost not null). */
  requestsWithUpstreamCost: number;
  /** The charge of exactly those requests, so it compares like for like with `upstreamCost`. */
  chargedWithUpstreamCost: Nanos;
  /** The upstream's bill for them. */
  upstreamCost: Nanos;
}

export interface DashboardStore {
  /** Inserts a user; undefined when the email is taken. */
  createUser(user: NewUser): Promise<UserRecord | undefined>;
  /** A new account with its opening credit and its first member, together or not at all (undefined: email taken). */
  createAccountWithUser(input: {
    accountName: string;
    credits: Nanos;
    note: string;
    user: Omit<NewUser, 'accountId' | 'role'>;
  }): Promise<{ account: Account; user: UserRecord } | undefined>;
  getUser(id: string): Promise<UserRecord | undefined>;
  findUserByEmail(email: string): Promise<UserRecord | undefined>;
  /** Every user, or an account's; oldest first. */
  listUsers(accountId?: string): Promise<UserRecord[]>;
  /**
   * Replaces the password hash and, in the same transaction, deletes every session of the user except `keepSession`
   * (and the playground keys of those sessions).
   */
  setUserPassword(userId: string, passwordHash: string, keepSession: string | null): Promise<boolean>;

  createSession(session: NewSession): Promise<void>;
  /** The live session with that token digest; expired sessions are never returned. */
  getSession(tokenHash: string, now: number): Promise<SessionRecord | undefined>;
  /** Deletes the session and its playground keys; false when there was none. */
  deleteSession(tokenHash: string): Promise<boolean>;
  /** Deletes up to `limit` expired sessions with their playground keys; returns how many. */
  deleteExpiredSessions(now: number, limit: number): Promise<number>;

  /** A key tied to a session: it expires at `expiresAt`, is never listed, and is deleted with its session. */
  createPlaygroundKey(key: NewApiKey & { sessionHash: string; expiresAt: number }): Promise<ApiKeyRecord>;
  /**
   * Notes that a key authenticated a request. Writes last_used_at behind the caller's back, at most once a minute per
   * key on this instance; never awaited by the request.
   */
  noteKeyUse(keyId: string, now: number): void;

  createCreditCodes(codes: NewCreditCode[]): Promise<CreditCodeRecord[]>;
  listCreditCodes(limit: number): Promise<CreditCodeRecord[]>;
  /** Marks the code redeemed and credits the account in one atomic step: a code can be redeemed once, ever. */
  redeemCreditCode(input: { hash: string; accountId: string; note: string }): Promise<RedeemResult>;
  /** Takes `amount` (> 0) from the available balance as an adjustment entry, only if it covers it. */
  debitAccount(accountId: string, amount: Nanos, note: string | null): Promise<DebitResult>;
  /** Accounts whose id or name, or one of whose users' email, contains `query` (case-insensitive); newest first. */
  searchAccounts(query: string, limit: number): Promise<Account[]>;

  /** Settled spend since each of three instants (epoch ms). */
  spendSince(accountId: string, since: { today: number; week: number; month: number }): Promise<SpendTotals>;
  /** Settled spend per UTC day and model since `since`, oldest first; zero-cost groups left out. */
  dailySpend(accountId: string, since: number): Promise<DailyModelSpend[]>;
  /** Requests matching the filter, newest first (created_at, id), at most `limit`. */
  queryUsage(filter: UsageFilter): Promise<RequestRecord[]>;
  /** Per model, every account's settled requests created since `since` (epoch ms); the most charged first. */
  modelMargins(since: number): Promise<ModelMargin[]>;
  /** Ledger entries older than `beforeId` (all when null), newest first. */
  listLedgerPage(accountId: string, limit: number, beforeId: number | null): Promise<LedgerEntry[]>;
}
