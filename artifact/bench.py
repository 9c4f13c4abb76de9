"""`make bench`: the harness's own overhead, interleaved A/B over several rounds (order alternating each round).

--compare bare (default): each round runs, each in a fresh process, (a) the cell through the harness
(`python -m artifact.run`, no power meter, no MLflow, records in a temporary folder) and (b) a bare loop of
plain `model.generate` calls on the same model, shape and prompts; it compares their median latencies.
--compare sampler: in one process, the harness with the power sampler running (--meter) against without it.
A benchmark, not a test."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .cell.measure import now, run_timed
from .core.config import compose, load_group, resolve
from .models import loading
from .power import NoMeter, Sampler
from .power.choose import make_meter
from .workload.prompts import build_prompts


def cell_overrides(a) -> list[str]:
    return [f"model={a.model}", f"quant={a.quant}", f"model.weights={a.weights}", "ppl=off", "workload=wikitext2",
            f"device={a.device}", f"batch_size={a.batch_size}", f"seq_len={a.seq_len}", "out_fraction=0.5",
            f"models_dir={Path(a.models_dir).resolve()}"]


def bare_loop(a) -> dict:
    """In this (fresh) process: the cell's model and prompts, one warm-up, then `reps` plain generate calls (the
    same greedy settings, no streamer, no checks, no memory probe). Median latency in seconds."""
    cell = resolve(compose(cell_overrides(a)))
    loaded = loading.load(cell)
    prompts, _ = build_prompts(loaded.tokenizer, cell.data_dir, cell.workload, cell.batch_size, cell.in_len)
    prompts = prompts.to(cell.device)
    latencies = []
    for i in range(a.reps + 1):
        start = now(cell.device)
        with torch.inference_mode():
            loaded.model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts),
                                  max_new_tokens=cell.out_len, min_new_tokens=cell.out_len, do_sample=False,
                                  num_beams=1, pad_token_id=loaded.model.generation_config.eos_token_id)
        if i:  # the first is the warm-up, as the harness's warmup=1
            latencies.append(now(cell.device) - start)
    return {"latency_s": statistics.median(latencies), "n": len(latencies)}


def harness_cell(a, folder: Path) -> dict:
    """A fresh `python -m artifact.run` of the cell; its median latency from the record."""
    cmd = [sys.executable, "-m", "artifact.run", *cell_overrides(a), "warmup=1", f"min_reps={a.reps}",
           f"max_reps={a.reps}", "min_seconds=0", "meter=none", "force=true", "tracking.enabled=false",
           "study=bench", f"traces_dir={folder}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    [record] = (folder / "bench").glob("*/result.json")
    result = json.loads(record.read_text())
    return {"latency_s": result["metrics"]["latency_s"]["median"], "n": result["metrics"]["latency_s"]["n"]}


def fresh_bare(a) -> dict:
    cmd = [sys.executable, "-m", "artifact.bench", "--bare-process", *sys.argv[1:]]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare_bare(a) -> list[float]:
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for r in range(a.rounds):
            order = ("harness", "bare") if r % 2 == 0 else ("bare", "harness")
            got = {}
            for which in order:
                got[which] = harness_cell(a, Path(tmp) / f"r{r}") if which == "harness" else fresh_bare(a)
            ratios.append(got["harness"]["latency_s"] / got["bare"]["latency_s"])
            print(f"round {r} ({' then '.join(order)}): harness {got['harness']['latency_s']:.4f} s, bare "
                  f"{got['bare']['latency_s']:.4f} s (medians of {a.reps}); latency ratio {ratios[-1]:.4f}", flush=True)
    return ratios


def compare_sampler(a) -> list[float]:
    cell = resolve(compose(cell_overrides(a)))
    loaded = loading.load(cell)
    prompts, _ = build_prompts(loaded.tokenizer, cell.data_dir, cell.workload, cell.batch_size, cell.in_len)
    meter = make_meter(load_group("meter", a.meter), cell.device)
    if isinstance(meter, NoMeter):
        raise SystemExit(f"error: --compare sampler needs a sensor; {meter.reason}")

    def harness(sample: bool) -> float:
        sampler = Sampler(meter, 10.0).start() if sample else None
        try:
            run = run_timed(loaded.model, loaded.tokenizer, prompts, cell.out_len, warmup=0, min_reps=a.reps,
                            min_seconds=0, max_reps=a.reps, device=cell.device,
                            on_phase=sampler.mark if sampler else None)
            return run.timing["metrics"]["latency_s"]["median"]
        finally:
            if sampler:
                sampler.stop()

    harness(False)  # warm once
    ratios = []
    for r in range(a.rounds):
        on, off = (harness(True), harness(False)) if r % 2 == 0 else reversed((harness(False), harness(True)))
        ratios.append(on / off)
        print(f"round {r}: sampler on {on:.4f} s, off {off:.4f} s; latency ratio {ratios[-1]:.4f}", flush=True)
    meter.close()
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quant", default="fp32")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--weights", default="real", choices=["real", "synthetic"])
    ap.add_argument("--compare", default="bare", choices=["bare", "sampler"])
    ap.add_argument("--meter", default="auto")
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("--bare-process", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.bare_process:
        print(json.dumps(bare_loop(a)), flush=True)
        return
    label = "harness/bare (fresh processes)" if a.compare == "bare" else f"sampler on/off ({a.meter})"
    print(f"{a.model}/{a.quant} ({a.weights}) bs{a.batch_size} sl{a.seq_len}: {label}, "
          f"{a.rounds} rounds x {a.reps} reps", flush=True)
    ratios = compare_bare(a) if a.compare == "bare" else compare_sampler(a)
    spread = statistics.stdev(ratios) if len(ratios) > 1 else float("nan")
    print(f"{label} latency ratio: median {statistics.median(ratios):.4f}, mean {statistics.fmean(ratios):.4f} "
          f"± {spread:.4f} (std), min {min(ratios):.4f}, max {max(ratios):.4f}, n={len(ratios)}  "
          f"[{time.strftime('%Y-%m-%d %H:%M')}]")


if __name__ == "__main__":
    main()
