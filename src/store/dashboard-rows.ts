import type { CreditCodeRecord, ModelMargin, UserRecord } from './dashboard-types.ts';
import type { Row } from './rows.ts';

/** Row → record mapping of the dashboard tables, shared by both stores (same columns in each). */
export const dashboardRowMappers = {
  toUser: (row: Row): UserRecord => ({
    id: String(row.id),
    email: String(row.email),
    passwordHash: String(row.password_hash),
    role: row.role as UserRecord['role'],
    accountId: (row.account_id as string | null) ?? null,
    createdAt: Number(row.created_at),
    passwordChangedAt: Number(row.password_changed_at),
  }),
  toCreditCode: (row: Row): CreditCodeRecord => ({
    id: String(row.id),
    prefix: String(row.code_prefix),
    amount: BigInt(row.amount as bigint),
    note: (row.note as string | null) ?? null,
    createdAt: Number(row.created_at),
    redeemedAt: row.redeemed_at === null || row.redeemed_at === undefined ? null : Number(row.redeemed_at),
    redeemedBy: (row.redeemed_by as string | null) ?? null,
  }),
  toModelMargin: (row: Row): ModelMargin => ({
    model: String(row.model),
    requests: Number(row.requests),
    charged: BigInt(row.charged as bigint),
    requestsWithUpstreamCost: Number(row.requests_with_upstream_cost),
    chargedWithUpstreamCost: BigInt(row.charged_with_upstream_cost as bigint),
    upstreamCost: BigInt(row.upstream_cost as bigint),
  }),
};

/**
 * Decides when a key's last_used_at is worth writing: at most once a minute per key on this instance, so a busy key
 * costs one small write a minute rather than one per request.
 */
export class KeyUseThrottle {
  static readonly intervalMs = 60_000;
  private readonly written = new Map<string, number>();

  due(keyId: string, now: number): boolean {
    const last = this.written.get(keyId);
    if (last !== undefined && now - last < KeyUseThrottle.intervalMs) return false;
    // Bounded: forget everything rather than grow without end on a server with a huge number of keys.
    if (this.written.size >= 100_000) this.written.clear();
    this.written.set(keyId, now);
    return true;
  }

  forget(keyId: string): void {
    this.written.delete(keyId);
  }
}
