"""Synthetic weights quantized in GPU memory (artifact.models.architecture.quantize_in_memory) against the disk path
(an fp16 checkpoint of the same architecture loaded by from_pretrained with a BitsAndBytesConfig): same layer
types, same weight footprint (weights_mib), same unquantized modules, and both generate. Also times each.

    python scripts/synthetic_quant_check.py --model phi2 --quant int8 int4 --out /tmp/check.json"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from artifact.models import loading
from artifact.models.architecture import build_synthetic
from artifact.core.config import compose, resolve


def summary(model) -> dict:
    layers: dict[str, int] = {}
    for m in model.modules():
        if "Linear" in type(m).__name__:
            layers[type(m).__name__] = layers.get(type(m).__name__, 0) + 1
    return {"weights_mib": model.get_memory_footprint() / 2**20, "layers": layers,
            "allocated_mib": torch.cuda.memory_allocated() / 2**20}


def generate_ok(model) -> bool:
    ids = torch.randint(0, 1000, (2, 16), device="cuda")
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, min_new_tokens=8,
                             do_sample=False, pad_token_id=0)
    return tuple(out.shape) == (2, 24)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="phi2")
    ap.add_argument("--quant", nargs="+", default=["int8", "int4"])
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="fp16-"))
    try:
        cell = resolve(compose([f"model={a.model}", "model.weights=synthetic", "ppl=off", "quant=fp16", "device=cuda"]))
        t = time.perf_counter()
        build_synthetic(cell.model, torch.float16, "cuda", 0).save_pretrained(folder)
        saved = time.perf_counter() - t
        loading.release()
        for quant in a.quant:
            cell = resolve(compose([f"model={a.model}", "model.weights=synthetic", "ppl=off", f"quant={quant}",
                                    "device=cuda"]))
            qconfig = loading.quantization_config(cell.quant, "cuda")
            t = time.perf_counter()
            gpu = loading.load(cell).model  # synthetic + bnb on CUDA: built and quantized in GPU memory
            gpu_s = time.perf_counter() - t
            g = {**summary(gpu), "seconds": gpu_s, "generates": generate_ok(gpu)}
            del gpu
            loading.release()
            from transformers import AutoModelForCausalLM
            t = time.perf_counter()
            disk = AutoModelForCausalLM.from_pretrained(folder, dtype=loading.compute_dtype(cell.quant, "cuda"),
                                                        quantization_config=qconfig, device_map={"": "cuda"})
            d = {**summary(disk), "seconds": time.perf_counter() - t + saved, "generates": generate_ok(disk)}
            del disk
            loading.release()
            rel = g["weights_mib"] / d["weights_mib"] - 1
            rows.append({"model": a.model, "quant": quant, "gpu_path": g, "disk_path": d, "weights_rel_diff": rel})
            print(f"{a.model} {quant}: in GPU memory {g['weights_mib']:.1f} MiB {g['layers']} in {g['seconds']:.1f} s; "
                  f"disk path {d['weights_mib']:.1f} MiB {d['layers']} in {d['seconds']:.1f} s (incl. the fp16 save); "
                  f"weights differ by {rel:+.4%}; generate ok: {g['generates']} / {d['generates']}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
