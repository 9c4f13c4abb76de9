"""`make bench`: the harness's own overhead. Token throughput as the harness reports it (streamer
timestamps, token checks, memory probe) against a bare `model.generate` loop on the same model and
prompts, interleaved A/B (order alternating each round), several rounds. A benchmark, not a test."""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from . import models
from .config import default_data_dir, load_group, resolve_device, split_lengths
from .measure import generation_config, now, run_timed
from .workload import build_prompts


def bare_throughput(model, prompts, out_len: int, reps: int, device: str) -> float:
    """Median T_P of plain generate calls: the same greedy settings, no streamer, no checks."""
    batch, in_len = prompts.shape
    latencies = []
    for _ in range(reps):
        start = now(device)
        with torch.inference_mode():
            model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=out_len,
                           min_new_tokens=out_len, do_sample=False, num_beams=1,
                           pad_token_id=model.generation_config.eos_token_id)
        latencies.append(now(device) - start)
    return batch * (in_len + out_len) / statistics.median(latencies)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--quant", default="fp32")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    device = resolve_device(a.device)
    mcfg, qcfg, wl = load_group("model", a.model), load_group("quant", a.quant), load_group("workload", "wikitext2")
    loaded, _ = models.load(mcfg, qcfg, device, Path("models"), 0)
    in_len, out_len = split_lengths(a.seq_len, 0.5)
    prompts, _ = build_prompts(loaded.tokenizer, Path(default_data_dir()), wl, a.batch_size, in_len)
    prompts = prompts.to(device)
    run_timed(loaded.model, loaded.tokenizer, prompts, out_len, warmup=1, min_reps=1, min_seconds=0,
              max_reps=1, device=device)  # warm both paths once
    ratios = []
    print(f"{a.model}/{a.quant} bs{a.batch_size} sl{a.seq_len} on {device}: {a.rounds} rounds x {a.reps} reps")
    for r in range(a.rounds):
        def harness():
            return run_timed(loaded.model, loaded.tokenizer, prompts, out_len, warmup=0, min_reps=a.reps,
                             min_seconds=0, max_reps=a.reps, device=device)["metrics"]["token_throughput_tps"]["median"]
        def bare():
            return bare_throughput(loaded.model, prompts, out_len, a.reps, device)
        if r % 2 == 0:
            h, b = harness(), bare()
        else:
            b, h = bare(), harness()
        ratios.append(h / b)
        print(f"round {r}: harness {h:.2f} tok/s  bare {b:.2f} tok/s  ratio {h / b:.4f}", flush=True)
    print(f"harness/bare throughput ratio: median {statistics.median(ratios):.4f}, "
          f"mean {statistics.fmean(ratios):.4f} ± {statistics.stdev(ratios):.4f} (std), "
          f"min {min(ratios):.4f}, max {max(ratios):.4f}, n={len(ratios)}  [{time.strftime('%Y-%m-%d %H:%M')}]")


if __name__ == "__main__":
    main()
