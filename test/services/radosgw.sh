#!/usr/bin/env bash
# Throwaway single-node Ceph (1 mon, 1 memstore osd, radosgw) on loopback, giving the
# tests a real S3 endpoint. All state lives in $SERVICES_DIR/ceph and in RAM.
#   radosgw.sh start   idempotent; waits until S3 answers (exit 1 + log tails on failure)
#   radosgw.sh stop    radosgw -> osd -> mon, then deletes the state
#   radosgw.sh status  exit 0 if S3 answers and the user exists, 3 otherwise
# Env: SERVICES_DIR (default <repo>/.services), RADOSGW_START_TIMEOUT (s, default 120),
#      RADOSGW_PORT / RADOSGW_MON_PORT (default 17480 / 17489).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SERVICES_DIR="${SERVICES_DIR:-$REPO/.services}"
DIR="$SERVICES_DIR/ceph"
# Ports are overridable only to run a second, isolated instance (e.g. trying .ci/run in
# a scratch clone next to a developer's running services); tests expect the defaults.
S3_PORT="${RADOSGW_PORT:-17480}"
MON_ADDR="127.0.0.1:${RADOSGW_MON_PORT:-17489}"  # not 3300/6789: no clash with a system ceph
ENDPOINT="http://127.0.0.1:$S3_PORT"
START_TIMEOUT="${RADOSGW_START_TIMEOUT:-120}"
export CEPH_CONF="$DIR/ceph.conf"

log() { echo "radosgw.sh: $*" >&2; }

answers() { curl -s -o /dev/null --max-time 2 "$ENDPOINT/"; }
ready() { [ -f "$DIR/ready" ] && answers; }

# A dead daemon can linger as a zombie (this VM's pid 1 reaps lazily): kill -0 would
# call that alive, so look at the process state.
pid_alive() { local st; st="$(ps -o stat= -p "$1" 2>/dev/null)" && [ -n "$st" ] && [[ $st != Z* ]]; }
alive() { [ -f "$DIR/run/$1.pid" ] && pid_alive "$(cat "$DIR/run/$1.pid")"; }

stop_daemon() {   # stop_daemon <name>: SIGTERM, wait up to 5 s, then SIGKILL (state is discarded anyway)
  local pidf="$DIR/run/$1.pid" pid i
  [ -f "$pidf" ] || return 0
  pid="$(cat "$pidf")"
  pid_alive "$pid" && kill "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do pid_alive "$pid" || return 0; sleep 0.1; done
  log "$1 ($pid) ignored SIGTERM, killing"
  kill -9 "$pid" 2>/dev/null || true
}

do_stop() {
  # rgw first (it holds watches on the osd), the mon last (the others talk to it).
  stop_daemon client.rgw.tus
  stop_daemon osd.0
  stop_daemon mon.a
  rm -rf "$DIR"
}

fail() {
  log "FAILED: $*"
  for f in "$DIR"/log/*; do
    [ -f "$f" ] || continue
    echo "----- tail $f" >&2; tail -n 30 "$f" >&2
  done
  exit 1
}

wait_for() {  # wait_for <seconds> <description> <command...>
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${limit}s waiting for $what"
    sleep 0.2
  done
}

do_start() {
  if [ -f "$DIR/ready" ] && alive client.rgw.tus && alive osd.0 && alive mon.a; then
    # Ours and running: on a busy 2-core box give it time to answer rather than wiping
    # a cluster other test runs are using.
    local deadline=$((SECONDS + 10))
    while [ $SECONDS -lt $deadline ]; do
      answers && { log "already running at $ENDPOINT"; return 0; }
      sleep 1
    done
  fi
  if ! alive client.rgw.tus && answers; then
    log "FAILED: $ENDPOINT answers but is not ours: another SERVICES_DIR?"
    exit 1
  fi
  # Half-started leftovers (crash, reboot, killed run): throw them away and start clean.
  do_stop
  mkdir -p "$DIR"/{run,log,mon,osd,rgw}
  local t0=$SECONDS fsid osd_uuid
  fsid="$(uuidgen)"; osd_uuid="$(uuidgen)"

  cat > "$CEPH_CONF" <<EOF
[global]
fsid = $fsid
mon_host = [v2:$MON_ADDR]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
ms_bind_msgr1 = false
run_dir = $DIR/run
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
keyring = $DIR/keyring
# No cephx: nothing here is secret, and it saves key plumbing.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# Without this radosgw loops on "get_initial_auth_request returned -13" under auth none.
ms_mon_client_mode = crc
# One OSD: single replica, few PGs (rgw makes ~7 pools; default 32 PGs each exceeds
# mon_max_pg_per_osd and pool creation fails).
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_max_pg_per_osd = 1000
osd_pool_default_pg_autoscale_mode = off
# Paxos defaults make every map change wait ~1 s; start-up goes from ~13 s to ~2.5 s.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
mon_data = $DIR/mon/\$cluster-\$id
osd_data = $DIR/osd/\$cluster-\$id
# Data lives in RAM. When the device is full, writes hang (no error), so keep it large.
osd_objectstore = memstore
memstore_device_bytes = 8589934592
osd_crush_chooseleaf_type = 0
mon_warn_on_pool_no_redundancy = false
rgw_data = $DIR/rgw
rgw_frontends = beast endpoint=127.0.0.1:$S3_PORT
rgw_user_max_buckets = 100000
# Deleted objects stay in the RAM store until garbage collection (by default ~2 h later):
# repeated bench runs filled it (HEALTH_ERR, every write hung). Collect them within a minute.
rgw_gc_obj_min_wait = 10
rgw_gc_processor_period = 30
EOF
  : > "$DIR/keyring"

  monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:$MON_ADDR]" "$DIR/monmap" >/dev/null
  ceph-mon --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mkfs-mon.out" 2>&1 || fail "ceph-mon --mkfs"
  ceph-mon -i a 9>&- 2>>"$DIR/log/daemons.err" || fail "ceph-mon did not start"
  wait_for 30 "ceph-mon" timeout 5 ceph mon stat

  local id
  id="$(timeout 20 ceph osd new "$osd_uuid")" || fail "ceph osd new"
  mkdir -p "$DIR/osd/ceph-$id"
  ceph-osd -i "$id" --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/mkfs-osd.out" 2>&1 || fail "ceph-osd --mkfs"
  ceph-osd -i "$id" 9>&- 2>>"$DIR/log/daemons.err" || fail "ceph-osd did not start"
  wait_for 30 "osd.$id up" sh -c "timeout 5 ceph osd dump | grep -q '^osd.$id up'"

  radosgw -n client.rgw.tus 9>&- 2>>"$DIR/log/daemons.err" || fail "radosgw did not start"
  wait_for "$START_TIMEOUT" "S3 on $ENDPOINT" answers

  timeout 30 radosgw-admin user create --uid tus --display-name tus \
    --access-key tusaccess --secret-key tussecret --max-buckets 100000 \
    >"$DIR/log/user-create.out" 2>&1 || fail "radosgw-admin user create"
  touch "$DIR/ready"
  log "up at $ENDPOINT in $((SECONDS - t0))s"
}

cmd="${1:-}"
case "$cmd" in
  start|stop)
    # Serialise concurrent callers (CI script and vitest globalSetup may race). The
    # daemons are started with fd 9 closed, or they would hold this lock forever.
    mkdir -p "$SERVICES_DIR"
    exec 9>"$SERVICES_DIR/radosgw.lock"
    flock -w 180 9 || { log "FAILED: another radosgw.sh holds $SERVICES_DIR/radosgw.lock for 180 s"; exit 1; }
    if [ "$cmd" = start ]; then do_start; else do_stop; log "stopped"; fi ;;
  status)
    if ready; then echo "radosgw: running at $ENDPOINT"; else echo "radosgw: not running"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
