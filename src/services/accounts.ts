import { hashApiKey, isWellFormedApiKey, issueApiKey, newKeyId } from '../auth/api-keys.ts';
import type { Caller } from '../domain/caller.ts';
import { GatewayError, invalidApiKey, invalidRequest, revokedApiKey } from '../domain/errors.ts';
import { formatUsd, parseUsd, type Nanos } from '../domain/money.ts';

/** Matches the stores' CHECK (2^62 nanos): sums stay inside signed 64-bit integers everywhere. */
const MAX_BALANCE: Nanos = 4_611_686_018_427_387_904n;
import type { Account, ApiKeyLimits, ApiKeyRecord, LedgerEntry, RequestRecord, Store } from '../store/types.ts';

/** Operator tasks shared by the admin API and the CLI: accounts, credits, keys. */
export class AccountService {
  constructor(
    private readonly store: Store,
    private readonly keyPepper: string,
  ) {}

  /**
   * An Authorization header → the Caller (401 otherwise). Malformed keys (wrong prefix, length or checksum) are
   * refused before any lookup. No cache: a revoked, rotated or deleted key, a narrowed allowlist or new limits take
   * effect on the very next request, on every instance (all of them read the one database).
   */
  async authenticate(authorization: string | undefined): Promise<Caller> {
    if (!authorization) {
      throw invalidApiKey("You didn't provide an API key. Send it as 'Authorization: Bearer sk-bf-…'.");
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match) throw invalidApiKey("The Authorization header must be 'Bearer <your Deepshi API key>'.");
    const key = match[1];
    if (!isWellFormedApiKey(key)) throw invalidApiKey();
    const record = await this.store.findApiKeyByHash(hashApiKey(key, this.keyPepper));
    if (!record) throw invalidApiKey();
    if (record.status === 'revoked') throw revokedApiKey();
    return { keyId: record.id, accountId: record.accountId, models: record.models, limits: record.limits };
  }

  async createAccount(input: { name?: unknown; credits?: unknown }): Promise<Account> {
    const name = readName(input.name, 'name');
    const credits = input.credits === undefined ? 0n : readAmount(input.credits, 'credits', true);
    return this.store.createAccount({ name, credits, note: 'initial credit' });
  }

  async getAccount(id: string): Promise<Account> {
    const account = await this.store.getAccount(id);
    if (!account) throw notFound('account', id);
    return account;
  }

  async addCredits(accountId: string, input: { amount?: unknown; note?: unknown }): Promise<Account> {
    const amount = readAmount(input.amount, 'amount', false);
    const note = input.note === undefined || input.note === null ? null : readName(input.note, 'note', 500);
    const current = await this.getAccount(accountId);
    if (current.balance + current.held + amount > MAX_BALANCE) {
      throw invalidRequest(`The balance would exceed the maximum of $${formatUsd(MAX_BALANCE)}.`, 'amount');
    }
    const account = await this.store.addCredits(accountId, amount, note);
    if (!account) throw notFound('account', accountId);
    return account;
  }

  /** Accounts whose id, name or a user's email contains `text` (the operator console's search). */
  search(text: string, limit: number): Promise<Account[]> {
    return this.store.dashboard.searchAccounts(text, limit);
  }

  /** An operator's debit of available credit (never of credit on hold). */
  debit(accountId: string, amount: Nanos, note: string | null) {
    return this.store.dashboard.debitAccount(accountId, amount, note);
  }

  async ledger(accountId: string, limit: number): Promise<LedgerEntry[]> {
    await this.getAccount(accountId);
    return this.store.listLedger(accountId, limit);
  }

  async usage(accountId: string, limit: number): Promise<RequestRecord[]> {
    return this.store.listRequests(accountId, limit);
  }

  async createKey(input: { account_id?: unknown; name?: unknown; models?: unknown }): Promise<{ record: ApiKeyRecord; key: string }> {
    if (typeof input.account_id !== 'string') throw invalidRequest("'account_id' is required.", 'account_id', 'missing_required_parameter');
    await this.getAccount(input.account_id);
    const name = input.name === undefined ? 'default' : readName(input.name, 'name');
    const models = readModels(input.models);
    const issued = issueApiKey(this.keyPepper);
    const record = await this.store.createApiKey({
      id: newKeyId(),
      accountId: input.account_id,
      name,
      models,
      hash: issued.hash,
      display: issued.display,
    });
    return { record, key: issued.key };
  }

  async listKeys(accountId: string): Promise<ApiKeyRecord[]> {
    await this.getAccount(accountId);
    return this.store.listApiKeys(accountId);
  }

  async rotateKey(id: string): Promise<{ record: ApiKeyRecord; key: string }> {
    const issued = issueApiKey(this.keyPepper);
    const record = await this.store.rotateApiKey(id, issued.hash, issued.display);
    if (!record) throw notFound('active key', id);
    return { record, key: issued.key };
  }

  async revokeKey(id: string): Promise<ApiKeyRecord> {
    const record = await this.store.revokeApiKey(id);
    if (!record) throw notFound('key', id);
    return record;
  }

  async deleteKey(id: string): Promise<void> {
    if (!(await this.store.deleteApiKey(id))) throw notFound('key', id);
  }

  /**
   * Sets a key's limits. Each of `requests_per_minute`, `images_per_minute`, `max_in_flight`, `tokens_per_minute`,
   * `max_queued_jobs` is a whole number (0 = unlimited) or null (back to the server default); a field left out keeps
   * its current value.
   */
  async setKeyLimits(id: string, input: Record<string, unknown>): Promise<ApiKeyRecord> {
    const current = await this.store.getApiKey(id);
    if (!current || current.status === 'deleted') throw notFound('key', id);
    const known = new Set(['requests_per_minute', 'images_per_minute', 'max_in_flight', 'tokens_per_minute', 'max_queued_jobs']);
    const unknown = Object.keys(input).find((name) => !known.has(name));
    if (unknown !== undefined) {
      throw invalidRequest(
        `Unknown limit '${unknown.slice(0, 80)}'; use requests_per_minute, images_per_minute, max_in_flight, tokens_per_minute or max_queued_jobs.`,
        unknown.slice(0, 80),
        'unknown_parameter',
      );
    }
    const limits: ApiKeyLimits = {
      requestsPerMinute: readLimit(input, 'requests_per_minute', current.limits.requestsPerMinute),
      imagesPerMinute: readLimit(input, 'images_per_minute', current.limits.imagesPerMinute),
      maxInFlight: readLimit(input, 'max_in_flight', current.limits.maxInFlight),
      tokensPerMinute: readLimit(input, 'tokens_per_minute', current.limits.tokensPerMinute ?? null),
      maxQueuedJobs: readLimit(input, 'max_queued_jobs', current.limits.maxQueuedJobs ?? null),
    };
    const record = await this.store.setApiKeyLimits(id, limits);
    if (!record) throw notFound('key', id);
    return record;
  }

  async setKeyModels(id: string, models: unknown): Promise<ApiKeyRecord> {
    const record = await this.store.setApiKeyModels(id, readModels(models));
    if (!record) throw notFound('key', id);
    return record;
  }
}

export function accountJson(account: Account) {
  return {
    id: account.id,
    object: 'account',
    name: account.name,
    balance: formatUsd(account.balance),
    held: formatUsd(account.held),
    currency: 'USD',
    created_at: Math.floor(account.createdAt / 1000),
  };
}

export function keyJson(record: ApiKeyRecord, key?: string) {
  return {
    id: record.id,
    object: 'api_key',
    account_id: record.accountId,
    name: record.name,
    models: record.models,
    status: record.status,
    display: record.display,
    // null = the server default (DEEPSHI_DEFAULT_*), 0 = unlimited.
    limits: {
      requests_per_minute: record.limits.requestsPerMinute,
      images_per_minute: record.limits.imagesPerMinute,
      max_in_flight: record.limits.maxInFlight,
      tokens_per_minute: record.limits.tokensPerMinute ?? null,
      max_queued_jobs: record.limits.maxQueuedJobs ?? null,
    },
    created_at: Math.floor(record.createdAt / 1000),
    ...(key ? { key } : {}),
  };
}

export function ledgerJson(entry: LedgerEntry) {
  return {
    id: entry.id,
    kind: entry.kind,
    available_delta: formatUsd(entry.availableDelta),
    held_delta: formatUsd(entry.heldDelta),
    request_id: entry.requestId,
    note: entry.note,
    created_at: Math.floor(entry.createdAt / 1000),
  };
}

export function usageJson(record: RequestRecord) {
  return {
    id: record.id,
    model: record.model,
    endpoint: record.endpoint,
    status: record.status,
    held: formatUsd(record.hold),
    cost: formatUsd(record.cost),
    images: record.images,
    created_at: Math.floor(record.createdAt / 1000),
    resolved_at: record.resolvedAt === null ? null : Math.floor(record.resolvedAt / 1000),
  };
}

function readName(value: unknown, param: string, max = 200): string {
  if (typeof value !== 'string' || value.trim() === '')
    throw invalidRequest(`'${param}' must be a non-empty string.`, param, 'invalid_type');
  if (value.length > max) throw invalidRequest(`'${param}' must be at most ${max} characters.`, param);
  return value.trim();
}

function readAmount(value: unknown, param: string, allowZero: boolean): Nanos {
  let amount: Nanos;
  try {
    amount = parseUsd(value);
  } catch (error) {
    throw invalidRequest(`'${param}' ${(error as Error).message}; send USD such as "10" or "2.50".`, param);
  }
  if (!allowZero && amount === 0n) throw invalidRequest(`'${param}' must be greater than zero.`, param);
  return amount;
}

/** Largest accepted limit value: far above any real need, small enough for every store's INTEGER. */
const MAX_LIMIT = 1_000_000_000;

function readLimit(input: Record<string, unknown>, param: string, current: number | null): number | null {
  if (!(param in input)) return current;
  const value = input[param];
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_LIMIT) {
    throw invalidRequest(
      `'${param}' must be a whole number from 0 (unlimited) to ${MAX_LIMIT}, or null for the server default.`,
      param,
      'invalid_value',
    );
  }
  return value;
}

function readModels(value: unknown): string[] | null {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item.length > 0 && item.length <= 200)) {
    throw invalidRequest("'models' must be a list of model ids, or null for every model.", 'models', 'invalid_type');
  }
  return [...new Set(value as string[])];
}

function notFound(what: string, id: string): GatewayError {
  return new GatewayError(`No ${what} with id "${id.slice(0, 80)}".`, { status: 404, type: 'invalid_request_error', code: 'not_found' });
}
