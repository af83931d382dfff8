import { randomUUID } from 'node:crypto';
import pg from 'pg';

/**
 * A fresh, empty PostgreSQL schema per call on DEEPSHI_TEST_POSTGRES_URL (selected with `options=-c search_path=…`),
 * so suites that run a server on PostgreSQL never see each other's rows; dropSchemas() removes them at the end.
 */
export const postgresBaseUrl = process.env.DEEPSHI_TEST_POSTGRES_URL;
const created: string[] = [];

export async function freshPostgresSchema(): Promise<{ url: string; schema: string }> {
  if (!postgresBaseUrl) throw new Error('DEEPSHI_TEST_POSTGRES_URL is not set');
  const schema = `deepshi_test_${process.pid}_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  await withPostgres((client) => client.query(`CREATE SCHEMA ${schema}`));
  created.push(schema);
  const url = new URL(postgresBaseUrl);
  url.searchParams.set('options', `-c search_path=${schema}`);
  return { url: url.toString(), schema };
}

export async function withPostgres<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: postgresBaseUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function dropSchemas(): Promise<void> {
  if (created.length === 0) return;
  await withPostgres(async (client) => {
    for (const schema of created.splice(0)) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  });
}
