"""`make bench`: the harness's own overhead, interleaved A/B (order alternating each round), several rounds.

--compare bare (default): token throughput as the harness reports it (streamer timestamps, token
checks, memory probe) against a bare `model.generate` loop on the same model and prompts.
--compare sampler: the harness with the power sampler running (--meter) against without it.
A benchmark, not a test."""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from . import models
from .config import compose, load_group, resolve
from .measure import now, run_timed
from .power import NoMeter, Sampler, make_meter
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
    ap.add_argument("--weights", default="real", choices=["real", "synthetic"])
    ap.add_argument("--compare", default="bare", choices=["bare", "sampler"])
    ap.add_argument("--meter", default="auto")
    ap.add_argument("--models-dir", default="models")
    a = ap.parse_args()
    cell = resolve(compose([f"model={a.model}", f"quant={a.quant}", f"model.weights={a.weights}", "ppl=off",
                            "workload=wikitext2", f"device={a.device}", f"batch_size={a.batch_size}",
                            f"seq_len={a.seq_len}", "out_fraction=0.5", f"models_dir={a.models_dir}"]))
    device, out_len = cell.device, cell.out_len
    loaded = models.load(cell)
    prompts, _ = build_prompts(loaded.tokenizer, cell.data_dir, cell.workload, cell.batch_size, cell.in_len)
    prompts = prompts.to(device)
    run_timed(loaded.model, loaded.tokenizer, prompts, out_len, warmup=1, min_reps=1, min_seconds=0,
              max_reps=1, device=device)  # warm both paths once
    meter = make_meter(load_group("meter", a.meter), device) if a.compare == "sampler" else None
    if isinstance(meter, NoMeter):
        raise SystemExit(f"error: --compare sampler needs a sensor; {meter.reason}")

    def harness(sample: bool = False) -> float:
        sampler = Sampler(meter, 10.0).start() if sample else None
        try:
            run = run_timed(loaded.model, loaded.tokenizer, prompts, out_len, warmup=0, min_reps=a.reps,
                            min_seconds=0, max_reps=a.reps, device=device,
                            on_phase=sampler.mark if sampler else None)
            return run.timing["metrics"]["token_throughput_tps"]["median"]
        finally:
            if sampler:
                sampler.stop()

    if a.compare == "bare":
        def bare() -> float:
            return bare_throughput(loaded.model, prompts, out_len, a.reps, device)
        label, first, second = "harness/bare", harness, bare
    else:
        label, first, second = f"sampler on/off ({meter.name})", lambda: harness(True), harness
    ratios = []
    print(f"{a.model}/{a.quant} ({a.weights}) bs{a.batch_size} sl{a.seq_len} on {device}: {label}, "
          f"{a.rounds} rounds x {a.reps} reps")
    for r in range(a.rounds):
        if r % 2 == 0:
            x, y = first(), second()
        else:
            y, x = second(), first()
        ratios.append(x / y)
        print(f"round {r}: {x:.2f} vs {y:.2f} tok/s  ratio {x / y:.4f}", flush=True)
    print(f"{label} throughput ratio: median {statistics.median(ratios):.4f}, "
          f"mean {statistics.fmean(ratios):.4f} ± {statistics.stdev(ratios):.4f} (std), "
          f"min {min(ratios):.4f}, max {max(ratios):.4f}, n={len(ratios)}  [{time.strftime('%Y-%m-%d %H:%M')}]")


if __name__ == "__main__":
    main()
