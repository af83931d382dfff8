import type Database from 'better-sqlite3';

/** Every statement of the SQLite store (sqlite-store.ts), prepared once when it opens. Money columns are read as BigInt. */
export function prepareStatements(db: Database.Database) {
  const money = <T extends Database.Statement>(statement: T): T => statement.safeIntegers(true) as T;
  return {
    insertAccount: db.prepare('INSERT INTO accounts (id, name, balance, held, created_at) VALUES (?, ?, 0, 0, ?)'),
    getAccount: money(db.prepare('SELECT * FROM accounts WHERE id = ?')),
    listAccounts: money(db.prepare('SELECT * FROM accounts ORDER BY created_at, id')),
    countAccounts: db.prepare('SELECT COUNT(*) AS n FROM accounts'),
    credit: db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?'),
    insertLedger: db.prepare(
      'INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    listLedger: money(db.prepare('SELECT * FROM ledger_entries WHERE account_id = ? ORDER BY id DESC LIMIT ?')),
    insertKey: db.prepare(
      "INSERT INTO api_keys (id, account_id, name, models, status, key_hash, display, created_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?)",
    ),
    getKey: db.prepare('SELECT * FROM api_keys WHERE id = ?'),
    // Playground keys (tied to a dashboard session) are never listed, and stop matching when they expire.
    listKeys: db.prepare(
      "SELECT * FROM api_keys WHERE account_id = ? AND status != 'deleted' AND session_hash IS NULL ORDER BY created_at, id",
    ),
    findKey: db.prepare("SELECT * FROM api_keys WHERE key_hash = ? AND status != 'deleted' AND (expires_at IS NULL OR expires_at > ?)"),
    rotateKey: db.prepare("UPDATE api_keys SET key_hash = ?, display = ? WHERE id = ? AND status = 'active'"),
    revokeKey: db.prepare("UPDATE api_keys SET status = 'revoked' WHERE id = ? AND status != 'deleted'"),
    deleteKey: db.prepare("UPDATE api_keys SET status = 'deleted', key_hash = NULL WHERE id = ? AND status != 'deleted'"),
    setKeyModels: db.prepare("UPDATE api_keys SET models = ? WHERE id = ? AND status != 'deleted'"),
    setKeyLimits: db.prepare(
      "UPDATE api_keys SET requests_per_minute = ?, images_per_minute = ?, max_in_flight = ?, tokens_per_minute = ?, max_queued_jobs = ? WHERE id = ? AND status != 'deleted'",
    ),
    // The guarded reservation: the WHERE clause is the balance check, so check and debit cannot be separated.
    reserve: db.prepare('UPDATE accounts SET balance = balance - ?, held = held + ? WHERE id = ? AND balance >= ?'),
    insertRequest: db.prepare(
      "INSERT INTO requests (id, account_id, key_id, model, endpoint, status, hold, created_at, expires_at) VALUES (?, ?, ?, ?, ?, 'held', ?, ?, ?)",
    ),
    getRequest: money(db.prepare('SELECT * FROM requests WHERE id = ?')),
    resolveRequest: db.prepare(
      "UPDATE requests SET status = ?, cost = ?, upstream_cost = ?, images = ?, detail = ?, resolved_at = ? WHERE id = ? AND status = 'held'",
    ),
    unhold: db.prepare('UPDATE accounts SET held = held - ?, balance = balance + ? WHERE id = ?'),
    listRequests: money(db.prepare('SELECT * FROM requests WHERE account_id = ? ORDER BY created_at DESC, id DESC LIMIT ?')),
    expired: db.prepare("SELECT id FROM requests WHERE status = 'held' AND expires_at < ? ORDER BY expires_at LIMIT ?"),
    getIdem: db.prepare('SELECT * FROM idempotency_keys WHERE account_id = ? AND idem_key = ?'),
    putIdem: db.prepare(
      "INSERT OR REPLACE INTO idempotency_keys (account_id, idem_key, request_hash, request_id, status, created_at, locked_until, expires_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
    ),
    takeOverIdem: db.prepare(
      "UPDATE idempotency_keys SET request_id = ?, locked_until = ? WHERE account_id = ? AND idem_key = ? AND request_id = ? AND status = 'running'",
    ),
    completeIdem: db.prepare(
      "UPDATE idempotency_keys SET status = 'completed', response_status = ?, response_headers = ?, response_body = ? WHERE account_id = ? AND idem_key = ? AND request_id = ? AND status = 'running'",
    ),
    releaseIdem: db.prepare("DELETE FROM idempotency_keys WHERE account_id = ? AND idem_key = ? AND request_id = ? AND status = 'running'"),
    reapIdem: db.prepare(
      'DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)',
    ),
  };
}

export type SqliteStatements = ReturnType<typeof prepareStatements>;
