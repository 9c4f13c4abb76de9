"""Why does a synthetic Llama-3.1-8B with its real rope_scaling (llama3) decode slower than one without?

Part 1 (the suspicious measurement): for each variant, a short 8-token warm-up, then (1) a plain
`generate` timed as total / max_new_tokens, with the tokens really generated counted; (2) the same with
min_new_tokens = max_new_tokens; (3) whether the logits are finite; (4) the top CUDA kernels of a
profiled decode. Part 2 (the fair one): both variants loaded together, each warmed up with the full
shape, then timed alternately A B A B ... so that order and warm-up cannot favour either."""
from __future__ import annotations

import argparse
import copy
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from artifact.core.config import load_group


def build(arch: dict):
    torch.manual_seed(0)
    a = dict(arch)
    with torch.device("cuda"):
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(a.pop("model_type"), **a),
                                                dtype=torch.float16).eval()


def timed(model, ids, new, forced: bool):
    kw = dict(max_new_tokens=new, do_sample=False, num_beams=1, pad_token_id=0)
    if forced:
        kw["min_new_tokens"] = new
    torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
    torch.cuda.synchronize()
    return time.perf_counter() - t, out.shape[1] - ids.shape[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=64)
    a = ap.parse_args()
    from omegaconf import OmegaConf
    arch = OmegaConf.to_container(load_group("model", "llama31-8b").arch)
    plain = copy.deepcopy(arch)
    plain.pop("rope_scaling")
    ids = torch.randint(100, 20000, (1, a.prompt), device="cuda")
    for name, variant in (("with rope_scaling (llama3)", arch), ("without rope_scaling", plain)):
        model = build(variant)
        timed(model, ids, 8, True)  # warm-up
        with torch.inference_mode():
            logits = model(ids).logits
        print(f"\n== {name}: rope {model.config.rope_parameters}")
        print(f"   logits finite: {bool(torch.isfinite(logits).all())}, eos ids {model.generation_config.eos_token_id}")
        for forced in (False, True):
            secs, got = timed(model, ids, a.new, forced)
            print(f"   min_new_tokens={'max' if forced else 'unset'}: {secs:.3f} s, generated {got}/{a.new} tokens; "
                  f"naive ms/step {1e3 * secs / a.new:.1f}, true ms/step {1e3 * secs / max(got, 1):.1f}")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            timed(model, ids, 16, True)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=60))
        del model
        torch.cuda.empty_cache()
    print("\n== fair comparison: full-shape warm-up, interleaved, 5 rounds (ms/step, min_new_tokens = max)")
    models = {"with rope_scaling": build(arch), "without": build(plain)}
    for m in models.values():
        timed(m, ids, a.new, True)
    per = {k: [] for k in models}
    for r in range(5):
        for k in (list(models) if r % 2 == 0 else list(models)[::-1]):
            secs, got = timed(models[k], ids, a.new, True)
            per[k].append(1e3 * secs / got)
    for k, v in per.items():
        print(f"   {k:18s} median {sorted(v)[len(v) // 2]:.1f} ms/step  all {[round(x, 1) for x in v]}")
    cold = build(arch)
    secs, got = timed(cold, ids, a.new, True)
    print(f"   a fresh model's first full-length generate: {1e3 * secs / got:.1f} ms/step (after others warmed the process)")


if __name__ == "__main__":
    main()
