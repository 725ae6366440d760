#!/usr/bin/env bash
# Installs what building and testing walship needs on Debian 12 (only what is missing).
set -euo pipefail
pkgs="cmake g++ make pkg-config curl sqlite3 libsqlite3-dev libcurl4-openssl-dev libssl-dev libzstd-dev catch2 python3 $*"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
