"""One Hydra job of a sweep: a cell, or a launcher job's group of cells (artifact.sweep.launch), measured back to
back one after another or in rounds (artifact.sweep.rounds); with power.dry_run=true the plan of its power mode."""
from __future__ import annotations

import sys
import time

import psutil
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ..cell import canary
from ..cell.session import Session
from ..core.config import BadInput, to_container
from ..store import timing
from ..store.record import run_name
from . import launch, rounds
from .cells import run_cell
from .preflight import check_inputs


def run_job(cfg: DictConfig, session: Session) -> None:
    """One Hydra job: a cell, or a launcher job's group of cells (`cells`, see artifact.sweep.launch), or with
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
    """The job's cells (one load group: artifact.sweep.launch) measured in rounds (artifact.sweep.rounds)."""
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


def report_sweep(session: Session, started: float) -> bool:
    """The sweep's closing lines: where the time went (from process start, imports included, and logged beside the
    records), the drift canary's spread, and the cells that failed. Returns whether any failed."""
    if session.results:
        wall = time.time() - psutil.Process().create_time()
        print(timing.render(timing.summarize(session.results, wall)), flush=True)
        timing.log_sweep(session.traces_dir, started, wall, session.results)
    if session.canary_points:
        print(canary.spread_line(session.canary_points), flush=True)
    if session.failed:
        print(f"{len(session.failed)} cell(s) failed: {', '.join(session.failed)}", file=sys.stderr)
    return bool(session.failed)
