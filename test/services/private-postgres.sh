#!/usr/bin/env bash
# A Postgres server of a test's own, on a private port and data directory, for tests that stop
# and start the database mid-test (the machine's cluster, test/services/postgres.sh, is shared
# by every test run and is never stopped). initdb and postgres refuse to run as root: as root,
# they run as the `postgres` OS user.
#   private-postgres.sh start    initdb on first use, start, create database `test`; idempotent
#   private-postgres.sh stop     fast shutdown (sessions get "terminating connection due to administrator command")
#   private-postgres.sh status   exit 0 if it answers, 3 otherwise
# Environment:
#   SERVICES_DIR   state root, default <repo>/.services
#   PG_INSTANCE    folder under SERVICES_DIR, default "postgres-private"
#   PG_PORT        port on 127.0.0.1, default 15432
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
SERVICES_DIR="${SERVICES_DIR:-$repo/.services}"
instance="${PG_INSTANCE:-postgres-private}"
port="${PG_PORT:-15432}"
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
dir="$SERVICES_DIR/$instance"
data="$dir/data"

log() { echo "private-postgres.sh[$instance]: $*" >&2; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
answers() { "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -t 2; }

case "${1:-}" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if [ ! -f "$data/PG_VERSION" ]; then
      as_postgres "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
        { log "FAILED: initdb"; tail -n 20 "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! answers; then
      # Small and unsynced: it holds a test's rows and is thrown away.
      as_postgres "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB" start >/dev/null ||
        { log "FAILED: start"; tail -n 20 "$dir/server.log" >&2; exit 1; }
    fi
    if [ "$("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'")" != 1 ]; then
      "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc 'create database test'
    fi
    log "up at postgres://postgres@127.0.0.1:$port/test" ;;
  stop)
    if answers; then as_postgres "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null && log "stopped"; else log "not running"; fi ;;
  status)
    if answers; then echo "private postgres[$instance]: running"; else echo "private postgres[$instance]: not running"; exit 3; fi ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
