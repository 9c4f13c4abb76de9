"""Roofline fractions: how close a cell came to its device's limits, so that an H100 cell and a Jetson cell
can be compared.

decode_bw_fraction = (bytes one decode step must move / step time) / peak memory bandwidth. Counted: every
weight once per step, as loaded (`model.weight_bytes`: packed 8/4-bit weights with their scales for
bitsandbytes and GPTQ), plus the KV cache the step reads: 2 (K and V) x layers x KV heads x head dim x the KV
dtype's bytes x batch x the context, averaged over the decode steps (in_len + (out_len - 1) / 2). Not counted:
KV writes, activations, logits, and that an embedding lookup reads only its rows (the whole embedding matrix is
counted): the fraction is a lower bound of the traffic. The step time is the median decode time per step.

prefill_flops_fraction = (prefill FLOPs / time to first token) / peak dense FLOP/s at the compute dtype.
FLOPs: 2 x params x batch x in_len (the matmuls) + 2 x 2 x layers x batch x heads x head dim x in_len^2 / 2
(scores and values, causal). The compute dtype is the loaded model's (fp32, fp16, bf16), also for bitsandbytes
and GPTQ, which dequantize to it (fp16 on CUDA; 4-bit on a CPU computes in fp32). TTFT includes the first
token's sampling and launch overheads.

Peaks: conf/devices.yaml by the cell's hardware name, else a probe in the cell's process (`probe`: a STREAM-like
copy and a matmul per dtype, best of a few), recorded in result.json as `device_peaks`."""
from __future__ import annotations

import re
import time
from pathlib import Path

import yaml

DEVICES = Path(__file__).resolve().parents[2] / "conf" / "devices.yaml"
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def table_peaks(hardware: str, host_memory_bytes: int | None = None, power_mode: str | None = None) -> dict | None:
    """The first conf/devices.yaml entry matching this hardware, as {name, mem_bw_gbs, tflops, source}."""
    for entry in yaml.safe_load(DEVICES.read_text())["devices"]:
        if not re.search(entry["match"], hardware or ""):
            continue
        need = entry.get("host_memory_gib_min")
        if need is not None and (host_memory_bytes or 0) < need * 2 ** 30:
            continue
        bw = entry.get("mem_bw_gbs")
        by_mode = entry.get("emc_mhz_by_power_mode")
        if by_mode is not None and power_mode not in (None, "none"):
            emc = by_mode.get(power_mode)
            bw = None if emc is None else bw * emc / entry["emc_max_mhz"]
        return {"name": entry["name"], "mem_bw_gbs": bw, "tflops": dict(entry.get("tflops") or {}),
                "source": "conf/devices.yaml"}
    return None


def probe(device: str, dtype_name: str) -> dict:
    """Measured peaks of this device: a copy of 256 MiB (bytes read + written / time) and an n x n linear layer
    in the cell's compute dtype (2 n^3 / time; n = 512 on a CPU, 8192 on a GPU); the best of 5 and 3 runs. Under
    a second on a CPU; a probe, not a datasheet: small matmuls underestimate a CPU's peak. No fp16 FLOP/s peak on
    a CPU: torch's fp16 GEMM speed there differs tenfold between kernels and shapes, so no probe bounds it."""
    import torch
    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def best(fn, args: tuple, runs: int) -> float:
        fn(*args)
        sync()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(*args)
            sync()
            times.append(time.perf_counter() - t0)
        return min(times)

    n_bytes = 256 * 2 ** 20
    src = torch.empty(n_bytes, dtype=torch.uint8, device=dev).fill_(1)
    bw = 2 * n_bytes / best(torch.Tensor.copy_, (torch.empty_like(src), src), 5) / 1e9
    if dev.type == "cpu" and dtype_name == "fp16":  # no peak to trust: fp16 GEMM speed on a CPU depends on the
        return {"name": "probe", "mem_bw_gbs": round(bw, 2), "tflops": {},  # kernel each shape takes (x10 apart)
                "source": "probe (copy 256 MiB; no fp16 FLOP/s peak on a CPU)"}
    n = 512 if dev.type == "cpu" else 8192
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(n, n, device=dev).to(dtype)
    tflops = {dtype_name: round(2 * n ** 3 / best(torch.nn.functional.linear, (a, a), 3) / 1e12, 5)}
    return {"name": "probe", "mem_bw_gbs": round(bw, 2), "tflops": tflops,
            "source": f"probe (copy 256 MiB, linear {n}x{n})"}


def compute_dtype(result: dict) -> str:
    """The dtype the matmuls run in: the loaded model's (bitsandbytes and GPTQ dequantize to it)."""
    return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}.get((result.get("model") or {}).get("dtype"),
                                                                           "fp32")


def fractions(config: dict, result: dict, peaks: dict | None, metrics: dict) -> dict:
    """decode_bw_fraction and prefill_flops_fraction of one cell (None where a number is missing)."""
    out = {"decode_bw_fraction": None, "prefill_flops_fraction": None}
    arch, tokens, model = config["model"].get("arch") or {}, result.get("tokens") or {}, result.get("model") or {}
    if not peaks or not arch or result.get("status") != "ok":
        return out
    layers, heads = arch.get("num_hidden_layers"), arch.get("num_attention_heads")
    kv_heads = arch.get("num_key_value_heads") or heads
    head_dim = arch.get("head_dim") or (arch["hidden_size"] // heads if heads else None)
    batch, in_len, out_len = config["batch_size"], tokens.get("in_len"), tokens.get("out_len")
    dtype = compute_dtype(result)
    step_s, ttft_s = metrics.get("per_token_s"), metrics.get("ttft_s")
    if None in (layers, heads, head_dim, in_len, out_len):
        return out
    weight_bytes = model.get("weight_bytes")
    if peaks.get("mem_bw_gbs") and weight_bytes and step_s:
        context = in_len + (out_len - 1) / 2
        kv = 2 * layers * kv_heads * head_dim * DTYPE_BYTES.get(dtype, 2) * batch * context
        out["decode_bw_fraction"] = (weight_bytes + kv) / step_s / (peaks["mem_bw_gbs"] * 1e9)
    peak_tflops = (peaks.get("tflops") or {}).get(dtype)
    params = config["model"].get("params") or model.get("params")
    if peak_tflops and params and ttft_s:
        flops = 2 * params * batch * in_len + 2 * 2 * layers * batch * heads * head_dim * in_len ** 2 / 2
        out["prefill_flops_fraction"] = flops / ttft_s / (peak_tflops * 1e12)
    return out
