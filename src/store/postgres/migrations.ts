/**
 * PostgreSQL schema migrations, applied in order by PostgresStore.connect() under an advisory lock and recorded in
 * `schema_migrations`. Append new versions; never edit or reorder one that has shipped.
 *
 * The schema mirrors the SQLite store (src/store/sqlite/sqlite-store.ts): money columns are BIGINT nano-dollars,
 * timestamps are BIGINT epoch milliseconds, and the same CHECK constraints hold (balance ≥ 0, held ≥ 0,
 * 0 ≤ cost ≤ hold), so an overdraft is impossible even for a buggy statement.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema: accounts, api keys, ledger, requests',
    sql: `
CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  balance BIGINT NOT NULL CHECK (balance >= 0 AND balance <= 4611686018427387904),
  held BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
  created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  name TEXT NOT NULL,
  -- JSON array of model ids; NULL = every model, [] = none.
  models JSONB CHECK (models IS NULL OR jsonb_typeof(models) = 'array'),
  status TEXT NOT NULL CHECK (status IN ('active','revoked','deleted')),
  -- NULL once deleted, so a deleted key can never match again.
  key_hash TEXT UNIQUE,
  display TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_by_account ON api_keys(account_id, created_at, id);

CREATE TABLE ledger_entries (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  kind TEXT NOT NULL CHECK (kind IN ('credit','hold','settle','release','adjustment')),
  available_delta BIGINT NOT NULL,
  held_delta BIGINT NOT NULL,
  request_id TEXT,
  note TEXT,
  created_at BIGINT NOT NULL
);
CREATE INDEX ledger_by_account ON ledger_entries(account_id, id);

CREATE TABLE requests (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  key_id TEXT NOT NULL,
  model TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('held','settled','released')),
  hold BIGINT NOT NULL CHECK (hold >= 0),
  cost BIGINT NOT NULL DEFAULT 0 CHECK (cost >= 0 AND cost <= hold),
  upstream_cost BIGINT,
  images INTEGER NOT NULL DEFAULT 0,
  detail JSONB,
  created_at BIGINT NOT NULL,
  resolved_at BIGINT,
  expires_at BIGINT NOT NULL
);
CREATE INDEX requests_by_account ON requests(account_id, created_at, id);
CREATE INDEX requests_held ON requests(expires_at) WHERE status = 'held';
`,
  },
];
