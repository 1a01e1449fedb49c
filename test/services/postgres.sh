#!/usr/bin/env bash
# Makes sure the machine's PostgreSQL answers on 127.0.0.1:5432 and the `test` database
# exists. We reuse the Debian cluster (trust auth) rather than running our own.
#   postgres.sh start    idempotent; exit 1 if it cannot be made to answer
#   postgres.sh status   exit 0 if it answers, 3 otherwise
#   postgres.sh stop     no-op: the cluster is the machine's, not ours
set -euo pipefail

PGARGS=(-h 127.0.0.1 -p 5432 -U postgres)
log() { echo "postgres.sh: $*" >&2; }
answers() { pg_isready -q "${PGARGS[@]}" -t 2; }

case "${1:-}" in
  start)
    if ! answers; then
      ver="$(ls /etc/postgresql | sort -V | tail -n1)"
      log "not answering, starting cluster $ver/main"
      # --skip-systemctl-redirect: no systemd in containers/CI.
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
      for _ in $(seq 60); do answers && break; sleep 0.5; done
      answers || { log "FAILED: PostgreSQL does not answer on 127.0.0.1:5432"; \
                   tail -n 30 /var/log/postgresql/postgresql-"$ver"-main.log >&2 || true; exit 1; }
    fi
    if [ "$(psql "${PGARGS[@]}" -d postgres -tAc "select 1 from pg_database where datname='test'")" != 1 ]; then
      psql "${PGARGS[@]}" -d postgres -qc 'create database test' && log "created database test"
    fi
    log "up at postgres://postgres@127.0.0.1:5432/test" ;;
  status)
    if answers; then echo "postgres: running"; else echo "postgres: not running"; exit 3; fi ;;
  stop) ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
