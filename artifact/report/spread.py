"""How a sweep over several GPUs spent its time (issue 13), from the records' own clocks. A cell of back-to-back
repetitions is one visit: its start (`date`), its length (`cell_s`, its model load `load_s` included) and the GPU that
ran it. A cell of the rounds design is visited once per round, each visit in its own load group's process and maybe
on another GPU: each visit is counted where and when it ran (rounds.csv's `started_at`, `seconds`, `gpu_uuid`), and
the model loads and canary probes of its load group fall into that GPU's gaps.

A run is a stretch of cells with no pause longer than RUN_GAP_S in which no cell ran on any GPU; only runs in
which cells on two GPUs ran at once are reported (one lent machine after another is not a run over two GPUs).
Per run: span (first start to last end), the cells' summed time, speed-up = summed time / span, efficiency =
speed-up / GPUs. One GPU running the same cells one after another would need at least the summed time (it also
pays process starts, which are not in `cell_s`). What a GPU did not spend on cells in the span is split into lead
(before its first cell: the sweep starting it), gaps (between its cells: worker starts, imports, waiting for a
job) and tail (after its last cell: waiting for the other GPUs, the load skew)."""
from __future__ import annotations

from datetime import datetime, timezone
from itertools import combinations

RUN_GAP_S = 120.0


def _gpu(r: dict) -> str | None:
    """The GPU a cell ran on: its NVML UUID, or for an unmetered cell recorded before records named their GPU
    whatever the meter (a fit test) its CUDA_VISIBLE_DEVICES."""
    if r.get("gpu_uuid"):
        return r["gpu_uuid"]
    return f"CUDA_VISIBLE_DEVICES={r['cuda_visible_devices']}" if r.get("cuda_visible_devices") else None


def _visit(gpu: str, start: float, seconds: float, load: float, date: str) -> dict:
    return {"gpu": gpu, "start": start, "end": start + seconds, "busy": seconds, "load": load, "date": date}


def _cells(rows: list[dict], round_rows: list[dict] = ()) -> list[dict]:
    """The visits of measured cells that name a GPU, with start and end in epoch seconds, by start: one per
    back-to-back cell, one per round of a rounds-design cell (its visit's own GPU, else the cell's)."""
    rounds: dict[str, list[dict]] = {}
    for v in round_rows:
        if v.get("seconds") is not None:  # every visit has a start; its length is in rounds.csv since 2026-12-08
            rounds.setdefault(v["record"], []).append(v)
    out = []
    for r in rows:
        gpu = _gpu(r)
        if r.get("implied_by") or r.get("same_record_as"):
            continue
        if rounds.get(r.get("record")):
            out += [_visit(v.get("gpu_uuid") or gpu, v["started_at"], v["seconds"], 0.0,
                           datetime.fromtimestamp(v["started_at"], timezone.utc).isoformat())
                    for v in rounds[r["record"]] if v.get("gpu_uuid") or gpu]
        elif gpu and r.get("date") and r.get("cell_s"):
            when = datetime.fromisoformat(r["date"])
            start = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
            out.append(_visit(gpu, start, r["cell_s"], r.get("load_s") or 0.0, r["date"]))
    return sorted(out, key=lambda c: c["start"])


def runs(rows: list[dict], round_rows: list[dict] = ()) -> list[list[dict]]:
    """The visits split into runs at pauses longer than RUN_GAP_S with no cell running; only runs where visits on
    two GPUs overlapped in time."""
    groups: list[list[dict]] = []
    end = None
    for c in _cells(rows, round_rows):
        if end is None or c["start"] - end > RUN_GAP_S:
            groups.append([])
        groups[-1].append(c)
        end = c["end"] if end is None else max(end, c["end"])
    return [g for g in groups if any(a["gpu"] != b["gpu"] and a["start"] < b["end"] and b["start"] < a["end"]
                                     for a, b in combinations(g, 2))]


def summary(run: list[dict]) -> dict:
    """Span, summed cell time, speed-up, efficiency and the per-GPU split of the span (see the module doc)."""
    t0, t1 = min(c["start"] for c in run), max(c["end"] for c in run)
    span = t1 - t0
    gpus = {}
    for gpu in sorted({c["gpu"] for c in run}):
        cs = [c for c in run if c["gpu"] == gpu]
        busy = sum(c["busy"] for c in cs)
        lead, tail = min(c["start"] for c in cs) - t0, t1 - max(c["end"] for c in cs)
        gpus[gpu] = {"cells": len(cs), "busy": busy, "load": sum(c["load"] for c in cs), "lead": lead,
                     "gaps": span - busy - lead - tail, "tail": tail}
    busy = sum(g["busy"] for g in gpus.values())
    speedup = busy / span if span > 0 else None
    return {"start": run[0]["date"], "span": span, "cells": len(run), "busy": busy, "gpus": gpus,
            "speedup": speedup, "efficiency": speedup / len(gpus) if speedup else None}


def lines(rows: list[dict], round_rows: list[dict] = ()) -> list[str]:
    """Markdown: one table per run over several GPUs; empty where no run used more than one GPU."""
    out = []
    for run in runs(rows, round_rows):
        s = summary(run)
        out += ["", f"## Spread over {len(s['gpus'])} GPUs: the run from {s['start'][:16]}", "",
                f"{s['cells']} cell visits in {s['span']:.0f} s of span; {s['busy']:.0f} s of visits, so speed-up "
                f"{s['speedup']:.2f} and efficiency {s['efficiency']:.0%} (one GPU needs at least the visits' time).",
                "", "| GPU | cell visits | visits (s) | of which model loads (s) | lead (s) | gaps (s) | tail (s) |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {gpu} | {g['cells']} | {g['busy']:.0f} | {g['load']:.0f} | {g['lead']:.0f} | {g['gaps']:.0f} | "
                f"{g['tail']:.0f} |" for gpu, g in s["gpus"].items()]
    return out
