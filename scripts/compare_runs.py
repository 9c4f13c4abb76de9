"""Two runs of the same cells (each in its own traces folder) side by side: per cell, each run's median latency and
interval (rounds: min-max over rounds; back-to-back: median +- std of its repetitions), whether the two intervals
overlap and whether each contains the other's median; then each run's drift canary (host and device probe spread).
Issue 21 item 7 and issue 22 item 2. Standard library only: it reads the records' result.json and config.yaml.
Usage (repo root): python scripts/compare_runs.py TRACES_A TRACES_B [--study batch_sweep] [--model phi2]"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def cells(traces: Path, study: str, model: str | None) -> dict[tuple, dict]:
    """{(model, quant, batch_size, seq_len, hardware): result} of the study's finished or partial ok records."""
    out = {}
    for path in sorted((traces / study).glob("*/result.json")):
        config = (path.parent / "config.yaml").read_text()
        result = json.loads(path.read_text())
        name = (result.get("model") or {}).get("name") or re.search(r"\n  name: (\S+)", config).group(1)
        if result.get("status") != "ok" or (model and name != model):
            continue
        key = (name, re.search(r"\n  name: (\S+)", config.split("quant:")[1]).group(1),
               int(re.search(r"batch_size: (\d+)", config).group(1)), int(re.search(r"seq_len: (\d+)", config).group(1)),
               result.get("hardware"))
        out[key] = result
    return out


def bar(result: dict) -> tuple[float, float, float, str]:
    """(median, low, high, what) of the latency."""
    m = result["metrics"]["latency_s"]
    if m.get("interval"):
        i = m["interval"]
        return m["median"], i["low"], i["high"], f"min-max of {i['n']} rounds ({i['coverage']:.0%})"
    std = m.get("std") or 0.0
    return m["median"], m["median"] - std, m["median"] + std, f"+- std of {m['n']} back-to-back reps"


def canary(traces: Path, study: str) -> str:
    path = traces / study / "canary.jsonl"
    if not path.is_file():
        return "no canary (back-to-back design)"
    points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    host = [p["host_s"] for p in points]
    device = [p["device_s"] for p in points]
    return (f"{len(points)} points; host probe {min(host):.3f}-{max(host):.3f} s (spread {max(host) / min(host) - 1:.0%}), "
            f"device probe {min(device):.3f}-{max(device):.3f} s (spread {max(device) / min(device) - 1:.0%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--study", default="batch_sweep")
    ap.add_argument("--model")
    args = ap.parse_args()
    a, b = cells(args.a, args.study, args.model), cells(args.b, args.study, args.model)
    print(f"| cell | A: median [interval] s | B: median [interval] s | overlap | each holds the other's median |")
    print("|---|---|---|---|---|")
    agree = 0
    common = [k for k in a if k in b]
    for key in common:
        (ma, la, ha, wa), (mb, lb, hb, wb) = bar(a[key]), bar(b[key])
        overlap = la <= hb and lb <= ha
        holds = la <= mb <= ha and lb <= ma <= hb
        agree += holds
        print(f"| {key[0]}/{key[1]} bs{key[2]} sl{key[3]} | {ma:.2f} [{la:.2f}, {ha:.2f}] ({wa}) | "
              f"{mb:.2f} [{lb:.2f}, {hb:.2f}] ({wb}) | {'yes' if overlap else 'NO'} | {'yes' if holds else 'no'} |")
    print(f"\n{len(common)} cells in both runs; intervals overlap in "
          f"{sum(bar(a[k])[1] <= bar(b[k])[2] and bar(b[k])[1] <= bar(a[k])[2] for k in common)}, each interval holds "
          f"the other's median in {agree}.")
    print(f"A canary: {canary(args.a, args.study)}\nB canary: {canary(args.b, args.study)}")


if __name__ == "__main__":
    main()
