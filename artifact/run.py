"""`python -m artifact.run [overrides]`: one measured cell; `-m` makes a sweep (Hydra multirun).

Bad input: one line on stderr, exit 2, no record. A cell that fails while measuring is recorded with
status error (oom for out-of-memory) and a sweep goes on; the exit code is 1 if any cell failed."""
from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
import uuid
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from . import models, power, provenance
from .progress import LiveLine, SweepProgress
from .config import (ConfigError, compose, data_dir, load_group, one_line, overrides_from_params, register,
                     resolve_device, split_lengths, to_container, validate)
from .measure import TokenCountError, run_timed
from .perplexity import perplexity
from .record import CellStore, cell_hash, log_to_mlflow, run_name
from .workload import build_prompts, corpus_text

register()
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
FAILED: list[str] = []
PROGRESS = SweepProgress(1)
_PPL_CACHE: dict = {}


def is_oom(e: BaseException) -> bool:
    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(e).lower()


def ppl_workload(cfg: DictConfig):
    return load_group("workload", cfg.ppl.corpus)


def check_inputs(cfg: DictConfig) -> str:
    """Everything that can be checked before loading a model. Returns the resolved device."""
    validate(cfg)
    device = resolve_device(cfg.device)
    models.check_quant_supported(cfg.quant, device)
    corpus_text(data_dir(cfg), cfg.workload)
    if cfg.ppl.enabled:
        corpus_text(data_dir(cfg), ppl_workload(cfg))
    if cfg.power.kind != "none" and not cfg.power.dry_run:
        power.get_modes(cfg.power).resolve(cfg.power)
    power.get_meter(cfg.meter, device)
    return device


def measure_cell(cfg: DictConfig, device: str, h: str) -> tuple[dict, list[dict], dict]:
    """Load, build prompts, time (sampling power), score. Returns the result, per-repetition rows and
    the power trace tables."""
    in_len, out_len = split_lengths(cfg.seq_len, cfg.out_fraction)
    result = {"cell_hash": h, "record_id": uuid.uuid4().hex, "status": "ok", "message": "",
              "device": device, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "tokens": {"in_len": in_len, "out_len": out_len, "seq_len": cfg.seq_len}}
    reps: list[dict] = []
    tables: dict = {}
    meter = power.get_meter(cfg.meter, device)
    result["power"] = {"status": "no sensor", "reason": getattr(meter, "reason", "")}
    cell_start = time.perf_counter()
    live = LiveLine().start()
    try:
        loaded, reused = models.load(cfg.model, cfg.quant, device, Path(cfg.models_dir), cfg.seed, data_dir(cfg))
        result["model"] = {**loaded.info, "reused_from_previous_cell": reused}
        if loaded.prepared:  # how the checkpoint under models/ was made (conversion, GPTQ calibration)
            result["prepared"] = loaded.prepared
        prompts, result["prompts"] = build_prompts(loaded.tokenizer, data_dir(cfg), cfg.workload,
                                                   cfg.batch_size, in_len)
        sampler = None
        if not isinstance(meter, power.NoMeter):
            idle = power.idle_power(meter, cfg.meter, cfg.power.name)
            sampler = power.Sampler(meter, cfg.meter.rate_hz).start()
            live.sampler = sampler
        try:
            timed = run_timed(loaded.model, loaded.tokenizer, prompts, out_len, warmup=cfg.warmup,
                              min_reps=cfg.min_reps, min_seconds=cfg.min_seconds, max_reps=cfg.max_reps,
                              device=device, on_phase=sampler.mark if sampler else None)
        finally:
            if sampler:
                sampler.stop()
        reps = timed.pop("reps")
        if sampler:
            result["power"] = power.summarize(sampler, reps, idle, cfg.meter, timed["tokens"])
            tables = {"power.csv": sampler.trace_rows(), "marks.csv": sampler.mark_rows()}
        result.update(metrics=timed["metrics"], memory=timed["memory"], tokens={**result["tokens"], **timed["tokens"]},
                      warmup_latency_s=timed["warmup_latency_s"], cold_start_ratio=timed["cold_start_ratio"],
                      timed_seconds=timed["timed_seconds"])
        if cfg.ppl.enabled:
            key = json.dumps([to_container(cfg.model), to_container(cfg.quant), to_container(cfg.ppl), device])
            if key not in _PPL_CACHE:
                _PPL_CACHE[key] = perplexity(loaded.model, loaded.tokenizer, data_dir(cfg), ppl_workload(cfg),
                                             cfg.ppl, device)
            result["perplexity"] = _PPL_CACHE[key]
        else:
            result["perplexity"] = {"status": "not measured",
                                    "reason": "synthetic weights" if cfg.model.weights == "synthetic" else "ppl=off"}
    except ConfigError:
        raise
    except Exception as e:  # a result, not a crash: recorded, and a sweep goes on
        result["status"] = "oom" if is_oom(e) else "error"
        result["message"] = f"{type(e).__name__}: {e}"
        if not isinstance(e, TokenCountError) and result["status"] == "error":
            result["traceback"] = traceback.format_exc(limit=8)
        if result["status"] == "oom":
            models.release()
    finally:
        live.stop()
    result["cell_seconds"] = round(time.perf_counter() - cell_start, 3)
    result["provenance"] = provenance.provenance()
    return result, reps, tables


def describe(result: dict) -> str:
    """One readable line per cell, llama-bench style (median ± std)."""
    if result["status"] != "ok":
        return f"[{result['status']}] {result['message']}"
    m = result["metrics"]
    mem = result["memory"]["incremental_peak_bytes"] / 2**20
    def spread(s: dict, digits: int) -> str:  # one repetition has no spread
        return f" ± {s['std']:.{digits}f}" if s["std"] is not None else " (1 rep)"

    parts = [f"latency {m['latency_s']['median']:.3f}{spread(m['latency_s'], 3)} s",
             f"T_P {m['token_throughput_tps']['median']:.1f}{spread(m['token_throughput_tps'], 1)} tok/s",
             f"TTFT {m['ttft_s']['median'] * 1000:.0f} ms",
             f"decode {m['decode_tps']['median']:.1f} tok/s",
             f"mem +{mem:.0f} MiB"]
    if "perplexity" in result.get("perplexity", {}):
        parts.append(f"ppl {result['perplexity']['perplexity']:.2f}")
    p = result.get("power", {})
    if p.get("status") == "ok":
        parts.append(f"power {p['timed']['power_w']['median']:.1f} W (median)  energy {p['energy']['timed_j']:.1f} J")
    elif p.get("status"):
        parts.append(f"power: {p['status']}")
    parts.append(f"[{m['latency_s']['n']} reps, cell {result['cell_seconds']:.1f} s]")
    return "  ".join(parts)


def run_cell(cfg: DictConfig, device: str) -> tuple[str, bool]:
    """Measure the cell unless a finished record exists. Returns its status and whether it was measured."""
    config = to_container(cfg)
    h = cell_hash(config, device)
    store = CellStore(cfg.traces_dir, cfg.study)
    name = run_name(config)
    done = None if cfg.force else store.finished(h)
    if done is not None:
        print(f"{name}: done already ({store.path(h)}), skipped; force=true re-runs it", flush=True)
        _log(cfg, store.path(h), config, done)  # backfills MLflow if a crash came between record and log
        return done["status"], False
    if not store.try_lock(h):
        print(f"{name}: another process holds {store.path(h)}.lock, skipped", flush=True)
        return "busy", False
    try:
        mode = {"name": cfg.power.name, "status": "not set (power=none)"}
        if cfg.power.kind != "none":
            mode = power.get_modes(cfg.power).apply(cfg.power)
        result, reps, tables = measure_cell(cfg, device, h)
        result["power_mode"] = mode
        path = store.write(h, config, result, reps, tables)
    finally:
        store.unlock(h)
    print(f"{name}: {describe(result)} -> {path}", flush=True)
    _log(cfg, path, config, result)
    return result["status"], True


def _log(cfg: DictConfig, path: Path, config: dict, result: dict) -> None:
    if not cfg.tracking.enabled:
        return
    try:
        log_to_mlflow(cfg.tracking.uri, cfg.study, path, config, result)
    except Exception as e:  # the record on disk stands; the next run of this cell logs it
        print(f"warning: MLflow logging to {cfg.tracking.uri} failed ({type(e).__name__}: {e}); "
              f"the record is on disk and will be logged on the next run", file=sys.stderr)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.power.dry_run:
        plan = power.get_modes(cfg.power).plan(cfg.power) if cfg.power.kind != "none" else ["power=none: nothing to do"]
        print(f"power={cfg.power.name} (dry run: nothing is changed or measured)")
        print("\n".join(f"  {i + 1}. {step}" for i, step in enumerate(plan)), flush=True)
        return
    started = time.monotonic()
    if multirun:
        print(PROGRESS.header(HydraConfig.get().job.num, run_name(to_container(cfg))), flush=True)
    try:
        device = check_inputs(cfg)
        status, measured = run_cell(cfg, device)
        PROGRESS.cell_done(time.monotonic() - started, measured)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(2)
        FAILED.append(f"bad input: {e}")
        return
    if status not in ("ok", "oom", "busy"):  # an OOM is a result, not a failure
        FAILED.append(status)


def preflight(args: list[str]) -> int:
    """Compose and check the config for every value on the command line (each sweep value too) before
    Hydra starts, so that bad input is one line, exit 2, and no cell of a sweep has run. Returns the
    number of cells the command line sweeps."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    lines = [a for a in args if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    try:
        try:
            parsed = OverridesParser.create().parse_overrides(lines)
        except HydraException as e:
            raise ConfigError(one_line(e)) from e
        choices = [[line] if not o.is_sweep_override() else
                   [f"{line.split('=', 1)[0]}={v}" for v in o.sweep_string_iterator()]
                   for line, o in zip(lines, parsed)]
        base = [c[0] for c in choices]
        variants = [base] + [base[:i] + [v] + base[i + 1:] for i, c in enumerate(choices) for v in c[1:]]
        for overrides in variants:
            check_inputs(compose(overrides))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    return math.prod(len(c) for c in choices)


SLOWEST_FIRST = ("power", "model", "quant", "meter", "workload")


def sweep_order(args: list[str]) -> list[str]:
    """Hydra's basic sweeper varies the first override slowest: put the power mode first, then the model,
    then the precision, so that a sweep switches modes and reloads models as rarely as possible."""
    def rank(arg: str) -> int:
        group = arg.lstrip("+~").split("=")[0].split(".")[0]
        return SLOWEST_FIRST.index(group) if group in SLOWEST_FIRST else len(SLOWEST_FIRST)
    flags = [a for a in args if a.startswith("-")]
    return flags + sorted((a for a in args if not a.startswith("-")), key=rank)


def cli() -> None:
    if sys.argv[1:2] == ["--params"]:  # DVC's `cell` stage: the config DVC composed into params.yaml
        if len(sys.argv) < 3 or not Path(sys.argv[2]).is_file():
            print("error: --params needs a composed config file, e.g. --params params.yaml", file=sys.stderr)
            sys.exit(2)
        sys.argv[1:] = overrides_from_params(sys.argv[2]) + sys.argv[3:]
    if not any(a.startswith(("--help", "-h", "--cfg", "--info", "--hydra-help", "-c")) for a in sys.argv[1:]):
        PROGRESS.total = preflight(sys.argv[1:])
        sys.argv[1:] = sweep_order(sys.argv[1:])
    main()
    if FAILED:
        print(f"{len(FAILED)} cell(s) failed: {', '.join(FAILED)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    cli()
