#!/usr/bin/env bash
# Installs the system packages the test suite runs against (real clamd, Ceph radosgw,
# ffmpeg, heif-convert, chromium, psql), and the FastAPI peer `npm run bench` measures uploads
# against (test/bench/seedFastapi.py). Idempotent: skips apt entirely when everything is
# present, so CI re-runs and local runs stay fast.
set -euo pipefail

PKGS=(clamav clamav-daemon ceph-mon ceph-osd radosgw ffmpeg libheif-examples chromium postgresql-client curl ca-certificates python3-tuspy
  python3-fastapi python3-uvicorn python3-aiofiles python3-uvloop python3-httptools)

missing=()
for p in "${PKGS[@]}"; do
  # dpkg -s succeeds for removed-but-configured packages too, so check the status line.
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install.sh: all packages present (${PKGS[*]})"
  exit 0
fi

echo "install.sh: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for the dpkg lock instead of failing if another apt run is in progress.
APT=(apt-get -q -o DPkg::Lock::Timeout=900)
"${APT[@]}" update
"${APT[@]}" install -y --no-install-recommends "${missing[@]}"

# The Debian packages start daemons via systemd/init where available; we run our own
# instances with private configs, so make sure the packaged ones are not running.
# (freshclam would try to download signatures; we ship our own database.)
for svc in clamav-freshclam clamav-daemon; do
  if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
    systemctl disable "$svc" 2>/dev/null || true
  fi
done
echo "install.sh: done"
