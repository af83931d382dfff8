/**
 * Runs the Store contract on PostgreSQL at DEEPSHI_TEST_POSTGRES_URL (start one with `eval "$(bash .ci/services.sh)"`).
 * Each open() gets its own freshly created schema (selected via `options=-c search_path=…`), dropped at the end,
 * so runs never see each other's rows. Without the variable the suite is skipped locally and FAILS under CI.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it, test } from 'node:test';
import pg from 'pg';
import { PostgresStore } from '../../src/store/postgres/postgres-store.ts';
import { MIGRATIONS } from '../../src/store/postgres/migrations.ts';
import { assertLedgerInvariant, runStoreContract } from './store-contract.ts';
import { runDashboardStoreContract } from './dashboard-store-contract.ts';

const baseUrl = process.env.DEEPSHI_TEST_POSTGRES_URL;
const HOW_TO = 'start PostgreSQL and export the variable with: eval "$(bash .ci/services.sh)"';

if (!baseUrl) {
  if (process.env.CI) {
    test('PostgreSQL store contract', () => {
      assert.fail(`DEEPSHI_TEST_POSTGRES_URL is not set, but CI must run the PostgreSQL store tests (${HOW_TO})`);
    });
  } else {
    test('PostgreSQL store contract', { skip: `DEEPSHI_TEST_POSTGRES_URL is not set; ${HOW_TO}` }, () => {});
  }
} else {
  const schemas: string[] = [];

  /** Creates an empty, uniquely named schema and returns a URL whose sessions use it. */
  async function freshSchemaUrl(): Promise<{ url: string; schema: string }> {
    const schema = `deepshi_test_${process.pid}_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    await withAdmin((client) => client.query(`CREATE SCHEMA ${schema}`));
    schemas.push(schema);
    const url = new URL(baseUrl!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    return { url: url.toString(), schema };
  }

  async function withAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: baseUrl });
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }

  after(async () => {
    if (schemas.length === 0) return;
    await withAdmin(async (client) => {
      for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    });
  });

  runStoreContract('postgres', async () => PostgresStore.connect((await freshSchemaUrl()).url));
  runDashboardStoreContract('postgres', async () => PostgresStore.connect((await freshSchemaUrl()).url));

  describe('PostgresStore specifics', () => {
    it('several instances starting together migrate once, and a restart applies nothing again', async () => {
      const { url, schema } = await freshSchemaUrl();
      const stores = await Promise.all(Array.from({ length: 6 }, () => PostgresStore.connect(url)));
      try {
        const again = await PostgresStore.connect(url);
        await again.close();
        const rows = await withAdmin(
          async (client) => (await client.query(`SELECT version FROM ${schema}.schema_migrations ORDER BY version`)).rows,
        );
        assert.deepEqual(
          rows.map((r) => r.version),
          MIGRATIONS.map((m) => m.version),
        );
        for (const store of stores) assert.equal(await store.isEmpty(), true);
      } finally {
        await Promise.all(stores.map((store) => store.close()));
      }
    });

    it('the overspend bound holds across instances: 200 reservations over 4 pools, balance 37·p → 37 succeed', async () => {
      const { url } = await freshSchemaUrl();
      const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.connect(url)));
      try {
        const p = 50_000_000n;
        const acct = await stores[0].createAccount({ name: 'multi-instance', credits: 37n * p });
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            stores[i % stores.length].reserveCredits({
              requestId: `req_${i}_${randomUUID()}`,
              accountId: acct.id,
              keyId: 'k',
              model: 'm',
              endpoint: '/v1/images/generations',
              amount: p,
              expiresAt: Date.now() + 60_000,
            }),
          ),
        );
        assert.equal(results.filter(Boolean).length, 37);
        const after = await stores[3].getAccount(acct.id);
        assert.equal(after?.balance, 0n);
        assert.equal(after?.held, 37n * p);
        await assertLedgerInvariant(stores[1], acct.id);
      } finally {
        await Promise.all(stores.map((store) => store.close()));
      }
    });

    it('the CHECK constraints refuse an overdraft even from a raw statement', async () => {
      const { url, schema } = await freshSchemaUrl();
      const store = await PostgresStore.connect(url);
      try {
        const acct = await store.createAccount({ name: 'checks', credits: 10n });
        await withAdmin(async (client) => {
          await assert.rejects(client.query(`UPDATE ${schema}.accounts SET balance = -1 WHERE id = $1`, [acct.id]), /check constraint/);
          await assert.rejects(client.query(`UPDATE ${schema}.accounts SET held = -1 WHERE id = $1`, [acct.id]), /check constraint/);
        });
        assert.equal(
          await store.reserveCredits({
            requestId: 'req_check',
            accountId: acct.id,
            keyId: 'k',
            model: 'm',
            endpoint: 'e',
            amount: 10n,
            expiresAt: 0,
          }),
          true,
        );
        await withAdmin(async (client) => {
          await assert.rejects(client.query(`UPDATE ${schema}.requests SET cost = hold + 1 WHERE id = 'req_check'`), /check constraint/);
        });
      } finally {
        await store.close();
      }
    });

    it('bigint parsing is local to the store: other pg clients still get int8 as strings', async () => {
      const value = await withAdmin(async (client) => (await client.query('SELECT 9007199254740993::bigint AS v')).rows[0].v);
      assert.equal(value, '9007199254740993');
    });

    it('close() is idempotent', async () => {
      const store = await PostgresStore.connect((await freshSchemaUrl()).url);
      await store.close();
      await store.close();
    });
  });
}
