"""A visit: one cell measured once on a loaded model: its prompts, warm-up at its shape, timed repetitions with the
meter sampling through them, and the sections a record keeps (artifact.core.schema). The back-to-back design measures a
cell as one visit (`measure_cell`, the model loaded first); the rounds design (artifact.sweep.rounds) visits each cell
once per round."""
from __future__ import annotations

import json
import os
import time
import traceback
import uuid

import torch

from ..core import roofline
from ..core.config import BadInput, Cell, to_container
from ..core.schema import Perplexity, Power, Rep, Result
from ..models import loading
from ..power import NoMeter, Sampler, idle_power, nvml, summarize
from ..power.energy import MIN_WINDOW_UPDATES, update_s
from ..workload.corpus import corpus_text
from ..workload.prompts import build_prompts, text_ids
from .measure import TimedRun, TokenCountError, run_timed
from .perplexity import perplexity
from .progress import LiveLine
from .session import Session


def is_oom(e: BaseException) -> bool:
    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(e).lower()


def timed_run(cell: Cell, session: Session, loaded: loading.Loaded, prompts: torch.Tensor, live: LiveLine, *,
              warmup_tokens: int | None = None, keep_cache: bool = False) -> tuple[TimedRun, Power | None, dict]:
    """The warm-up and timed generations, with the meter sampling through them where there is one. Returns the
    run, the power section (None without a sensor) and the power trace tables. `warmup_tokens` shortens each
    warm-up generation (None: the full output length); `keep_cache` leaves the allocator's cached blocks alone
    (the rounds design: no empty_cache inside a round)."""
    meter = session.meter(cell.meter, cell.device)
    reps = cell.repetitions
    sampler, min_seconds = None, reps.min_seconds
    if not isinstance(meter, NoMeter):
        idle = idle_power(meter, cell.meter, cell.power.name, measured=session.idle)
        sampler = Sampler(meter, cell.meter.rate_hz).start()
        live.sampler = sampler
        min_seconds = max(min_seconds, MIN_WINDOW_UPDATES * update_s(sampler))  # enough independent readings
    try:
        run = run_timed(loaded.model, loaded.tokenizer, prompts, cell.out_len, warmup=reps.warmup,
                        min_reps=reps.min_reps, min_seconds=min_seconds, max_reps=reps.max_reps,
                        device=cell.device, on_phase=sampler.mark if sampler else None,
                        warmup_tokens=warmup_tokens, keep_cache=keep_cache)
    finally:
        if sampler:
            sampler.stop()
    if sampler is None:
        return run, None, {}
    power = summarize(sampler, run.reps, idle, cell.meter, run.tokens)
    power["min_window_s"] = min_seconds
    return run, power, {"power.csv": sampler.trace_rows(), "marks.csv": sampler.mark_rows()}


def cell_perplexity(cell: Cell, session: Session, loaded: loading.Loaded) -> Perplexity:
    """The cell's perplexity section, computed once per model, quant, method and device in a process."""
    if cell.ppl_corpus is None:
        return {"status": "not measured",
                "reason": "synthetic weights" if cell.model.weights == "synthetic" else "ppl=off"}
    key = json.dumps([to_container(cell.model), to_container(cell.quant), to_container(cell.ppl), cell.device])
    if key in session.perplexities:
        return {**session.perplexities[key], "computed_in": "an earlier cell"}
    text = corpus_text(cell.data_dir, cell.ppl_corpus)
    ids = text_ids(loaded.tokenizer, text, cell.ppl_corpus.name, session.token_ids, n_tokens=cell.ppl.max_tokens)
    session.perplexities[key] = perplexity(loaded.model, loaded.tokenizer, ids, cell.ppl, cell.device)
    return {**session.perplexities[key], "computed_in": "this cell"}


def measure_cell(cell: Cell, session: Session, cell_hash: str) -> tuple[Result, list[Rep], dict]:
    """Load, build prompts, time (sampling power), score. Returns the result (its sections composed in the
    order result.json keeps them), the per-repetition rows and the power trace tables."""
    result: Result = {"cell_hash": cell_hash, "record_id": uuid.uuid4().hex, "status": "ok", "message": "",
                      "device": cell.device, "hardware": cell.hardware,
                      "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                      "gpu_uuid": nvml.cuda_uuid(cell.device) if cell.device.startswith("cuda") else None,
                      "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "tokens": {"in_len": cell.in_len, "out_len": cell.out_len, "seq_len": cell.seq_len}}
    reps: list[Rep] = []
    tables: dict = {}
    meter = session.meter(cell.meter, cell.device)
    result["power"] = {"status": "no sensor", "reason": getattr(meter, "reason", "")}
    cell_start = time.perf_counter()
    live = LiveLine().start()
    try:
        loaded, reused = session.model(cell)
        result["model"] = {**loaded.info, "reused_from_previous_cell": reused}
        if loaded.prepared:  # how the checkpoint under models/ was made (conversion, GPTQ calibration)
            result["prepared"] = loaded.prepared
        prompts, result["prompts"] = build_prompts(loaded.tokenizer, cell.data_dir, cell.workload, cell.batch_size,
                                                   cell.in_len, token_cache=session.token_ids)
        run, power, tables = timed_run(cell, session, loaded, prompts, live)
        reps = run.reps
        if power is not None:
            result["power"] = power
        result["metrics"] = run.timing["metrics"]
        result["memory"] = run.memory
        result["tokens"] = {**result["tokens"], **run.tokens}
        result["warmup_latency_s"] = run.timing["warmup_latency_s"]
        result["cold_start_ratio"] = run.timing["cold_start_ratio"]
        result["timed_seconds"] = run.timing["timed_seconds"]
        result["perplexity"] = cell_perplexity(cell, session, loaded)
        result["device_peaks"] = session.device_peaks(cell, roofline.compute_dtype(result))
    except BadInput:
        raise
    except Exception as e:  # a result, not a crash: recorded, and a sweep goes on
        result["status"] = "oom" if is_oom(e) else "error"
        result["message"] = f"{type(e).__name__}: {e}"
        if not isinstance(e, TokenCountError) and result["status"] == "error":
            result["traceback"] = traceback.format_exc(limit=8)
        if result["status"] == "oom":
            session.release_model()
    finally:
        live.stop()
    result["cell_seconds"] = round(time.perf_counter() - cell_start, 3)
    result["provenance"] = session.provenance()
    return result, reps, tables


def describe(result: Result) -> str:
    """One readable line per cell, llama-bench style: back-to-back, median ± std of the repetitions; rounds, the
    median over rounds with its interval (stats.interval) and the number of rounds."""
    if result["status"] != "ok":
        return f"[{result['status']}] {result['message']}"
    metrics, memory = result["metrics"], result["memory"]
    latency, throughput = metrics["latency_s"], metrics["token_throughput_tps"]

    def spread(s: dict, digits: int) -> str:
        iv = s.get("interval")
        if iv is not None:  # the rounds design
            return f" [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]" if iv["low"] is not None else " (1 round)"
        return f" ± {s['std']:.{digits}f}" if s["std"] is not None else " (1 rep)"  # one repetition has no spread

    parts = [f"latency {latency['median']:.3f}{spread(latency, 3)} s",
             f"T_P {throughput['median']:.1f}{spread(throughput, 1)} tok/s",
             f"TTFT {metrics['ttft_s']['median'] * 1000:.0f} ms",
             f"decode {metrics['decode_tps']['median']:.1f} tok/s",
             f"mem +{memory['incremental_peak_bytes'] / 2**20:.0f} MiB"]
    ppl = result.get("perplexity", {})
    if "perplexity" in ppl:
        parts.append(f"ppl {ppl['perplexity']:.2f}")
    power = result.get("power", {})
    if power.get("status") == "ok":
        joules = power["energy"].get("timed_j", power["energy"]["per_rep_j_median"])
        parts.append(f"power {power['timed']['power_w']['median']:.1f} W (median)  "
                     f"energy {joules:.1f} J" + ("" if "timed_j" in power["energy"] else " per batch"))
    elif power.get("status"):
        parts.append(f"power: {power['status']}")
    if result.get("design") == "rounds":
        iv = latency["interval"]
        how = f", {iv['method']} ({iv['coverage']:.0%})" if iv["low"] is not None else ""
        parts.append(f"[{latency['n']} rounds{how}, cell {result['cell_seconds']:.1f} s]")
    else:
        parts.append(f"[{latency['n']} reps, cell {result['cell_seconds']:.1f} s]")
    return "  ".join(parts)


def implied_oom(cell: Cell, session: Session, key: str, smaller: tuple[int, str]) -> Result:
    """The record of a cell not run because a smaller batch of its ladder ran out of memory (batch_ladder):
    status oom, labelled by `implied_by` and the message, with no measurement."""
    batch, by = smaller
    return {"cell_hash": key, "record_id": uuid.uuid4().hex, "status": "oom",
            "message": f"not run: batch_size={batch} ran out of memory with the same settings (record {by}), "
                       f"so batch_size={cell.batch_size} cannot fit (batch_ladder=true)",
            "device": cell.device, "hardware": cell.hardware, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tokens": {"in_len": cell.in_len, "out_len": cell.out_len, "seq_len": cell.seq_len},
            "implied_by": by, "cell_seconds": 0.0, "provenance": session.provenance(),
            "power_mode": {"name": cell.power.name, "status": "not set (not run)"}}
