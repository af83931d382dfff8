#!/usr/bin/env bash
# Installs (if needed) and starts PostgreSQL and Redis for the test suite, then prints the env lines for it:
#   bash .ci/services.sh > /tmp/deepshi-services.env && . /tmp/deepshi-services.env
# Only the `export …` lines go to stdout; everything else goes to stderr. Idempotent: safe to run repeatedly.
set -euo pipefail

PG_USER=deepshi
PG_PASSWORD=deepshi
PG_DB=deepshi
PG_PORT=5432
REDIS_PORT=6379

log() { printf '[services] %s\n' "$*" >&2; }

# Everything this script runs writes to stderr; stdout is reserved for the final export lines.
exec 3>&1 1>&2

as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    if command -v runuser >/dev/null 2>&1; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
  else
    sudo -u postgres "$@"
  fi
}

pg_server_installed() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }
redis_installed() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }

# --- install ------------------------------------------------------------------------------------------------------
if ! pg_server_installed || ! redis_installed || ! command -v pg_ctlcluster >/dev/null 2>&1; then
  log 'installing postgresql and redis-server from Debian packages'
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts may start daemons: none of them may keep fd 3 (see below).
  apt-get update -qq </dev/null 3>&-
  apt-get install -y -qq --no-install-recommends postgresql redis-server </dev/null 3>&-
else
  log 'postgresql and redis-server already installed'
fi

# --- PostgreSQL -----------------------------------------------------------------------------------------------------
PG_VERSION="$(ls -1 /usr/lib/postgresql | sort -V | tail -n 1)"
[ -n "$PG_VERSION" ] || { log 'no PostgreSQL server version found under /usr/lib/postgresql'; exit 1; }
log "PostgreSQL $PG_VERSION"

if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$PG_VERSION main"; then
  log "creating cluster $PG_VERSION/main"
  pg_createcluster "$PG_VERSION" main --port "$PG_PORT" >&2 </dev/null 3>&-
fi

mkdir -p /var/run/postgresql
chown postgres:postgres /var/run/postgresql
chmod 2775 /var/run/postgresql

if pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $4}' | grep -qx online; then
  log 'postgresql already running'
else
  log 'starting postgresql'
  # The daemon must not inherit fd 3 (the caller's stdout pipe): `$(…)` would wait for it forever.
  pg_ctlcluster "$PG_VERSION" main start </dev/null 3>&-
fi

PG_ACTUAL_PORT="$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $3}')"
if [ "$PG_ACTUAL_PORT" != "$PG_PORT" ]; then
  log "warning: cluster $PG_VERSION/main listens on port $PG_ACTUAL_PORT, not $PG_PORT"
fi

for i in $(seq 1 60); do
  if pg_isready -q -h 127.0.0.1 -p "$PG_ACTUAL_PORT"; then break; fi
  [ "$i" = 60 ] && { log 'postgresql did not accept connections within 30 s'; exit 1; }
  sleep 0.5
done
log 'postgresql accepts connections'

psql_admin() { as_postgres psql -v ON_ERROR_STOP=1 -qAt -p "$PG_ACTUAL_PORT" "$@"; }

if [ "$(psql_admin -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]; then
  log "creating role $PG_USER"
  psql_admin -d postgres -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'"
else
  psql_admin -d postgres -c "ALTER ROLE $PG_USER WITH LOGIN PASSWORD '$PG_PASSWORD'"
fi
if [ "$(psql_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
  log "creating database $PG_DB"
  psql_admin -d postgres -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
fi
# Tests create a schema per run (and may create scratch databases).
psql_admin -d postgres -c "ALTER ROLE $PG_USER CREATEDB"
psql_admin -d "$PG_DB" -c "GRANT ALL ON SCHEMA public TO $PG_USER"

PG_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_ACTUAL_PORT/$PG_DB"
if ! PGCONNECT_TIMEOUT=5 psql "$PG_URL" -qAt -c 'SELECT 1' >/dev/null; then
  log "cannot log in as $PG_USER over TCP"; exit 1
fi
log "postgresql ready: $PG_USER@127.0.0.1:$PG_ACTUAL_PORT/$PG_DB"

# --- Redis ----------------------------------------------------------------------------------------------------------
if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -qx PONG; then
  log 'redis already running'
else
  log 'starting redis'
  redis-server --daemonize yes --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile /tmp/deepshi-redis.log --dir /tmp </dev/null 3>&-
fi
for i in $(seq 1 60); do
  if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -qx PONG; then break; fi
  [ "$i" = 60 ] && { log 'redis did not accept connections within 30 s'; exit 1; }
  sleep 0.5
done
log "redis ready: 127.0.0.1:$REDIS_PORT"

# --- the only stdout ------------------------------------------------------------------------------------------------
printf 'export DEEPSHI_TEST_POSTGRES_URL=%s\n' "$PG_URL" >&3
printf 'export DEEPSHI_TEST_REDIS_URL=redis://127.0.0.1:%s\n' "$REDIS_PORT" >&3
