import type { Nanos } from '../domain/money.ts';
import type { DashboardStore } from './dashboard-types.ts';
import type { JobStore } from './jobs.ts';
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
  StoredResponse,
} from './records.ts';

// The records live in records.ts (so dashboard-types.ts can use them without a cycle); callers import them from here.
export type * from './records.ts';

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
  takeOverIdempotencyKey(input: {
    accountId: string;
    key: string;
    fromRequestId: string;
    requestId: string;
    lockedUntil: number;
  }): Promise<boolean>;
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
