import type { ApiKeyLimits } from '../domain/caller.ts';
import type { Nanos } from '../domain/money.ts';
import type { JobStore } from './jobs.ts';

export type { ApiKeyLimits };
import type { DashboardStore } from './dashboard-types.ts';

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
  /** Per-key rate limits; each null = the server-wide default. */
  limits: ApiKeyLimits;
  /** Epoch ms of the last authenticated request, written at most once a minute (DashboardStore.noteKeyUse). */
  lastUsedAt: number | null;
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
  /**
   * The response an Idempotency-Key retry gets, saved in the same transaction as the charge (the key must be running
   * for this request): a crash right after settling cannot leave a charge whose response is lost.
   */
  idempotency?: { accountId: string; key: string; response: StoredResponse };
}

/** A response saved for an Idempotency-Key, returned as it was to every retry within 24 h. */
export interface StoredResponse {
  status: number;
  /** Only the headers that describe the result (content type, cost, warnings). */
  headers: Record<string, string>;
  body: string;
}

/**
 * One Idempotency-Key of one account. `running` while the first request executes (locked until `lockedUntil`,
 * after which a retry may take it over if that request's hold was released); `completed` once its response is saved.
 */
export interface IdempotencyRecord {
  accountId: string;
  key: string;
  /** Fingerprint of the request (endpoint + normalised parameters): a retry must match it. */
  requestHash: string;
  /** The request currently (or last) executing under this key. */
  requestId: string;
  status: 'running' | 'completed';
  response: StoredResponse | null;
  createdAt: number;
  lockedUntil: number;
  /** Epoch ms after which the key is forgotten (a claim replaces it; the reaper deletes it). */
  expiresAt: number;
}

export interface IdempotencyClaimInput {
  accountId: string;
  key: string;
  requestHash: string;
  requestId: string;
  now: number;
  lockedUntil: number;
  expiresAt: number;
}

/** claimed: this request owns the key now. Otherwise the live record that already holds it. */
export type IdempotencyClaim = { claimed: true } | { claimed: false; existing: IdempotencyRecord };

export interface NewApiKey {
  id: string;
  accountId: string;
  name: string;
  models: string[] | null;
  hash: string;
  display: string;
}

export interface Store extends JobStore {
  readonly kind: 'sqlite' | 'postgres';
  /** Users, sessions, credit codes and the dashboard's queries (src/store/dashboard-types.ts). */
  readonly dashboard: DashboardStore;
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
  /** Replaces the key's three limits (null = server default). Undefined for unknown or deleted keys. */
  setApiKeyLimits(id: string, limits: ApiKeyLimits): Promise<ApiKeyRecord | undefined>;

  /** One guarded statement: succeeds only if available ≥ amount. False = insufficient credit, nothing changed. */
  reserveCredits(input: ReserveInput): Promise<boolean>;
  /** Resolves a held request exactly once; false if it was already resolved (or unknown). */
  settleReservation(input: SettleInput): Promise<boolean>;
  releaseReservation(requestId: string, reason: string): Promise<boolean>;
  getRequest(id: string): Promise<RequestRecord | undefined>;
  listRequests(accountId: string, limit: number): Promise<RequestRecord[]>;
  /** Ids of held requests whose expiry has passed. */
  listExpiredReservations(now: number, limit: number): Promise<string[]>;

  /**
   * One arbitrated step (no check-then-insert): inserts a running record for (account, key), or replaces one whose
   * expiry has passed; otherwise returns the live record unchanged.
   */
  claimIdempotencyKey(input: IdempotencyClaimInput): Promise<IdempotencyClaim>;
  /** Moves a running record from one request to another (a retry taking over from a dead instance); false if it changed meanwhile. */
  takeOverIdempotencyKey(input: { accountId: string; key: string; fromRequestId: string; requestId: string; lockedUntil: number }): Promise<boolean>;
  /** Saves the response of the request that holds the key; false unless that request still holds it running. */
  completeIdempotencyKey(accountId: string, key: string, requestId: string, response: StoredResponse): Promise<boolean>;
  /** Forgets a running record held by this request (it charged nothing, so a retry may run afresh). */
  releaseIdempotencyKey(accountId: string, key: string, requestId: string): Promise<boolean>;
  getIdempotencyKey(accountId: string, key: string): Promise<IdempotencyRecord | undefined>;
  /** The reaper: deletes up to `limit` records whose expiry has passed; returns how many. */
  deleteExpiredIdempotencyKeys(now: number, limit: number): Promise<number>;

  /** True when no account exists yet (first start). */
  isEmpty(): Promise<boolean>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
