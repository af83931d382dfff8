import { GatewayError, invalidRequest } from '../domain/errors.ts';
import { formatUsd } from '../domain/money.ts';
import type { KeyLimits } from '../limits/types.ts';
import type { UsageFilter } from '../store/dashboard-types.ts';
import type { ApiKeyRecord, RequestRecord, RequestStatus, Store } from '../store/types.ts';
import { type AccountService, accountJson, keyJson, ledgerJson, usageJson } from './accounts.ts';

/**
 * What an account holder's pages read and do (docs/dashboard.md): overview, keys, usage with filters, paging and
 * CSV, and the ledger. Every method takes the account id the caller may act on; a key of another account is
 * answered exactly like a key that does not exist.
 */
const DAY_MS = 86_400_000;
const CSV_MAX_ROWS = 100_000;

export class DashboardQueries {
  constructor(
    private readonly store: Store,
    private readonly accounts: AccountService,
    private readonly defaultLimits: KeyLimits & { maxQueuedJobs: number },
  ) {}

  async overview(accountId: string, now = Date.now()) {
    const account = await this.accounts.getAccount(accountId);
    const today = Math.floor(now / DAY_MS) * DAY_MS;
    const month = today - 29 * DAY_MS;
    const [spend, daily, recent] = await Promise.all([
      this.store.dashboard.spendSince(accountId, { today, week: today - 6 * DAY_MS, month }),
      this.store.dashboard.dailySpend(accountId, month),
      this.store.listRequests(accountId, 10),
    ]);
    return {
      account: accountJson(account),
      spend: { today: formatUsd(spend.today), last_7_days: formatUsd(spend.last7Days), last_30_days: formatUsd(spend.last30Days) },
      daily: daily.map((entry) => ({
        date: new Date(entry.day * DAY_MS).toISOString().slice(0, 10),
        model: entry.model,
        cost: formatUsd(entry.cost),
      })),
      recent: recent.map(dashboardUsageJson),
    };
  }

  async keys(accountId: string) {
    return { object: 'list', data: (await this.accounts.listKeys(accountId)).map((record) => dashboardKeyJson(record)) };
  }

  async createKey(accountId: string, input: { name?: unknown; models?: unknown; limits?: unknown }) {
    const limits = this.readKeyLimits(input.limits);
    const { record, key } = await this.accounts.createKey({ account_id: accountId, name: input.name ?? 'default', models: input.models });
    const limited = Object.keys(limits).length ? await this.accounts.setKeyLimits(record.id, limits) : record;
    return dashboardKeyJson(limited, key);
  }

  async rotateKey(accountId: string, keyId: string) {
    await this.ownKey(accountId, keyId);
    const { record, key } = await this.accounts.rotateKey(keyId);
    return dashboardKeyJson(record, key);
  }

  async revokeKey(accountId: string, keyId: string) {
    await this.ownKey(accountId, keyId);
    return dashboardKeyJson(await this.accounts.revokeKey(keyId));
  }

  async deleteKey(accountId: string, keyId: string) {
    await this.ownKey(accountId, keyId);
    await this.accounts.deleteKey(keyId);
    return { id: keyId, object: 'api_key', deleted: true };
  }

  async usage(accountId: string, query: Record<string, unknown>) {
    const filter = readUsageFilter(accountId, query);
    const rows = await this.store.dashboard.queryUsage({ ...filter, limit: filter.limit + 1 });
    const page = rows.slice(0, filter.limit);
    const last = page.at(-1);
    const hasMore = rows.length > filter.limit;
    return {
      object: 'list',
      data: page.map(dashboardUsageJson),
      has_more: hasMore,
      next_before: hasMore && last ? `${last.createdAt}.${last.id}` : null,
    };
  }

  /** The same filters as usage(), every matching row (up to 100,000), as CSV. */
  async usageCsv(accountId: string, query: Record<string, unknown>): Promise<string> {
    const { limit: _limit, before: _before, ...rest } = query;
    const filter = readUsageFilter(accountId, rest);
    const lines = ['id,created_at,key_id,model,endpoint,status,images,prompt_tokens,completion_tokens,cost'];
    let before: UsageFilter['before'];
    for (let fetched = 0; fetched < CSV_MAX_ROWS; ) {
      const rows = await this.store.dashboard.queryUsage({ ...filter, before, limit: Math.min(1000, CSV_MAX_ROWS - fetched) });
      for (const row of rows) {
        const tokens = tokensOf(row);
        lines.push(
          [
            row.id,
            new Date(row.createdAt).toISOString(),
            row.keyId,
            row.model,
            row.endpoint,
            row.status,
            row.images,
            tokens?.prompt ?? '',
            tokens?.completion ?? '',
            formatUsd(row.cost),
          ]
            .map(csvCell)
            .join(','),
        );
      }
      fetched += rows.length;
      const last = rows.at(-1);
      if (!last || rows.length < 1000) break;
      before = { createdAt: last.createdAt, id: last.id };
    }
    return `${lines.join('\r\n')}\r\n`;
  }

  async ledger(accountId: string, query: Record<string, unknown>) {
    await this.accounts.getAccount(accountId);
    const limit = readLimit(query.limit);
    let before: number | null = null;
    if (query.before !== undefined && query.before !== '') {
      before = Number(query.before);
      if (!Number.isSafeInteger(before) || before <= 0) throw invalidRequest("'before' must be a ledger entry id.", 'before');
    }
    const rows = await this.store.dashboard.listLedgerPage(accountId, limit + 1, before);
    return { object: 'list', data: rows.slice(0, limit).map(ledgerJson), has_more: rows.length > limit };
  }

  private async ownKey(accountId: string, keyId: string): Promise<ApiKeyRecord> {
    const record = await this.store.getApiKey(keyId);
    if (!record || record.accountId !== accountId || record.status === 'deleted') {
      throw new GatewayError(`No key with id "${keyId.slice(0, 80)}".`, { status: 404, type: 'invalid_request_error', code: 'not_found' });
    }
    return record;
  }

  /** A key's limits may be tighter than the server defaults, never looser (0 = unlimited is the loosest). */
  private readKeyLimits(value: unknown): Record<string, number | null> {
    if (value === undefined || value === null) return {};
    if (typeof value !== 'object' || Array.isArray(value)) throw invalidRequest("'limits' must be an object.", 'limits', 'invalid_type');
    const defaults: Record<string, number> = {
      requests_per_minute: this.defaultLimits.requestsPerMinute,
      images_per_minute: this.defaultLimits.imagesPerMinute,
      max_in_flight: this.defaultLimits.maxInFlight,
      tokens_per_minute: this.defaultLimits.tokensPerMinute,
      max_queued_jobs: this.defaultLimits.maxQueuedJobs,
    };
    const limits: Record<string, number | null> = {};
    for (const [name, raw] of Object.entries(value as Record<string, unknown>)) {
      if (!(name in defaults))
        throw invalidRequest(
          `Unknown limit '${name.slice(0, 80)}'; use requests_per_minute, images_per_minute, max_in_flight, tokens_per_minute or max_queued_jobs.`,
          `limits.${name.slice(0, 80)}`,
          'unknown_parameter',
        );
      if (raw === null) {
        limits[name] = null;
        continue;
      }
      if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 0 || raw > 1_000_000_000) {
        throw invalidRequest(
          `'limits.${name}' must be a whole number (0 = unlimited), or null for the server default.`,
          `limits.${name}`,
          'invalid_value',
        );
      }
      const ceiling = defaults[name];
      if (ceiling > 0 && (raw === 0 || raw > ceiling)) {
        throw invalidRequest(`'limits.${name}' may be at most the server's ${ceiling}.`, `limits.${name}`, 'limit_too_high');
      }
      limits[name] = raw;
    }
    return limits;
  }
}

export function dashboardKeyJson(record: ApiKeyRecord, key?: string) {
  return { ...keyJson(record, key), last_used_at: record.lastUsedAt === null ? null : Math.floor(record.lastUsedAt / 1000) };
}

export function dashboardUsageJson(record: RequestRecord) {
  return { ...usageJson(record), key_id: record.keyId, tokens: tokensOf(record) };
}

function tokensOf(record: RequestRecord): { prompt: number; completion: number } | null {
  const detail = record.detail;
  if (!detail || typeof detail.prompt_tokens !== 'number' || typeof detail.completion_tokens !== 'number') return null;
  return { prompt: detail.prompt_tokens, completion: detail.completion_tokens };
}

const STATUSES: readonly RequestStatus[] = ['held', 'settled', 'released'];

function readUsageFilter(accountId: string, query: Record<string, unknown>): UsageFilter {
  const text = (name: string): string | undefined => {
    const value = query[name];
    if (value === undefined || value === '') return undefined;
    if (typeof value !== 'string' || value.length > 200) throw invalidRequest(`'${name}' must be a string.`, name, 'invalid_type');
    return value;
  };
  const seconds = (name: string): number | undefined => {
    const value = text(name);
    if (value === undefined) return undefined;
    if (!/^\d{1,12}$/.test(value)) throw invalidRequest(`'${name}' must be a time in unix seconds.`, name);
    return Number(value) * 1000;
  };
  const status = text('status');
  if (status !== undefined && !STATUSES.includes(status as RequestStatus)) {
    throw invalidRequest("'status' must be held, settled or released.", 'status');
  }
  let before: UsageFilter['before'];
  const cursor = text('before');
  if (cursor !== undefined) {
    const match = /^(\d{1,15})\.(\S+)$/.exec(cursor);
    if (!match) throw invalidRequest("'before' must be the next_before of a previous page.", 'before');
    before = { createdAt: Number(match[1]), id: match[2] };
  }
  return {
    accountId,
    keyId: text('key_id'),
    model: text('model'),
    status: status as RequestStatus | undefined,
    endpoint: text('endpoint'),
    from: seconds('from'),
    to: seconds('to'),
    before,
    limit: readLimit(query.limit),
  };
}

function readLimit(value: unknown): number {
  if (value === undefined || value === '') return 50;
  const limit = Number(value);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw invalidRequest("'limit' must be a whole number from 1 to 500.", 'limit');
  return limit;
}

/** RFC 4180 quoting, and a leading apostrophe for cells a spreadsheet would read as a formula. */
function csvCell(value: string | number): string {
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text) && typeof value === 'string') text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
