#!/usr/bin/env bash
# Issue 21, items 6 and 7 on a CPU: the same cells (an experiment of a profile) measured in separate processes,
# N times in each design, each run in its own traces folder; prints each run's wall time, its C1-style claims
# verdicts and the cells' medians with their error bars (rounds: the interval over rounds; back-to-back: +- std).
# Usage (repo root, after make setup): scripts/rounds_vs_back_to_back.sh [EXPERIMENT] [PROFILE] [N] [OUT]
#   e.g. scripts/rounds_vs_back_to_back.sh seqlen_sweep smoke 2 /tmp/rvb
set -euo pipefail
exp=${1:-seqlen_sweep}; profile=${2:-smoke}; n=${3:-2}; out=${4:-/tmp/rounds-vs-back-to-back}
py=.venv/bin/python
rm -rf "$out" && mkdir -p "$out"
for design in back-to-back rounds; do
  for i in $(seq 1 "$n"); do
    run="$out/$design-$i"
    extra=(design=$design tracking.enabled=false)
    [ "$design" = back-to-back ] && extra+=(min_reps=3)   # the profile's repetitions before the rounds design
    start=$(date +%s.%N)
    $py -m artifact.reproduce --profile "$profile" --no-report --traces-dir "$run/traces" "$exp" -- "${extra[@]}" \
      > "$run.log" 2>&1
    end=$(date +%s.%N)
    $py -m artifact.report --profile "$profile" --traces-dir "$run/traces" --out "$run/paper" --no-mlflow > "$run.report" 2>&1
    printf '%s run %s: wall %.0f s\n' "$design" "$i" "$(echo "$end - $start" | bc)"
    $py - "$run/paper/$profile/results.csv" "$run/paper/$profile/claims.csv" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["study"] and r["status"] == "ok"]
for r in rows:
    lo, hi = r.get("throughput_low_tok_s"), r.get("throughput_high_tok_s")
    bar = f"[{float(lo):.2f}, {float(hi):.2f}]" if lo else f"+- {float(r['throughput_std_tok_s'] or 0):.2f}"
    print(f"  {r['model']}/{r['quant']}/{r['workload']} bs{r['batch_size']} sl{r['seq_len']}: "
          f"T_P {float(r['throughput_median_tok_s']):.2f} {bar} tok/s, cell {float(r['cell_s']):.1f} s")
for c in csv.DictReader(open(sys.argv[2])):
    if c["verdict"] != "NOT APPLICABLE":
        print(f"  {c['id']}: {c['verdict']}: {c['measured']}")
PY
  done
done
