"""Everything a sweep checks before Hydra starts its first job: each value on the command line composed and checked
(bad input is one line, exit 2, no cell run), the disk space its checkpoints and records need, and the order and
grouping of its jobs (artifact.sweep.launch)."""
from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

from omegaconf import DictConfig

from ..cell.session import Session
from ..core.config import BadInput, Cell, compose, one_line, resolve
from ..models import checkpoints, loading
from ..store import tracking
from ..workload.corpus import corpus_text
from . import disk, launch


def check_inputs(cfg: DictConfig, session: Session) -> Cell:
    """The cell, resolved, and everything that can be checked before loading a model: the precision can run
    here, the corpora are there, the power mode exists, the meter opens. Raises BadInput."""
    cell = resolve(cfg)
    session.once(("quant", cell.quant.name, cell.device),
                 lambda: loading.check_quant_supported(cell.quant, cell.device))
    if cell.model.source == "hub" and cell.model.weights == "real":
        session.once(("hub", cell.model.hub_id, cell.model.revision), lambda: checkpoints.check_hub_weights(cell.model))
    corpus_text(cell.data_dir, cell.workload)
    if cell.ppl_corpus is not None:
        corpus_text(cell.data_dir, cell.ppl_corpus)
    if cell.power.kind != "none" and not cell.power.dry_run:
        session.power_modes(cell.power).resolve(cell.power)
    session.meter(cell.meter, cell.device)
    return cell


def config_overrides(args: list[str]) -> list[str]:
    """The command line's overrides of the config: not its flags, not Hydra's own (hydra/launcher=...)."""
    return [a for a in args if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]


def sweep_choices(lines: list[str]) -> list[list[str]]:
    """Each override as the list of single-value overrides it sweeps (model=a,b -> [model=a, model=b]); one value
    stays a list of one. Raises BadInput."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except HydraException as e:
        raise BadInput(one_line(e)) from e
    return [[line] if not o.is_sweep_override() else [f"{line.split('=', 1)[0]}={v}" for v in o.sweep_string_iterator()]
            for line, o in zip(lines, parsed)]


def preflight(args: list[str], session: Session) -> list[str]:
    """Compose and check the config for every value on the command line (each sweep value too) before
    Hydra starts, so that bad input is one line, exit 2, and no cell of a sweep has run. Returns the command
    line to run: as given for the basic launcher; for another launcher, one job per group of cells that share a
    model, with paths and the tracking store made absolute (artifact.sweep.launch)."""
    lines = config_overrides(args)
    try:
        choices = sweep_choices(lines)
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
