import type pg from 'pg';
import type { ModelMargin } from '../dashboard-types.ts';
import { dashboardRowMappers } from '../dashboard-rows.ts';
import type { Row } from '../rows.ts';

/**
 * Appended to the PostgreSQL migrations (src/store/postgres/migrations.ts). The margins read spans every account,
 * which no other index serves; without this it would scan the whole requests table, which grows without end. Partial
 * and covering, so the read can be an index-only scan over the period's settled rows.
 */
export const POSTGRES_MARGINS_MIGRATION = {
  name: 'settled requests by time, for the operator margins',
  sql: "CREATE INDEX requests_settled_by_time ON requests(created_at) INCLUDE (model, cost, upstream_cost) WHERE status = 'settled';",
};

// SUM(bigint) is numeric in PostgreSQL: cast back so the driver hands over a bigint, not a string.
const MODEL_MARGINS = `
  SELECT model, COUNT(*) AS requests, SUM(cost)::bigint AS charged,
         COUNT(upstream_cost) AS requests_with_upstream_cost,
         COALESCE(SUM(cost) FILTER (WHERE upstream_cost IS NOT NULL), 0)::bigint AS charged_with_upstream_cost,
         COALESCE(SUM(upstream_cost), 0)::bigint AS upstream_cost
  FROM requests WHERE status = 'settled' AND created_at >= $1
  GROUP BY model ORDER BY charged DESC, model`;

/** DashboardStore.modelMargins for PostgreSQL. */
export async function queryModelMargins(pool: pg.Pool, since: number): Promise<ModelMargin[]> {
  const { rows } = await pool.query<Row>({ name: 'deepshi_dash_modelMargins', text: MODEL_MARGINS, values: [since] });
  return rows.map(dashboardRowMappers.toModelMargin);
}
