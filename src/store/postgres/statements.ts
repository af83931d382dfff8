// Every statement below is named, so pg prepares it once per connection and later calls skip parse/plan.
// Money movements are each ONE statement (data-modifying CTEs): one round-trip, one implicit transaction, atomic.
export const SQL = {
  // Account row and its opening credit entry together; the entry only exists when credits > 0.
  createAccount: `
    WITH a AS (
      INSERT INTO accounts (id, name, balance, held, created_at) VALUES ($1, $2, $3::bigint, 0, $4)
      RETURNING *
    ), l AS (
      INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
      SELECT a.id, 'credit', $3::bigint, 0, NULL, $5, $4 FROM a WHERE $3::bigint > 0
    )
    SELECT * FROM a`,
  getAccount: 'SELECT * FROM accounts WHERE id = $1',
  listAccounts: 'SELECT * FROM accounts ORDER BY created_at, id',
  isEmpty: 'SELECT NOT EXISTS (SELECT 1 FROM accounts) AS empty',
  addCredits: `
    WITH a AS (
      UPDATE accounts SET balance = balance + $2::bigint WHERE id = $1
      RETURNING *
    ), l AS (
      INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
      SELECT a.id, 'credit', $2::bigint, 0, NULL, $3, $4 FROM a
    )
    SELECT * FROM a`,
  listLedger: 'SELECT * FROM ledger_entries WHERE account_id = $1 ORDER BY id DESC LIMIT $2',

  insertKey: `
    INSERT INTO api_keys (id, account_id, name, models, status, key_hash, display, created_at)
    VALUES ($1, $2, $3, $4::jsonb, 'active', $5, $6, $7)
    RETURNING *`,
  getKey: 'SELECT * FROM api_keys WHERE id = $1',
  // Playground keys (tied to a dashboard session) are never listed, and stop matching when they expire.
  listKeys: "SELECT * FROM api_keys WHERE account_id = $1 AND status <> 'deleted' AND session_hash IS NULL ORDER BY created_at, id",
  findKey: "SELECT * FROM api_keys WHERE key_hash = $1 AND status <> 'deleted' AND (expires_at IS NULL OR expires_at > $2)",
  rotateKey: "UPDATE api_keys SET key_hash = $2, display = $3 WHERE id = $1 AND status = 'active' RETURNING *",
  revokeKey: "UPDATE api_keys SET status = 'revoked' WHERE id = $1 AND status <> 'deleted' RETURNING *",
  deleteKey: "UPDATE api_keys SET status = 'deleted', key_hash = NULL WHERE id = $1 AND status <> 'deleted'",
  setKeyModels: "UPDATE api_keys SET models = $2::jsonb WHERE id = $1 AND status <> 'deleted' RETURNING *",
  setKeyLimits: `
    UPDATE api_keys SET requests_per_minute = $2, images_per_minute = $3, max_in_flight = $4, tokens_per_minute = $5,
      max_queued_jobs = $6
    WHERE id = $1 AND status <> 'deleted' RETURNING *`,

  // The guarded reservation. The WHERE clause is the balance check, so check and debit cannot be separated:
  // concurrent reservations queue on the account row lock and each re-evaluates `balance >= $1` on the row as
  // the previous one left it. The request row and the hold entry are written only if the debit happened.
  reserve: `
    WITH a AS (
      UPDATE accounts SET balance = balance - $1::bigint, held = held + $1::bigint
      WHERE id = $2 AND balance >= $1::bigint
      RETURNING id
    ), r AS (
      INSERT INTO requests (id, account_id, key_id, model, endpoint, status, hold, created_at, expires_at)
      SELECT $3, a.id, $4, $5, $6, 'held', $1::bigint, $7, $8 FROM a
      RETURNING id, account_id
    )
    INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
    SELECT r.account_id, 'hold', -$1::bigint, $1::bigint, r.id, NULL, $7 FROM r
    RETURNING id`,
  // Resolves a held request exactly once: concurrent resolvers queue on the request row and re-check
  // `status = 'held'`, so only the first one changes anything. The cost is clamped to [0, hold] in SQL.
  resolve: `
    WITH r AS (
      UPDATE requests
      SET status = $2, cost = LEAST(GREATEST($3::bigint, 0), hold), upstream_cost = $4::bigint, images = $5,
          detail = $6::jsonb, resolved_at = $7
      WHERE id = $1 AND status = 'held'
      RETURNING id, account_id, hold, cost
    ), a AS (
      UPDATE accounts SET held = accounts.held - r.hold, balance = accounts.balance + (r.hold - r.cost)
      FROM r WHERE accounts.id = r.account_id
      RETURNING accounts.id
    )
    INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
    SELECT r.account_id, $8, r.hold - r.cost, -r.hold, r.id, NULL, $7 FROM r JOIN a ON a.id = r.account_id
    RETURNING id`,
  // resolve, and the Idempotency-Key's response saved in the same statement (so the same transaction).
  settleWithIdem: `
    WITH r AS (
      UPDATE requests
      SET status = 'settled', cost = LEAST(GREATEST($2::bigint, 0), hold), upstream_cost = $3::bigint, images = $4,
          detail = $5::jsonb, resolved_at = $6
      WHERE id = $1 AND status = 'held'
      RETURNING id, account_id, hold, cost
    ), a AS (
      UPDATE accounts SET held = accounts.held - r.hold, balance = accounts.balance + (r.hold - r.cost)
      FROM r WHERE accounts.id = r.account_id
      RETURNING accounts.id
    ), k AS (
      UPDATE idempotency_keys SET status = 'completed', response_status = $9, response_headers = $10::jsonb, response_body = $11
      FROM r WHERE idempotency_keys.account_id = $7 AND idempotency_keys.idem_key = $8 AND idempotency_keys.request_id = r.id
        AND idempotency_keys.status = 'running'
      RETURNING 1
    )
    INSERT INTO ledger_entries (account_id, kind, available_delta, held_delta, request_id, note, created_at)
    SELECT r.account_id, 'settle', r.hold - r.cost, -r.hold, r.id, NULL, $6 FROM r JOIN a ON a.id = r.account_id
    RETURNING id`,
  getRequest: 'SELECT * FROM requests WHERE id = $1',
  listRequests: 'SELECT * FROM requests WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2',
  expired: "SELECT id FROM requests WHERE status = 'held' AND expires_at < $1 ORDER BY expires_at LIMIT $2",

  // The claim is arbitrated by the primary key: concurrent claims of one key queue on it, and exactly one inserts
  // (or replaces an expired record). The losers get no row back and read the winner's record in a new statement.
  claimIdem: `
    INSERT INTO idempotency_keys (account_id, idem_key, request_hash, request_id, status, created_at, locked_until, expires_at)
    VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)
    ON CONFLICT (account_id, idem_key) DO UPDATE
      SET request_hash = EXCLUDED.request_hash, request_id = EXCLUDED.request_id, status = 'running',
          response_status = NULL, response_headers = NULL, response_body = NULL,
          created_at = EXCLUDED.created_at, locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at
      WHERE idempotency_keys.expires_at <= $5
    RETURNING request_id`,
  getIdem: 'SELECT * FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2',
  takeOverIdem: `
    UPDATE idempotency_keys SET request_id = $4, locked_until = $5
    WHERE account_id = $1 AND idem_key = $2 AND request_id = $3 AND status = 'running'`,
  completeIdem: `
    UPDATE idempotency_keys SET status = 'completed', response_status = $4, response_headers = $5::jsonb, response_body = $6
    WHERE account_id = $1 AND idem_key = $2 AND request_id = $3 AND status = 'running'`,
  releaseIdem: "DELETE FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2 AND request_id = $3 AND status = 'running'",
  reapIdem: `
    DELETE FROM idempotency_keys WHERE (account_id, idem_key) IN (
      SELECT account_id, idem_key FROM idempotency_keys WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
    )`,
} as const;
