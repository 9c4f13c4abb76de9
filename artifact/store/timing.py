"""Where the time goes: a sweep's (or `make reproduce`'s) wall time split into the timed windows, warm-ups,
model loads, checkpoint builds, perplexity, idle-power windows, the rest of the cells, and the overhead of
processes and DVC, from the records the run wrote and the walls its sweeps logged (`python -m artifact.timing`).
Each sweep appends {started, wall_s, cells_s} to traces/.sweeps.jsonl when it ends."""
from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

PARTS = [("timed", "timed windows"), ("warmup", "warm-ups"), ("canary", "drift canaries (rounds design)"),
         ("load", "model loads"),
         ("build", "checkpoint builds"), ("perplexity", "perplexity"), ("idle", "idle-power windows"),
         ("cells_other", "rest of the cells (prompts, memory probe, record)"),
         ("process", "process overhead (start, imports, preflight)"), ("dvc", "DVC and report overhead")]
SWEEP_LOG = ".sweeps.jsonl"


def cell_parts(result: dict) -> dict[str, float]:
    """The seconds of one record's cell, by part (what an earlier cell of the process did is not counted)."""
    model, ppl = result.get("model") or {}, result.get("perplexity") or {}
    idle = (result.get("power") or {}).get("idle") or {}
    parts = {"timed": result.get("timed_seconds") or 0.0, "warmup": sum(result.get("warmup_latency_s") or []),
             "canary": result.get("canary_seconds") or 0.0,
             "load": 0.0 if model.get("reused_from_previous_cell") else model.get("load_seconds") or 0.0,
             "build": 0.0 if model.get("reused_from_previous_cell") else model.get("prepare_seconds") or 0.0,
             "perplexity": (ppl.get("seconds") or 0.0) if ppl.get("computed_in", "this cell") == "this cell" else 0.0,
             "idle": (idle.get("seconds") or 0.0) if idle.get("measured_in") == "this cell" else 0.0}
    parts["cells_other"] = max(0.0, (result.get("cell_seconds") or 0.0) - sum(parts.values()))
    return parts


def summarize(results: list[dict], wall_s: float, process_s: float | None = None) -> dict:
    """Seconds by part; `process` is the wall of the processes less their cells (default: all of the rest of
    wall_s), `dvc` what wall_s holds beyond the processes (make reproduce)."""
    total = {name: 0.0 for name, _ in PARTS}
    for result in results:
        for name, seconds in cell_parts(result).items():
            total[name] += seconds
    cells = sum(result.get("cell_seconds") or 0.0 for result in results)
    total["process"] = max(0.0, wall_s - cells) if process_s is None else process_s
    total["dvc"] = max(0.0, wall_s - cells - total["process"])
    return {"wall_s": wall_s, "cells": len(results), "parts": total}


def render(summary: dict) -> str:
    """A line, then a small table."""
    parts, wall = summary["parts"], summary["wall_s"]
    generation = parts["timed"] + parts["warmup"]
    ratio = f"{wall / generation:.2f}x" if generation else "n/a"
    lines = [f"time: {wall:.1f} s wall for {summary['cells']} measured cells; generation (timed + warm-up) "
             f"{generation:.1f} s; wall / generation {ratio}", f"  {'part':<52}{'seconds':>9}{'share':>7}"]
    for name, label in PARTS:
        lines.append(f"  {label:<52}{parts[name]:>9.1f}{parts[name] / wall if wall else 0:>7.0%}")
    return "\n".join(lines)


def log_sweep(traces_dir: Path, started: float, wall_s: float, results: list[dict]) -> None:
    """Append this sweep's wall and its cells' seconds to traces/.sweeps.jsonl (make reproduce reads it)."""
    traces_dir.mkdir(parents=True, exist_ok=True)
    line = {"started": started, "wall_s": round(wall_s, 3),
            "cells_s": round(sum(r.get("cell_seconds") or 0.0 for r in results), 3), "cells": len(results)}
    with open(traces_dir / SWEEP_LOG, "a") as f:
        f.write(json.dumps(line) + "\n")


def _started(result: dict) -> float:
    try:
        return datetime.strptime(result["started_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (KeyError, ValueError):
        return 0.0


def since(traces_dir: Path, start: float) -> dict:
    """The summary of everything measured under traces_dir since `start` (epoch seconds) until now."""
    results = []
    for path in traces_dir.glob("*/*/result.json"):
        result = json.loads(path.read_text())
        if _started(result) >= start - 1 and not result.get("implied_by"):
            results.append(result)
    sweeps = []
    log = traces_dir / SWEEP_LOG
    if log.is_file():
        sweeps = [s for s in map(json.loads, log.read_text().splitlines()) if s["started"] >= start - 1]
    process = sum(s["wall_s"] - s["cells_s"] for s in sweeps) if sweeps else None
    return summarize(results, time.time() - start, process)
