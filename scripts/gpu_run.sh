#!/usr/bin/env bash
# The gpu profile (or part of it) on a lent CUDA machine with no network: the packages its image lacks from
# .devcarry/site.tar.xz, the stand-in tokenizer and WikiText-2 from .devcarry/bundle.tar.xz (both built here by
# scripts/device_carry.sh; see scripts/README.md), records resumed from .devcarry/traces.tgz (where present)
# and the shipped paper/*/records.tar.xz and returned as $OUT/traces.tgz, with any traces-*/ folder a command made
# (a second run or another design kept apart with --traces-dir traces-NAME).
# Usage (repo root): scripts/gpu_run.sh SECONDS COMMAND...
set -uo pipefail
budget=$1; shift
rm -rf /tmp/site && mkdir -p /tmp/site && tar xJf .devcarry/site.tar.xz -C /tmp/site || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 ARTIFACT_DATA_DIR=$PWD/data RAY_USAGE_STATS_ENABLED=0
tar xJf .devcarry/bundle.tar.xz
# the records to resume from. A warm machine's traces/ (left by this session's previous call) is newer than
# .devcarry/traces.tgz and stays as it is; on a fresh machine that archive is unpacked first. Then every shipped
# record that traces/ lacks is added (artifact.report.archive.restore: never over a record that is there).
if [ -d traces ]; then
  echo "traces/ kept as the previous call on this machine left it"
elif [ -f .devcarry/traces.tgz ]; then
  tar xzf .devcarry/traces.tgz
fi
python3 -c "from pathlib import Path; from artifact.report.archive import restore
print(restore(Path('paper'), Path('traces')), 'shipped records added to traces/ (those it lacked)')" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,power.limit --format=csv,noheader
df -h . | tail -1
start=$(date +%s)
timeout "$budget" bash -c "$*" 2>&1 | tee "$OUT/log.txt"
echo "wall $(( $(date +%s) - start )) s"
# a cell lock left by a process that died (killed at the limit, or a cell that ended its process) becomes a death
# note: the next machine has another host name and would respect the lock forever
for dir in traces traces-*/; do
  [ -d "$dir" ] && python3 -c "import sys; from artifact.store.record import settle_dead_locks as s; print(s(sys.argv[1]), 'dead cell locks settled in', sys.argv[1])" "$dir"
done
tar czf "$OUT/traces.tgz" traces traces-* 2>/dev/null   # traces-*: runs kept apart (a second run, another design)
ls -la "$OUT"
