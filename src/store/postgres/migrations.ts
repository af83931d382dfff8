/**
 * PostgreSQL schema migrations, applied in order by PostgresStore.connect() under an advisory lock and recorded in
 * `schema_migrations`. Append new versions; never edit or reorder one that has shipped.
 *
 * The schema mirrors the SQLite store (src/store/sqlite/sqlite-store.ts): money columns are BIGINT nano-dollars,
 * timestamps are BIGINT epoch milliseconds, and the same CHECK constraints hold (balance ≥ 0, held ≥ 0,
 * 0 ≤ cost ≤ hold), so an overdraft is impossible even for a buggy statement.
 */
import { POSTGRES_JOBS_MIGRATION } from './postgres-jobs.ts';
import { POSTGRES_DASHBOARD_MIGRATION } from './postgres-dashboard.ts';
import { POSTGRES_MARGINS_MIGRATION } from './postgres-margins.ts';

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
  {
    version: 2,
    name: 'per-key rate limits; idempotency keys',
    sql: `
-- NULL = the server-wide default (DEEPSHI_DEFAULT_*); 0 = unlimited.
ALTER TABLE api_keys
  ADD COLUMN requests_per_minute INTEGER CHECK (requests_per_minute IS NULL OR requests_per_minute >= 0),
  ADD COLUMN images_per_minute INTEGER CHECK (images_per_minute IS NULL OR images_per_minute >= 0),
  ADD COLUMN max_in_flight INTEGER CHECK (max_in_flight IS NULL OR max_in_flight >= 0);

-- One row per (account, Idempotency-Key): the claim is the primary key, so two instances can never both own a key.
CREATE TABLE idempotency_keys (
  account_id TEXT NOT NULL REFERENCES accounts(id),
  idem_key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  request_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running','completed')),
  response_status INTEGER,
  response_headers JSONB,
  response_body TEXT,
  created_at BIGINT NOT NULL,
  locked_until BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (account_id, idem_key)
);
CREATE INDEX idempotency_by_expiry ON idempotency_keys(expires_at);
`,
  },
  {
    version: 3,
    name: 'async image jobs, hosted files, webhook deliveries, account webhook settings',
    sql: POSTGRES_JOBS_MIGRATION,
  },
  { version: 4, ...POSTGRES_DASHBOARD_MIGRATION },
  {
    version: 5,
    name: 'tokens per minute on text models',
    sql: 'ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER CHECK (tokens_per_minute IS NULL OR tokens_per_minute >= 0);',
  },
  {
    version: 6,
    name: 'per-key max_queued_jobs for async image jobs',
    sql: 'ALTER TABLE api_keys ADD COLUMN max_queued_jobs INTEGER CHECK (max_queued_jobs IS NULL OR max_queued_jobs >= 0);',
  },
  { version: 7, ...POSTGRES_MARGINS_MIGRATION },
];
