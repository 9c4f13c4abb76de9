"""The drift canary of the rounds design: two fixed probes on the loaded model, before the first round and after every
round, so a reader sees whether the host or the device changed speed while the cells were measured.

- host probe: a batch of one 8-token prompt generating 16 tokens, greedy (HF eager decode at batch 1 is bound by
  per-step host work);
- device probe: a square matrix product in the model's compute dtype (1024 on a CPU, 4096 on a GPU).
Each is repeated a fixed number of times, chosen once per load group so that a probe lasts about canary_seconds,
and then kept: every point of a group does the same work, and its time is the value. Points are appended to
traces/<study>/canary.jsonl with the group run they belong to."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

HOST_PROMPT_TOKENS, HOST_NEW_TOKENS = 8, 16
LOG = "canary.jsonl"
DRIFT_FLAG = 0.05  # a round whose canary moved more than this (relative) is flagged in the sweep and the report


class Canary:
    """The probes of one load group (the report reads canary.jsonl with the functions below, without torch)."""

    def __init__(self, model, tokenizer, device: str, dtype, seconds: float):
        import torch

        from .measure import generation_config
        self.model, self.device, self.seconds = model, device, seconds
        vocab = int(getattr(model.config, "vocab_size", 32000))
        self.prompt = (torch.arange(HOST_PROMPT_TOKENS, device=device) * 97 + 101).remainder(vocab).unsqueeze(0)
        self.gen_config = generation_config(model, tokenizer, HOST_NEW_TOKENS)
        size = 4096 if device.startswith("cuda") else 1024
        self.matrix = torch.randn(size, size, device=device, generator=None).to(dtype)
        self.host_reps = self._calibrate(self._host_once)
        self.device_reps = self._calibrate(self._device_once)

    def _host_once(self) -> None:
        from .measure import generate_once
        generate_once(self.model, self.prompt, HOST_NEW_TOKENS, self.gen_config, self.device)

    def _device_once(self) -> None:
        _ = self.matrix @ self.matrix  # the product is the work

    def _time(self, fn, n: int) -> float:
        import torch

        from .measure import now
        start = now(self.device)
        with torch.inference_mode():
            for _ in range(n):
                fn()
        return now(self.device) - start

    def _calibrate(self, fn) -> int:
        self._time(fn, 1)  # first call pays its one-off costs
        return max(1, round(self.seconds / max(self._time(fn, 1), 1e-6)))

    def probe(self) -> dict:
        """One canary point: {t_wall, host_s, device_s, host_reps, device_reps}."""
        t_wall = time.time()
        return {"t_wall": t_wall, "host_s": self._time(self._host_once, self.host_reps),
                "device_s": self._time(self._device_once, self.device_reps),
                "host_reps": self.host_reps, "device_reps": self.device_reps}


def append(traces_dir: Path, study: str, point: dict) -> None:
    """One canary point as a line of traces/<study>/canary.jsonl (appended, flushed)."""
    path = Path(traces_dir) / study / LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(point) + "\n")


def read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_run(points: list[dict]) -> dict[str, list[dict]]:
    """The points of each group run (their repetition counts are the run's own)."""
    runs: dict[str, list[dict]] = {}
    for p in points:
        runs.setdefault(p["group_run"], []).append(p)
    return runs


def moves(points: list[dict]) -> list[dict]:
    """Per round of each group run: how much each probe moved from the point before the round to the point after
    it (after / before - 1), and whether that is more than DRIFT_FLAG."""
    out = []
    for run, ps in by_run(points).items():
        ps = sorted(ps, key=lambda p: p["point"])
        for before, after in zip(ps, ps[1:]):
            host = after["host_s"] / before["host_s"] - 1
            device = after["device_s"] / before["device_s"] - 1
            out.append({"group_run": run, "round": int(after["point"]), "group": before.get("group", ""),
                        "host": host, "device": device, "flagged": max(abs(host), abs(device)) > DRIFT_FLAG})
    return out


def spread_line(points: list[dict]) -> str:
    """The canary over a sweep in one line: each probe's spread (max / min - 1 within a group run, the largest over
    runs) and the rounds where it moved more than DRIFT_FLAG."""
    if not points:
        return "canary: none (canary_seconds=0 or no rounds)"
    runs = by_run(points)

    def spread(key: str) -> float:
        return max(max(p[key] for p in ps) / min(p[key] for p in ps) - 1 for ps in runs.values())
    flagged = [m for m in moves(points) if m["flagged"]]
    where = ", ".join(f"{m['group']} round {m['round']} (host {m['host']:+.1%}, device {m['device']:+.1%})"
                      for m in flagged[:6]) + (" ..." if len(flagged) > 6 else "")
    groups: dict[str, list[dict]] = {}
    for p in points:  # the host probe generates with the group's model: its medians compare within a group only
        groups.setdefault(p.get("group", ""), []).append(p)
    medians = "; ".join(f"{g or 'all'} {statistics.median(per_rep(p, 'host') for p in ps):.3f} s, "
                        f"{statistics.median(per_rep(p, 'device') for p in ps) * 1e3:.3f} ms"
                        for g, ps in sorted(groups.items()))
    return (f"canary: {len(points)} points in {len(runs)} group run(s); host probe spread {spread('host_s'):.1%}, "
            f"device probe spread {spread('device_s'):.1%}; medians per load group (host s per generation, device "
            f"ms per product): {medians}; rounds that moved more than {DRIFT_FLAG:.0%}: {len(flagged)}"
            + (f": {where}" if flagged else ""))


def per_rep(point: dict, probe: str) -> float:
    """A point's time for one repetition of a probe ("host": one generation, "device": one product). The repetition
    count is calibrated per load group, so only this value compares across group runs (of one model: the host probe
    generates with the loaded model)."""
    return float(point[f"{probe}_s"]) / float(point[f"{probe}_reps"])


def per_run(points: list[dict]) -> dict[str, dict[str, float]]:
    """Per group run: the median over its points of each probe's time per repetition (per_rep)."""
    return {run: {probe: statistics.median(per_rep(p, probe) for p in ps) for probe in ("host", "device")}
            for run, ps in by_run(points).items()}
