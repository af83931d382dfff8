import type { Nanos } from '../domain/money.ts';

/**
 * Persistence for accounts, keys, the credit ledger and per-request usage. SQLite (embedded default) and
 * PostgreSQL implement it and pass one shared contract suite (test/store/store-contract.ts).
 *
 * Money model, a two-phase hold like a pending transfer:
 *   available --reserve--> held --settle(cost)--> spent (+ remainder back to available)
 *                               --release------> available
 * Every movement is one ledger entry carrying its deltas on `available` and `held`, so
 * balance = Σ available_delta and held = Σ held_delta for every account, always.
 */
export interface Account {
  id: string;
  name: string;
  /** Spendable credit (nanos). */
  balance: Nanos;
  /** Credit reserved by in-flight requests (nanos). */
  held: Nanos;
  createdAt: number;
}

export type ApiKeyStatus = 'active' | 'revoked' | 'deleted';

export interface ApiKeyRecord {
  id: string;
  accountId: string;
  name: string;
  /** Models this key may call; null = every model. An empty list allows nothing. */
  models: string[] | null;
  status: ApiKeyStatus;
  /** `sk-bf-abcd…wxyz`: enough to recognise a key, never enough to use it. */
  display: string;
  createdAt: number;
}

export type LedgerKind = 'credit' | 'hold' | 'settle' | 'release' | 'adjustment';

export interface LedgerEntry {
  id: number;
  accountId: string;
  kind: LedgerKind;
  availableDelta: Nanos;
  heldDelta: Nanos;
  requestId: string | null;
  note: string | null;
  createdAt: number;
}

export type RequestStatus = 'held' | 'settled' | 'released';

export interface RequestRecord {
  id: string;
  accountId: string;
  keyId: string;
  model: string;
  endpoint: string;
  status: RequestStatus;
  hold: Nanos;
  cost: Nanos;
  upstreamCost: Nanos | null;
  images: number;
  /** Resolution detail: price basis, release reason, token usage. */
  detail: Record<string, unknown> | null;
  createdAt: number;
  resolvedAt: number | null;
  expiresAt: number;
}

export interface ReserveInput {
  requestId: string;
  accountId: string;
  keyId: string;
  model: string;
  endpoint: string;
  amount: Nanos;
  /** Epoch ms after which the sweeper may resolve the hold. */
  expiresAt: number;
}

export interface SettleInput {
  requestId: string;
  /** ≤ the hold; the remainder goes back to available. */
  cost: Nanos;
  upstreamCost?: Nanos;
  images: number;
  detail?: Record<string, unknown>;
}

export interface NewApiKey {
  id: string;
  accountId: string;
  name: string;
  models: string[] | null;
  hash: string;
  display: string;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  createAccount(input: { name: string; credits: Nanos; note?: string }): Promise<Account>;
  getAccount(id: string): Promise<Account | undefined>;
  listAccounts(): Promise<Account[]>;
  /** Adds credit (amount > 0) as a ledger entry. Undefined when the account does not exist. */
  addCredits(accountId: string, amount: Nanos, note: string | null): Promise<Account | undefined>;
  listLedger(accountId: string, limit: number): Promise<LedgerEntry[]>;

  createApiKey(key: NewApiKey): Promise<ApiKeyRecord>;
  getApiKey(id: string): Promise<ApiKeyRecord | undefined>;
  listApiKeys(accountId: string): Promise<ApiKeyRecord[]>;
  /** Active and revoked keys are found by hash; deleted keys keep no hash and are never found. */
  findApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined>;
  /** Replaces the hash; the old secret stops matching in the same statement. */
  rotateApiKey(id: string, hash: string, display: string): Promise<ApiKeyRecord | undefined>;
  revokeApiKey(id: string): Promise<ApiKeyRecord | undefined>;
  deleteApiKey(id: string): Promise<boolean>;
  setApiKeyModels(id: string, models: string[] | null): Promise<ApiKeyRecord | undefined>;

  /** One guarded statement: succeeds only if available ≥ amount. False = insufficient credit, nothing changed. */
  reserveCredits(input: ReserveInput): Promise<boolean>;
  /** Resolves a held request exactly once; false if it was already resolved (or unknown). */
  settleReservation(input: SettleInput): Promise<boolean>;
  releaseReservation(requestId: string, reason: string): Promise<boolean>;
  getRequest(id: string): Promise<RequestRecord | undefined>;
  listRequests(accountId: string, limit: number): Promise<RequestRecord[]>;
  /** Ids of held requests whose expiry has passed. */
  listExpiredReservations(now: number, limit: number): Promise<string[]>;

  /** True when no account exists yet (first start). */
  isEmpty(): Promise<boolean>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
