#!/usr/bin/env bash
# Runs Debian's clamd for the tests with a private config and the repo's own tiny signature
# set (test/services/clamav/db: EICAR by hash and by body, plus a made-up marker string).
#   clamd.sh start    idempotent (an instance already answering is kept as it is: stop it to
#                     apply new settings); waits for PONG; exit 1 (with the log tail) if none
#   clamd.sh status   exit 0 if it answers PING, 3 otherwise
#   clamd.sh stop     stops the instance this script started
# Environment (defaults give the instance test/services/env.ts points at):
#   SERVICES_DIR       state root, default <repo>/.services
#   CLAMD_INSTANCE     instance name = folder under SERVICES_DIR, default "clamd"
#   CLAMD_TCP_PORT     TCP port on 127.0.0.1, default 13310; empty = unix socket only
#   CLAMD_STREAM_MAX   StreamMaxLength/MaxFileSize/MaxScanSize, default 600M
#                      (the tests start a second instance with a small value to see refusals)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
SERVICES_DIR="${SERVICES_DIR:-$repo/.services}"
instance="${CLAMD_INSTANCE:-clamd}"
tcp_port="${CLAMD_TCP_PORT-13310}"
stream_max="${CLAMD_STREAM_MAX:-600M}"
dir="$SERVICES_DIR/$instance"
sock="$dir/clamd.sock"
pidfile="$dir/run.pid"

log() { echo "clamd.sh[$instance]: $*" >&2; }

# PING over the unix socket. Bash cannot open unix sockets and clamdscan/socat are not
# installed, but node is (the repo needs it); CommonJS -e ignores package.json's "type".
answers() {
  [ -S "$sock" ] || return 1
  node -e '
    const s = require("net").connect(process.argv[1]);
    let reply = "";
    s.setTimeout(2000, () => process.exit(1));
    s.on("error", () => process.exit(1));
    s.on("data", (c) => (reply += c));
    s.on("close", () => process.exit(reply.startsWith("PONG") ? 0 : 1));
    s.end("zPING\0");
  ' "$sock"
}

running_pid() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = clamd ] && echo "$pid"
}

fail() {
  log "FAILED: $*"
  tail -n 30 "$dir/clamd.log" "$dir/stdout.log" >&2 2>/dev/null || true
  exit 1
}

case "${1:-}" in
  start)
    if answers; then log "already up at $sock"; exit 0; fi
    command -v clamd >/dev/null || fail "clamd not installed (run test/services/install.sh as root)"
    mkdir -p "$dir/tmp"
    if ! running_pid >/dev/null; then
      tcp=""
      [ -n "$tcp_port" ] && tcp="TCPSocket $tcp_port\nTCPAddr 127.0.0.1"
      # awk -v turns the \n in $tcp into a line break (two lines, or none without TCP).
      awk -v dir="$dir" -v db="$here/clamav/db" -v max="$stream_max" -v tcp="$tcp" '
        { gsub(/@DIR@/, dir); gsub(/@DB@/, db); gsub(/@STREAM_MAX@/, max); sub(/@TCP@/, tcp); print }
      ' "$here/clamav/clamd.conf.in" > "$dir/clamd.conf"
      rm -f "$sock"
      # Foreground clamd in its own session, so it outlives the shell/vitest that started it.
      setsid clamd --config-file="$dir/clamd.conf" >"$dir/stdout.log" 2>&1 </dev/null &
      echo $! > "$pidfile"
      log "started pid $(cat "$pidfile") (config $dir/clamd.conf)"
    fi
    for _ in $(seq 60); do
      answers && { log "up at $sock${tcp_port:+ and 127.0.0.1:$tcp_port}, StreamMaxLength $stream_max"; exit 0; }
      running_pid >/dev/null || fail "clamd exited during start"
      sleep 0.5
    done
    fail "clamd does not answer PING on $sock after 30 s" ;;
  status)
    if answers; then echo "clamd[$instance]: running ($sock)"; else echo "clamd[$instance]: not running"; exit 3; fi ;;
  stop)
    if pid="$(running_pid)"; then
      kill "$pid"
      for _ in $(seq 40); do [ -d /proc/"$pid" ] || break; sleep 0.25; done
      [ -d /proc/"$pid" ] && { log "pid $pid ignored SIGTERM, killing"; kill -9 "$pid"; }
      log "stopped pid $pid"
    else
      log "not running"
    fi
    rm -f "$pidfile" "$sock" ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
