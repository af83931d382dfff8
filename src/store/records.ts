import type { ApiKeyLimits } from '../domain/caller.ts';
import type { Nanos } from '../domain/money.ts';

export type { ApiKeyLimits };

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
