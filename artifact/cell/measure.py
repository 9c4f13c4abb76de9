"""Timed generation: warm-up, repetitions until a count and a duration are both met, prefill and decode
timed separately, generated token counts checked, incremental peak memory."""
from __future__ import annotations

import gc
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch

from ..core.schema import Memory, Rep, Summary, Timing, Tokens
from ..core.stats import p90


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def now(device: str) -> float:
    """A monotonic clock read after the device has finished all queued work."""
    synchronize(device)
    return time.perf_counter()


class TokenClock:
    """A `generate` streamer that timestamps each new token. generate hands tokens over with `.cpu()`,
    which waits for the device, so each stamp is when that token existed on the host."""

    def __init__(self):
        self.stamps: list[float] = []
        self._prompt_seen = False

    def put(self, value):
        if not self._prompt_seen:  # the first put is the prompt itself
            self._prompt_seen = True
            return
        self.stamps.append(time.perf_counter())

    def end(self):
        pass


def summary(values: list[float]) -> Summary:
    """median / mean / std / p90 / min / max / n of repeated measurements (p90 only from 64 of them: None below)."""
    v = sorted(values)
    n = len(v)
    return {"median": statistics.median(v), "mean": statistics.fmean(v),
            "std": statistics.stdev(v) if n > 1 else None, "p90": p90(v), "min": v[0], "max": v[-1], "n": n}


class MemoryProbe:
    """Incremental peak memory of a window (warm-up and timed repetitions) over the baseline at its start.

    CPU (and Jetson unified memory): process RSS; the kernel's high-water mark (VmHWM) is reset through
    /proc/self/clear_refs when allowed, else RSS is polled every 5 ms. CUDA: torch's peak allocated and
    reserved bytes besides, after the allocator's cached blocks of earlier cells are released (so that the
    baseline is the weights), and the GPU's used memory as nvidia-smi shows it at the start."""

    def __init__(self, device: str, keep_cache: bool = False):
        self.device = device
        self.keep_cache = keep_cache  # the rounds design: no empty_cache inside a round
        self.process = psutil.Process()
        self._poll: threading.Thread | None = None
        self._stop = threading.Event()
        self._polled_peak = 0

    @staticmethod
    def _status_kb(field: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def _reset_hwm(self) -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return self._status_kb("VmHWM") is not None
        except OSError:
            return False

    @staticmethod
    def _release_freed_heap() -> None:
        """Hand memory that glibc keeps after frees back to the OS, so a later peak is a real increase."""
        try:
            import ctypes
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass

    def start(self) -> None:
        synchronize(self.device)
        self._release_freed_heap()
        self.rss_base = self.process.memory_info().rss
        self.rss_method = "VmHWM reset via /proc/self/clear_refs" if self._reset_hwm() else "RSS polled every 5 ms"
        if self.rss_method.startswith("RSS polled"):
            self._polled_peak = self.rss_base
            self._stop.clear()
            self._poll = threading.Thread(target=self._poll_rss, daemon=True)
            self._poll.start()
        if self.device.startswith("cuda"):
            from ..power.nvml import memory_used_bytes
            if not self.keep_cache:
                gc.collect()
                torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.cuda_alloc_base = torch.cuda.memory_allocated(self.device)
            self.cuda_reserved_base = torch.cuda.memory_reserved(self.device)
            self.gpu_used_base = memory_used_bytes(self.device)

    def _poll_rss(self) -> None:
        while not self._stop.wait(0.005):
            self._polled_peak = max(self._polled_peak, self.process.memory_info().rss)

    def stop(self) -> Memory:
        synchronize(self.device)
        if self._poll:
            self._stop.set()
            self._poll.join()
            peak = self._polled_peak
        else:
            peak = self._status_kb("VmHWM")
        out: Memory = {"rss_peak_bytes": peak, "rss_baseline_bytes": self.rss_base,
               "rss_incremental_peak_bytes": peak - self.rss_base, "rss_method": self.rss_method}
        if self.device.startswith("cuda"):
            peak_allocated = torch.cuda.max_memory_allocated(self.device)
            peak_reserved = torch.cuda.max_memory_reserved(self.device)
            out.update({
                "cuda_allocated_baseline_bytes": self.cuda_alloc_base,
                "cuda_incremental_peak_allocated_bytes": peak_allocated - self.cuda_alloc_base,
                "cuda_incremental_peak_reserved_bytes": peak_reserved - self.cuda_reserved_base,
                "cuda_reserved_baseline_bytes": self.cuda_reserved_base,
                "cuda_peak_allocated_bytes": peak_allocated,
                "cuda_peak_reserved_bytes": peak_reserved,
                "gpu_used_at_start_bytes": self.gpu_used_base,
            })
            out["incremental_peak_bytes"] = out["cuda_incremental_peak_allocated_bytes"]
            out["memory_kind"] = "torch CUDA peak allocated over the pre-run baseline"
        else:
            out["incremental_peak_bytes"] = out["rss_incremental_peak_bytes"]
            out["memory_kind"] = "process RSS peak over the pre-run baseline"
        return out


class TokenCountError(RuntimeError):
    """The model did not generate exactly the tokens asked for: the measurement is invalid."""


@dataclass
class Generation:
    start: float
    first_token: float
    end: float
    new_tokens: int


def generate_once(model, prompts: torch.Tensor, out_len: int, gen_config, device: str) -> Generation:
    """One timed batch generation, its output checked for exactly `out_len` new tokens per prompt."""
    clock = TokenClock()
    attention = torch.ones_like(prompts)
    start = now(device)
    with torch.inference_mode():
        out = model.generate(input_ids=prompts, attention_mask=attention, generation_config=gen_config,
                             streamer=clock)
    end = now(device)
    batch, in_len = prompts.shape
    new = out[:, in_len:]
    if out.shape != (batch, in_len + out_len) or len(clock.stamps) != out_len:
        raise TokenCountError(f"asked for {out_len} new tokens per prompt, got output {tuple(out.shape)} "
                              f"and {len(clock.stamps)} decoding steps")
    if gen_config.eos_token_id is not None:
        eos = torch.tensor(gen_config.eos_token_id, device=new.device).reshape(-1)
        if torch.isin(new, eos).any():  # min_new_tokens suppresses EOS: an EOS here is padding after a stop
            raise TokenCountError("a sequence stopped early (EOS in the generated tokens)")
    return Generation(start, clock.stamps[0], end, batch * out_len)


def generation_config(model, tokenizer, out_len: int):
    """Greedy, exactly out_len new tokens (min_new_tokens = max_new_tokens), KV cache on."""
    from transformers import GenerationConfig
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    return GenerationConfig(max_new_tokens=out_len, min_new_tokens=out_len, do_sample=False, num_beams=1,
                            use_cache=True, eos_token_id=eos, pad_token_id=pad)


@dataclass
class TimedRun:
    """What `run_timed` measured: the record's timing, memory and token sections, and reps.csv's rows."""
    timing: Timing
    memory: Memory
    tokens: Tokens
    reps: list[Rep]


def run_timed(model, tokenizer, prompts: torch.Tensor, out_len: int, *, warmup: int, min_reps: int,
              min_seconds: float, max_reps: int, device: str, on_phase=None, warmup_tokens: int | None = None,
              keep_cache: bool = False) -> TimedRun:
    """Warm-up generations, then repetitions until min_reps AND min_seconds (capped at max_reps).

    `on_phase(name, t)` is called at every phase edge (for a power sampler's marks). `warmup_tokens` makes each
    warm-up generate that many tokens (a short warm-up at the prompt's shape; None: out_len). `keep_cache`: the
    memory probe leaves the allocator's cached blocks alone (no empty_cache)."""
    mark = on_phase or (lambda name, t: None)
    prompts = prompts.to(device)
    batch, in_len = prompts.shape
    gen_config = generation_config(model, tokenizer, out_len)
    warm_len = min(out_len, warmup_tokens) if warmup_tokens else out_len
    warm_config = gen_config if warm_len == out_len else generation_config(model, tokenizer, warm_len)
    memory = MemoryProbe(device, keep_cache=keep_cache)  # over warm-up too: the first generation makes the allocations
    memory.start()
    warm = []
    mark("warmup", now(device))
    for _ in range(warmup):
        g = generate_once(model, prompts, warm_len, warm_config, device)
        warm.append(g.end - g.start)
    reps: list[Rep] = []
    timed_s = 0.0
    mark("timed_start", now(device))
    while len(reps) < max_reps and (len(reps) < min_reps or timed_s < min_seconds):
        g = generate_once(model, prompts, out_len, gen_config, device)
        mark(f"rep{len(reps)}:prefill", g.start)
        mark(f"rep{len(reps)}:decode", g.first_token)
        latency, ttft, decode = g.end - g.start, g.first_token - g.start, g.end - g.first_token
        timed_s += latency
        reps.append({
            "rep": len(reps), "t_start": g.start, "t_first_token": g.first_token, "t_end": g.end,
            "latency_s": latency, "ttft_s": ttft, "decode_s": decode,
            "new_tokens": g.new_tokens,
            "token_throughput_tps": batch * (in_len + out_len) / latency,    # the paper's T_P
            "decode_tps": batch * (out_len - 1) / decode if out_len > 1 else float("nan"),
            "per_token_latency_s": decode / (out_len - 1) if out_len > 1 else float("nan"),
        })
    mark("end", now(device))
    mem = memory.stop()
    metrics = {name: summary([r[name] for r in reps]) for name in
               ("latency_s", "ttft_s", "decode_s", "token_throughput_tps", "decode_tps", "per_token_latency_s")}
    # The first generation at a shape pays one-off host-side costs (kernel and heuristic selection for each
    # new shape; on an H100 about 3x a warm one): the warm-up absorbs them, and this ratio shows how much.
    cold_ratio = warm[0] / metrics["latency_s"]["median"] if warm and warm_len == out_len else None
    timing: Timing = {"metrics": metrics, "warmup_latency_s": warm, "cold_start_ratio": cold_ratio,
                      "timed_seconds": timed_s}
    tokens: Tokens = {"batch_size": batch, "in_len": in_len, "out_len": out_len,
                      "generated_per_rep": batch * out_len, "checked": True}
    return TimedRun(timing, mem, tokens, reps)
