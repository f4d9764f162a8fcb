#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL server for the test suite, from Debian's packages.
#   eval "$(bash scripts/postgres.sh start)"   -> exports FRAMEWORM_TEST_POSTGRES_URL
#   bash scripts/postgres.sh stop
# Installs Debian's `postgresql` package when it is missing (needs root, as in CI).
set -euo pipefail
PORT="${FRAMEWORM_PG_PORT:-55432}"
DATA="${FRAMEWORM_PG_DATA:-/tmp/frameworm-pg-$PORT}"
DB=frameworm_test

find_bin() {
  local name=$1
  command -v "$name" 2>/dev/null && return 0
  ls /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd="${1:-start}"
if [ "$cmd" = stop ]; then
  PG_CTL=$(find_bin pg_ctl || true)
  [ -n "$PG_CTL" ] && [ -d "$DATA" ] && as_pg "$PG_CTL" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
  exit 0
fi

if [ -z "$(find_bin pg_ctl || true)" ]; then
  echo "installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
fi
PG_CTL=$(find_bin pg_ctl)
INITDB=$(find_bin initdb)
PSQL=$(command -v psql)

if ! as_pg "$PG_CTL" -D "$DATA" status >/dev/null 2>&1; then
  if [ ! -f "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres: "$DATA"
    as_pg "$INITDB" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  as_pg "$PG_CTL" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
    -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
fi
as_pg "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1 \
  || as_pg "$PSQL" -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE $DB" >/dev/null
echo "export FRAMEWORM_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$PORT/$DB"
