"""`python -m artifact.run [overrides]`: one measured cell; `-m` makes a sweep (Hydra multirun).

Bad input: one line on stderr, exit 2, no record. A cell that fails while measuring is recorded with
status error (oom for out-of-memory) and a sweep goes on; the exit code is 1 if any cell failed."""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from pathlib import Path

import hydra
import psutil
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from . import disk, isolation, launch, models, roofline, timing, tracking
from .config import BadInput, Cell, compose, one_line, overrides_from_params, register, resolve, to_container
from .measure import TimedRun, TokenCountError, run_timed
from .perplexity import perplexity
from .power import NoMeter, Sampler, idle_power, nvml, summarize
from .power.energy import MIN_WINDOW_PERIODS
from .progress import LiveLine
from .record import CellStore, cell_hash, run_name
from .schema import Perplexity, Power, Rep, Result
from .session import Session
from .tracking import log_record
from .workload import build_prompts, corpus_text, text_ids

register()
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def is_oom(e: BaseException) -> bool:
    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(e).lower()


def check_inputs(cfg: DictConfig, session: Session) -> Cell:
    """The cell, resolved, and everything that can be checked before loading a model: the precision can run
    here, the corpora are there, the power mode exists, the meter opens. Raises BadInput."""
    cell = resolve(cfg)
    models.check_quant_supported(cell.quant, cell.device)
    corpus_text(cell.data_dir, cell.workload)
    if cell.ppl_corpus is not None:
        corpus_text(cell.data_dir, cell.ppl_corpus)
    if cell.power.kind != "none" and not cell.power.dry_run:
        session.power_modes(cell.power).resolve(cell.power)
    session.meter(cell.meter, cell.device)
    return cell


def _timed_run(cell: Cell, session: Session, loaded: models.Loaded, prompts: torch.Tensor,
               live: LiveLine) -> tuple[TimedRun, Power | None, dict]:
    """The timed generations, with the meter sampling through them where there is one. Returns the run, the
    power section (None without a sensor) and the power trace tables."""
    meter = session.meter(cell.meter, cell.device)
    reps = cell.repetitions
    sampler, min_seconds = None, reps.min_seconds
    if not isinstance(meter, NoMeter):
        idle = idle_power(meter, cell.meter, cell.power.name, measured=session.idle)
        sampler = Sampler(meter, cell.meter.rate_hz).start()
        live.sampler = sampler
        min_seconds = max(min_seconds, MIN_WINDOW_PERIODS * sampler.period_s)  # enough samples and counter ticks
    try:
        run = run_timed(loaded.model, loaded.tokenizer, prompts, cell.out_len, warmup=reps.warmup,
                        min_reps=reps.min_reps, min_seconds=min_seconds, max_reps=reps.max_reps,
                        device=cell.device, on_phase=sampler.mark if sampler else None)
    finally:
        if sampler:
            sampler.stop()
    if sampler is None:
        return run, None, {}
    power = summarize(sampler, run.reps, idle, cell.meter, run.tokens)
    power["min_window_s"] = min_seconds
    return run, power, {"power.csv": sampler.trace_rows(), "marks.csv": sampler.mark_rows()}


def _perplexity(cell: Cell, session: Session, loaded: models.Loaded) -> Perplexity:
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
        run, power, tables = _timed_run(cell, session, loaded, prompts, live)
        reps = run.reps
        if power is not None:
            result["power"] = power
        result["metrics"] = run.timing["metrics"]
        result["memory"] = run.memory
        result["tokens"] = {**result["tokens"], **run.tokens}
        result["warmup_latency_s"] = run.timing["warmup_latency_s"]
        result["cold_start_ratio"] = run.timing["cold_start_ratio"]
        result["timed_seconds"] = run.timing["timed_seconds"]
        result["perplexity"] = _perplexity(cell, session, loaded)
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
    """One readable line per cell, llama-bench style (median ± std)."""
    if result["status"] != "ok":
        return f"[{result['status']}] {result['message']}"
    metrics, memory = result["metrics"], result["memory"]
    latency, throughput = metrics["latency_s"], metrics["token_throughput_tps"]

    def spread(s: dict, digits: int) -> str:  # one repetition has no spread
        return f" ± {s['std']:.{digits}f}" if s["std"] is not None else " (1 rep)"

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
        parts.append(f"power {power['timed']['power_w']['median']:.1f} W (median)  "
                     f"energy {power['energy']['timed_j']:.1f} J")
    elif power.get("status"):
        parts.append(f"power: {power['status']}")
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


def run_cell(cell: Cell, session: Session) -> tuple[str, bool]:
    """Measure the cell unless a finished record exists. Returns its status and whether it was measured.
    The cell's lock (the file beside its record, and the database lock where tracking.lock_db is set) is held
    from the second look for a record to the MLflow run, so overlapping sweeps give one record and one run."""
    key = cell_hash(cell.config, cell.device, cell.hardware)
    store = CellStore(cell.traces_dir, cell.study)
    name = run_name(cell.config)
    done = None if cell.force else store.finished(key)
    if done is not None:
        print(f"{name}: done already ({store.path(key)}), skipped; force=true re-runs it", flush=True)
        with _cell_lock(store, session, cell, key) as locked:
            if locked:  # backfills MLflow if a crash came between record and log; else its writer logs it
                _log(cell, store.path(key), done)
        return done["status"], False
    with _cell_lock(store, session, cell, key) as locked:
        if not locked:
            print(f"{name}: another process is measuring it ({store.path(key)}), skipped", flush=True)
            return "busy", False
        done = None if cell.force else store.finished(key)
        if done is not None:  # finished by another worker between the first look and the lock
            print(f"{name}: done already ({store.path(key)}), skipped; force=true re-runs it", flush=True)
            _log(cell, store.path(key), done)
            return done["status"], False
        twin = None if cell.force else store.twin(key)
        if twin is not None:
            result = store.adopt(key, twin, cell.config)
            print(f"{name}: the same cell was measured in study {twin.parent.name} ({twin}); its record is reused "
                  f"-> {store.path(key)}", flush=True)
            _log(cell, store.path(key), result)
            return result["status"], False
        deaths = store.deaths(key)
        if deaths and not isolation.is_child_for(key):
            return _measure_in_child(cell, session, store, key, deaths)
        try:
            result, path = _measure_and_write(cell, session, store, key)
        finally:
            models.release()  # the allocator's cached blocks: between cells the GPU holds the weights alone
        print(f"{name}: {describe(result)} -> {path}", flush=True)
        _log(cell, path, result)
    return result["status"], True


@contextlib.contextmanager
def _cell_lock(store: CellStore, session: Session, cell: Cell, key: str):
    """Yields whether this process holds the cell: the file lock, then the database lock if one is set."""
    db = session.db_locks(cell.tracking.lock_db)
    got = store.try_lock(key)
    if got and db is not None and not db.try_lock(key):
        store.unlock(key)
        got = False
    try:
        yield got
    finally:
        if got:
            if db is not None:
                db.unlock(key)
            store.unlock(key)


def _measure_in_child(cell: Cell, session: Session, store: CellStore, key: str,
                      deaths: list[dict]) -> tuple[str, bool]:
    """A cell whose process died before (artifact.isolation), measured in a child process that gets the device
    (this process drops its model) and the file lock (handed over; the database lock stays here). The child
    writes and logs its record; if it dies too, this process records status error and the sweep goes on."""
    name = run_name(cell.config)
    print(f"{name}: {isolation.describe_death(deaths[-1])}; measuring it in a child process", flush=True)
    session.release_model()
    before = (store.recorded(key) or {}).get("record_id")
    with tempfile.TemporaryDirectory(prefix="artifact-cell-") as tmp:
        params = Path(tmp) / "cell.yaml"
        params.write_text(json.dumps(cell.config, default=str))  # JSON is YAML
        store.unlock(key)
        returncode, tail = isolation.run_child(isolation.child_command(cell, str(params)), key)
    after = store.recorded(key)
    if after is not None and after.get("record_id") != before:  # the child wrote its record
        return after["status"], True
    if returncode == 0 or not store.try_lock(key):  # the child found the cell busy, or another process took it
        print(f"{name}: another process is measuring it ({store.path(key)}), skipped", flush=True)
        return "busy", False
    result = isolation.died_result(cell, key, returncode, tail, deaths=store.deaths(key),
                                  provenance=session.provenance())
    path = store.write(key, cell.config, result, [])
    print(f"{name}: {describe(result)} -> {path}", flush=True)
    _log(cell, path, result)
    return "error", True


def _measure_and_write(cell: Cell, session: Session, store: CellStore, key: str) -> tuple[Result, Path]:
    smaller = session.oom_below(store, cell) if cell.batch_ladder else None
    if smaller is not None:
        result, reps, tables = implied_oom(cell, session, key, smaller), [], {}
    else:
        mode = {"name": cell.power.name, "status": "not set (power=none)"}
        if cell.power.kind != "none":
            mode = session.power_modes(cell.power).apply(cell.power)
        result, reps, tables = measure_cell(cell, session, key)
        result["power_mode"] = mode
        session.results.append(result)
        session.traces_dir = cell.traces_dir
        if result["status"] == "oom":
            session.note_oom(cell.config, cell.device, cell.hardware, key)
    return result, _write(store, key, cell, result, (reps, tables))


def _write(store: CellStore, key: str, cell: Cell, result: Result, rows: tuple[list, dict]) -> Path:
    """The record, written atomically; a full disk stops the sweep with one line (exit 1), the finished records
    standing and nothing half-written."""
    reps, tables = rows
    try:
        return store.write(key, cell.config, result, reps, tables)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"error: no space left on the device holding {store.path(key)} while writing its record "
              f"({e.strerror}); nothing of it was written, the finished records stand: free space and run the same "
              f"command again to resume", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def _log(cell: Cell, path: Path, result: Result) -> None:
    if not cell.tracking.enabled:
        return
    try:
        log_record(cell.tracking.uri, cell.study, path, cell.config, result)
    except Exception as e:  # the record on disk stands; the next run of this cell logs it
        print(f"warning: MLflow logging to {cell.tracking.uri} failed ({type(e).__name__}: {e}); "
              f"the record is on disk and will be logged on the next run", file=sys.stderr)


def run_job(cfg: DictConfig, session: Session) -> None:
    """One Hydra job: a cell, or a launcher job's group of cells (`cells`, see artifact.launch), or with
    power.dry_run=true the plan of its power mode. In a launcher's worker process a failed cell raises
    CellsFailed at the end of the job, so that the driver exits 1 once every job has run."""
    if cfg.power.dry_run:
        plan = (session.power_modes(cfg.power).plan(cfg.power) if cfg.power.kind != "none"
                else ["power=none: nothing to do"])
        print(f"power={cfg.power.name} (dry run: nothing is changed or measured)")
        print("\n".join(f"  {i + 1}. {step}" for i, step in enumerate(plan)), flush=True)
        return
    failed_before = len(session.failed)
    try:
        cells = launch.cell_configs(cfg)
        if not launch.in_driver_process():
            session.progress.total = len(cells)
        for i, cell_cfg in enumerate(cells):
            _run_one(cell_cfg, session, i if cfg.get("cells") else None)
    except BadInput as e:  # a bad `cells` entry
        print(f"error: {e}", file=sys.stderr, flush=True)
        session.failed.append(f"bad input: {e}")
    if not launch.in_driver_process():
        session.close()
        if len(session.failed) > failed_before:
            failed = session.failed[failed_before:]
            raise launch.CellsFailed(f"{len(failed)} cell(s) failed: {', '.join(failed)}")


def _run_one(cfg: DictConfig, session: Session, num: int | None) -> None:
    """One cell; `num` its index in a launcher job's group (None: the Hydra job's number)."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    started = time.monotonic()
    if multirun:
        num = HydraConfig.get().job.num if num is None else num
        print(session.progress.header(num, run_name(to_container(cfg))), flush=True)
    try:
        cell = check_inputs(cfg, session)
        status, measured = run_cell(cell, session)
        session.progress.cell_done(time.monotonic() - started, measured)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        if not multirun:
            sys.exit(2)
        session.failed.append(f"bad input: {e}")
        return
    if status not in ("ok", "oom", "busy"):  # an OOM is a result, not a failure
        session.failed.append(status)


def preflight(args: list[str], session: Session) -> list[str]:
    """Compose and check the config for every value on the command line (each sweep value too) before
    Hydra starts, so that bad input is one line, exit 2, and no cell of a sweep has run. Returns the command
    line to run: as given for the basic launcher; for another launcher, one job per group of cells that share a
    model, with paths and the tracking store made absolute (artifact.launch)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    lines = [a for a in args if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    try:
        try:
            parsed = OverridesParser.create().parse_overrides(lines)
        except HydraException as e:
            raise BadInput(one_line(e)) from e
        choices = [[line] if not o.is_sweep_override() else
                   [f"{line.split('=', 1)[0]}={v}" for v in o.sweep_string_iterator()]
                   for line, o in zip(lines, parsed)]
        base = [c[0] for c in choices]
        variants = [base] + [base[:i] + [v] + base[i + 1:] for i, c in enumerate(choices) for v in c[1:]]
        cells = [check_inputs(compose(overrides), session) for overrides in variants]
        total = math.prod(len(c) for c in choices)
        check_disk(cells[0], _checkpoint_cells(lines, choices, session), total)
        if cells[0].tracking.lock_db:
            session.db_locks(cells[0].tracking.lock_db).check()
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    session.progress.total = total
    launcher = launch.launcher_of(args)
    if launcher == "basic":
        return sweep_order(args)
    if cells[0].tracking.enabled:  # created once here: workers creating a store or an experiment at once race
        uri = launch.absolute_uri(cells[0].tracking.uri)
        tracking.experiment_id(tracking.client(uri), uri, cells[0].study)
    launch.driver_environment(launcher)
    flags = [a for a in args if a.startswith("-") or a.lstrip("+~").startswith("hydra")]
    jobs = launch.group_jobs(lines, choices)
    return sweep_order(flags + launch.replace_overrides(jobs, launch.driver_overrides(cells[0])))


CHECKPOINT_KEYS = ("model", "quant", "seed", "device", "models_dir")  # what decides which checkpoints a cell builds


def _checkpoint_cells(lines: list[str], choices: list[list[str]], session: Session) -> list[Cell]:
    """Every combination of the swept values that decide checkpoints (model, quant, seed, ...), the rest at
    their first value: the cells whose checkpoints the sweep may build."""
    import itertools
    varied = [c if launch.override_key(line) in CHECKPOINT_KEYS else c[:1]
              for line, c in zip(lines, choices)]
    return [check_inputs(compose(list(combo)), session) for combo in itertools.product(*varied)]


def check_disk(first: Cell, cells: list[Cell], total: int) -> None:
    """The checkpoints the sweep will build and its records, against the free space where they go."""
    needs: dict[Path, int] = {}
    for cell in cells:
        needs.update(disk.checkpoint_bytes(cell))
    needs[first.traces_dir / first.study] = total * disk.RECORD_BYTES
    disk.check_space(needs, f"this run ({total} cell{'s' if total > 1 else ''}: "
                            f"{sum(needs.values()) / disk.GIB:.1f} GiB of checkpoints and records)")


SLOWEST_FIRST = ("power", "model", "quant", "meter", "workload")


def sweep_order(args: list[str]) -> list[str]:
    """Hydra's basic sweeper varies the first override slowest: put the power mode first, then the model,
    then the precision, so that a sweep switches modes and reloads models as rarely as possible."""
    def rank(arg: str) -> int:
        group = launch.override_key(arg)
        return SLOWEST_FIRST.index(group) if group in SLOWEST_FIRST else len(SLOWEST_FIRST)
    flags = [a for a in args if a.startswith("-")]
    return flags + sorted((a for a in args if not a.startswith("-")), key=rank)


def cli() -> None:
    session = Session()
    if sys.argv[1:2] == ["--params"]:  # DVC's `cell` stage: the config DVC composed into params.yaml
        if len(sys.argv) < 3 or not Path(sys.argv[2]).is_file():
            print("error: --params needs a composed config file, e.g. --params params.yaml", file=sys.stderr)
            sys.exit(2)
        sys.argv[1:] = overrides_from_params(sys.argv[2]) + sys.argv[3:]

    @hydra.main(config_path="../conf", config_name="config", version_base="1.3")
    def main(cfg: DictConfig) -> None:
        run_job(cfg, session)

    signal.signal(signal.SIGTERM, _stop)
    started = time.time()
    # conf/hydra/launcher/ray.yaml is checked against the plugin's schema of the same name, as intended
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/ray' is validated against ConfigStore schema")
    try:
        if not any(a.startswith(("--help", "-h", "--cfg", "--info", "--hydra-help", "-c")) for a in sys.argv[1:]):
            sys.argv[1:] = preflight(sys.argv[1:], session)
        main()
    finally:
        session.close()
    if session.results:  # where the time went, from process start (imports included)
        wall = time.time() - psutil.Process().create_time()
        print(timing.render(timing.summarize(session.results, wall)), flush=True)
        timing.log_sweep(session.traces_dir, started, wall, session.results)
    if session.failed:
        print(f"{len(session.failed)} cell(s) failed: {', '.join(session.failed)}", file=sys.stderr)
        sys.exit(1)


def _stop(signum: int, frame) -> None:
    """SIGTERM (`kill`, `timeout`, a scheduler) stops like Ctrl-C: the cell in progress is abandoned cleanly (its
    lock released, no half-written record), so it is not taken for a cell that killed its process."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    cli()
