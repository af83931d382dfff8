import type Database from 'better-sqlite3';
import type { ModelMargin } from '../dashboard-types.ts';
import { dashboardRowMappers } from '../dashboard-rows.ts';
import type { Row } from '../rows.ts';

/**
 * Appended to the SQLite migrations (src/store/sqlite/migrations.ts). The margins read spans every account, which no
 * other index serves; without this it would scan the whole requests table, which grows without end. Covering and
 * partial, so the read touches only the period's settled rows and never the table.
 */
export const SQLITE_MARGINS_MIGRATION =
  "CREATE INDEX requests_settled_by_time ON requests(created_at, model, cost, upstream_cost) WHERE status = 'settled';";

/** DashboardStore.modelMargins for SQLite: sums are exact 64-bit integers (safeIntegers), never floating point. */
export function prepareModelMargins(db: Database.Database): (since: number) => ModelMargin[] {
  const statement = db
    .prepare(`
      SELECT model, COUNT(*) AS requests, SUM(cost) AS charged,
             COUNT(upstream_cost) AS requests_with_upstream_cost,
             COALESCE(SUM(CASE WHEN upstream_cost IS NOT NULL THEN cost END), 0) AS charged_with_upstream_cost,
             COALESCE(SUM(upstream_cost), 0) AS upstream_cost
      FROM requests WHERE status = 'settled' AND created_at >= ?
      GROUP BY model ORDER BY charged DESC, model`)
    .safeIntegers(true);
  return (since) => (statement.all(since) as Row[]).map(dashboardRowMappers.toModelMargin);
}
