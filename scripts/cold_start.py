"""The first generation at a new shape is ~3x slower than the next ones (seen on an H100 with synthetic
Llama-3.1-8B, with or without rope_scaling). Which part is it? Times generate() repeatedly and counts the
CUDA allocator's new segments (cudaMalloc calls) per call; then empties the allocator cache and times
again (if it is slow again, allocator growth is the cause), then a new shape."""
from __future__ import annotations

import time

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM

from artifact.core.config import load_group


def gen(model, bs: int, prompt: int, new: int) -> tuple[float, int]:
    ids = torch.randint(100, 20000, (bs, prompt), device="cuda")
    before = torch.cuda.memory_stats().get("segment.all.allocated", 0)
    torch.cuda.synchronize()
    t = time.perf_counter()
    with torch.inference_mode():
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                       do_sample=False, pad_token_id=0)
    torch.cuda.synchronize()
    return (time.perf_counter() - t) * 1e3 / new, torch.cuda.memory_stats().get("segment.all.allocated", 0) - before


def main() -> None:
    arch = OmegaConf.to_container(load_group("model", "llama31-8b").arch)
    model_type = arch.pop("model_type")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **arch), dtype=torch.float16).eval()
    for label, bs, prompt, new, empty in [("first", 1, 64, 64, False), ("second", 1, 64, 64, False),
                                          ("third", 1, 64, 64, False), ("after empty_cache", 1, 64, 64, True),
                                          ("again", 1, 64, 64, False), ("new shape bs32", 32, 64, 64, False),
                                          ("bs32 again", 32, 64, 64, False), ("bs32 after empty_cache", 32, 64, 64, True)]:
        if empty:
            torch.cuda.empty_cache()
        ms, segs = gen(model, bs, prompt, new)
        print(f"{label:24s} {ms:7.1f} ms/step   new cudaMalloc segments {segs}", flush=True)


if __name__ == "__main__":
    main()
