import { SQLITE_DASHBOARD_MIGRATION } from './sqlite-dashboard.ts';
import { SQLITE_JOBS_MIGRATION } from './sqlite-jobs.ts';
import { SQLITE_MARGINS_MIGRATION } from './sqlite-margins.ts';

/**
 * Versioned with PRAGMA user_version: append a new entry to apply on existing files; never edit a shipped one.
 * The balance cap (2^62 nanos, about $4.6B) keeps every sum inside a signed 64-bit integer, where SQLite would
 * otherwise silently switch to floating point.
 */
export const MIGRATIONS: readonly string[] = [
  `
CREATE TABLE IF NOT EXISTS accounts (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  balance INTEGER NOT NULL CHECK (balance >= 0 AND balance <= 4611686018427387904),
  held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  name TEXT NOT NULL,
  models TEXT,
  status TEXT NOT NULL CHECK (status IN ('active','revoked','deleted')),
  key_hash TEXT UNIQUE,
  display TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_entries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  kind TEXT NOT NULL CHECK (kind IN ('credit','hold','settle','release','adjustment')),
  available_delta INTEGER NOT NULL,
  held_delta INTEGER NOT NULL,
  request_id TEXT,
  note TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_by_account ON api_keys(account_id, created_at, id);
CREATE INDEX IF NOT EXISTS ledger_by_account ON ledger_entries(account_id, id);
CREATE TABLE IF NOT EXISTS requests (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL REFERENCES accounts(id),
  key_id TEXT NOT NULL,
  model TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('held','settled','released')),
  hold INTEGER NOT NULL CHECK (hold >= 0),
  cost INTEGER NOT NULL DEFAULT 0 CHECK (cost >= 0 AND cost <= hold),
  upstream_cost INTEGER,
  images INTEGER NOT NULL DEFAULT 0,
  detail TEXT,
  created_at INTEGER NOT NULL,
  resolved_at INTEGER,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_account ON requests(account_id, created_at);
CREATE INDEX IF NOT EXISTS requests_held ON requests(status, expires_at) WHERE status = 'held';
`,
  `
ALTER TABLE api_keys ADD COLUMN requests_per_minute INTEGER CHECK (requests_per_minute IS NULL OR requests_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN images_per_minute INTEGER CHECK (images_per_minute IS NULL OR images_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN max_in_flight INTEGER CHECK (max_in_flight IS NULL OR max_in_flight >= 0);
CREATE TABLE idempotency_keys (
  account_id TEXT NOT NULL REFERENCES accounts(id),
  idem_key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  request_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running','completed')),
  response_status INTEGER,
  response_headers TEXT,
  response_body TEXT,
  created_at INTEGER NOT NULL,
  locked_until INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, idem_key)
);
CREATE INDEX idempotency_by_expiry ON idempotency_keys(expires_at);
`,
  SQLITE_JOBS_MIGRATION,
  SQLITE_DASHBOARD_MIGRATION,
  // Tokens per minute on text models (NULL = the server default, 0 = unlimited).
  'ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER CHECK (tokens_per_minute IS NULL OR tokens_per_minute >= 0);',
  // Async image jobs a key may have queued or running (NULL = DEEPSHI_DEFAULT_MAX_QUEUED_JOBS, 0 = unlimited).
  'ALTER TABLE api_keys ADD COLUMN max_queued_jobs INTEGER CHECK (max_queued_jobs IS NULL OR max_queued_jobs >= 0);',
  // Settled requests by time across accounts, for the operator's margins (src/store/sqlite/sqlite-margins.ts).
  SQLITE_MARGINS_MIGRATION,
];
