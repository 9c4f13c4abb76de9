#!/usr/bin/env bash
# What the scale tests need from the system (tests/test_scaleout.py): PostgreSQL and headless Chromium,
# Debian's packages, installed here where missing. Every server is started and stopped by the tests, on 127.0.0.1.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "tests/services.sh: ${need[*]} missing and not installable here (needs root and apt-get); those tests skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
  echo "tests/services.sh: could not install ${need[*]} with apt-get; the tests that need them skip" >&2
  exit 0
fi
# Debian starts the packaged cluster on install where it can; the tests use their own
(command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | while read -r v c _; do pg_ctlcluster "$v" "$c" stop || true; done) || true
