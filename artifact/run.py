"""`python -m artifact.run [overrides]`: one measured cell; `-m` makes a sweep (Hydra multirun).

Bad input: one line on stderr, exit 2, no record. A cell that fails while measuring is recorded with
status error (oom for out-of-memory) and a sweep goes on; the exit code is 1 if any cell failed."""
from __future__ import annotations

import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import hydra
import psutil
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from . import canary, cells, checkpoints, disk, isolation, launch, models, rounds, timing, tracking
from .config import BadInput, Cell, compose, one_line, overrides_from_params, register, resolve, to_container
from .record import CellStore, cell_hash, run_name
from .schema import Result
from .session import Session
from .visit import describe, implied_oom, measure_cell
from .workload import corpus_text

register()
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def check_inputs(cfg: DictConfig, session: Session) -> Cell:
    """The cell, resolved, and everything that can be checked before loading a model: the precision can run
    here, the corpora are there, the power mode exists, the meter opens. Raises BadInput."""
    cell = resolve(cfg)
    session.once(("quant", cell.quant.name, cell.device), lambda: models.check_quant_supported(cell.quant, cell.device))
    if cell.model.source == "hub" and cell.model.weights == "real":
        session.once(("hub", cell.model.hub_id, cell.model.revision), lambda: checkpoints.check_hub_weights(cell.model))
    corpus_text(cell.data_dir, cell.workload)
    if cell.ppl_corpus is not None:
        corpus_text(cell.data_dir, cell.ppl_corpus)
    if cell.power.kind != "none" and not cell.power.dry_run:
        session.power_modes(cell.power).resolve(cell.power)
    session.meter(cell.meter, cell.device)
    return cell


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
        with cells.cell_lock(store, session, cell, key) as locked:
            if locked:  # backfills MLflow if a crash came between record and log; else its writer logs it
                cells.log_to_mlflow(cell, store.path(key), done)
        return done["status"], False
    with cells.cell_lock(store, session, cell, key) as locked:
        if not locked:
            print(f"{name}: another process is measuring it ({store.path(key)}), skipped", flush=True)
            return "busy", False
        done = None if cell.force else store.finished(key)
        if done is not None:  # finished by another worker between the first look and the lock
            print(f"{name}: done already ({store.path(key)}), skipped; force=true re-runs it", flush=True)
            cells.log_to_mlflow(cell, store.path(key), done)
            return done["status"], False
        twin = None if cell.force or not cell.reuse_twins else store.twin(key)
        if twin is not None:
            result = store.adopt(key, twin, cell.config)
            print(f"{name}: the same cell was measured in study {twin.parent.name} ({twin}); its record is reused "
                  f"-> {store.path(key)}", flush=True)
            cells.log_to_mlflow(cell, store.path(key), result)
            return result["status"], False
        deaths = store.deaths(key)
        if deaths and not isolation.is_child_for(key):
            return cells.measure_in_child(cell, session, store, key, deaths)
        try:
            result, path = _measure_and_write(cell, session, store, key)
        finally:
            models.release()  # the allocator's cached blocks: between cells the GPU holds the weights alone
        print(f"{name}: {describe(result)} -> {path}", flush=True)
        cells.log_to_mlflow(cell, path, result)
    return result["status"], True


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
    return result, cells.write_record(store, key, cell, result, (reps, tables))


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
        configs = launch.cell_configs(cfg)
        if not launch.in_driver_process():
            session.progress.total = len(configs)
        if cfg.design == "rounds":
            _run_rounds(configs, session)
        for i, cell_cfg in enumerate(configs if cfg.design != "rounds" else []):
            _run_one(cell_cfg, session, i if cfg.get("cells") else None)
    except BadInput as e:  # a bad `cells` entry
        print(f"error: {e}", file=sys.stderr, flush=True)
        session.failed.append(f"bad input: {e}")
    if not launch.in_driver_process():
        session.close()
        if len(session.failed) > failed_before:
            failed = session.failed[failed_before:]
            raise launch.CellsFailed(f"{len(failed)} cell(s) failed: {', '.join(failed)}")


def _run_rounds(configs: list[DictConfig], session: Session) -> None:
    """The job's cells (one load group: artifact.launch) measured in rounds (artifact.rounds)."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    group = []
    for cfg in configs:
        try:
            group.append(check_inputs(cfg, session))
        except BadInput as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            if not multirun:
                sys.exit(2)
            session.failed.append(f"bad input: {e}")
    if group:
        first = group[0]
        print(f"[load group {first.model.name}/{first.quant.name} on {first.device}: {len(group)} cell(s), "
              f"{first.design.rounds} round(s), {session.progress.header_elapsed()}]", flush=True)
        rounds.run_group(group, session)


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
    flags = [a for a in args if a.startswith("-") or a.lstrip("+~").startswith("hydra")]
    if launcher == "basic":  # the rounds design: one job per load group, its cells measured in rounds
        rounds_design = any(c.design.name == "rounds" for c in cells)
        return sweep_order(flags + launch.group_jobs(lines, choices) if rounds_design else args)
    if cells[0].tracking.enabled:  # created once here: workers creating a store or an experiment at once race
        uri = launch.absolute_uri(cells[0].tracking.uri)
        tracking.experiment_id(tracking.client(uri), uri, cells[0].study)
    launch.driver_environment(launcher)
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
    if session.canary_points:
        print(canary.spread_line(session.canary_points), flush=True)
    if session.failed:
        print(f"{len(session.failed)} cell(s) failed: {', '.join(session.failed)}", file=sys.stderr)
        sys.exit(1)


def _stop(signum: int, frame) -> None:
    """SIGTERM (`kill`, `timeout`, a scheduler) stops like Ctrl-C: the cell in progress is abandoned cleanly (its
    lock released, no half-written record), so it is not taken for a cell that killed its process."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    cli()
