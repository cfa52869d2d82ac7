#!/usr/bin/env bash
# Installs everything snapfim and its tests need on a Debian machine (idempotent), then
# makes sure PostgreSQL and Redis are running. Used by `make setup` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(e2fsprogs gdisk fdisk dosfstools mtools ntfs-3g exfatprogs attr acl libcap2-bin aide xfsprogs
              time python3-hivex libhivex-bin redis-server
              chromium  # chromium: the dashboard's browser tests (Playwright drives it; no download)
              rpm dpkg db5.3-util)  # rpm, rpmbuild, dpkg-deb, db5.3_load: change tracking's real package databases
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Exactly the tested set: deploy/constraints.txt pins every dependency (scripts/lock.py).
python3 -m pip install -q --disable-pip-version-check -e ".[test]" -c deploy/constraints.txt 2>&1 | grep -v "Running pip as the 'root' user" || true

# Azurite (the Azure Storage emulator of tests/azure), pinned by tests/azure/node/package-lock.json.
if ! [ -x tests/azure/node/node_modules/.bin/azurite-blob ]; then
  if ! command -v npm >/dev/null; then
    echo "setup: installing nodejs and npm"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "setup: installing Azurite (npm ci in tests/azure/node)"
  (cd tests/azure/node && npm ci --no-audit --no-fund --loglevel=error)
fi

# Services for the storage and worker tests (PostgreSQL and Redis run locally on this machine kind).
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "setup: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if command -v redis-server >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "setup: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
