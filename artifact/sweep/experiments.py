"""The paper's tables and figures as config: conf/experiment/<name>.yaml declares, for each profile
(paper, gpu, smoke), the sweep that produces it; conf/profiles/<profile>.yaml holds the settings every
experiment of that profile shares. This module turns the two into Hydra overrides for `artifact.run -m`."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import yaml

from ..core.config import CONF_DIR, BadInput, load_groups, override_value
from ..store.record import FAILED_SINCE_ENV, settle_dead_locks

EXPERIMENTS_DIR = CONF_DIR / "experiment"
PROFILES_DIR = CONF_DIR / "profiles"
PROFILES = ("paper", "gpu", "smoke")


@dataclass
class Plan:
    name: str
    study: str
    profile: str
    overrides: list[str]     # for `python -m artifact.run -m ...`
    cells: int
    skip: str | None = None  # why this profile does not run it
    settings: dict | None = None  # key -> value (a list sweeps), what the overrides were made from
    processes: int = 1       # rounds design: fresh processes each load group's rounds are spread over (passes)


def names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def load(name: str) -> dict:
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise BadInput(f"experiment {name!r} does not exist; use one of: {', '.join(names())}")
    exp = yaml.safe_load(path.read_text())
    missing = [p for p in PROFILES if p not in exp.get("profiles", {})]
    if "study" not in exp or missing or not ("figure" in exp or "table" in exp):
        raise BadInput(f"{path}: needs study, figure or table, and profiles {', '.join(PROFILES)} "
                          f"(missing: {', '.join(missing) or 'study/figure/table'})")
    if exp.get("table", {}).get("kind") == "power_modes":  # the table lists the configured modes themselves
        exp["table"]["mode_configs"] = load_groups("power", exp["table"]["modes"])
    return {"name": name, **exp}


def profile_settings(profile: str) -> dict:
    if profile not in PROFILES:
        raise BadInput(f"profile={profile!r} is not allowed; use auto or one of: {', '.join(PROFILES)}")
    return yaml.safe_load((PROFILES_DIR / f"{profile}.yaml").read_text())


def _value(v) -> str:
    """A list is a sweep (comma-separated values); anything else one value."""
    return ",".join(override_value(x) for x in v) if isinstance(v, list) else override_value(v)


def plan(name: str, profile: str, extra: list[str] | tuple = ()) -> Plan:
    """The sweep of one experiment in one profile. `extra` are `key=value` overrides from the command line;
    each replaces the experiment's own value for that key (a comma list sweeps)."""
    exp = load(name)
    entry = exp["profiles"][profile] or {}
    if "skip" in entry:
        return Plan(name, exp["study"], profile, [], 0, skip=entry["skip"])
    settings = {**profile_settings(profile)["defaults"], **entry}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or key in ("study", "profile"):
            raise BadInput(f"{item!r} is not allowed here; give key=value overrides (not study or profile)")
        settings[key] = value.split(",") if "," in value and not value.startswith("[") else value
    processes = _processes(settings.pop("processes", 1))
    overrides = [f"study={exp['study']}", f"profile={profile}"]
    overrides += [f"{k}={_value(v)}" for k, v in settings.items()]
    cells = math.prod(len(v) for v in settings.values() if isinstance(v, list))
    return Plan(name, exp["study"], profile, overrides, cells, settings=settings, processes=processes)


def _processes(value) -> int:
    """The `processes` setting (a profile's, or `processes=N` on the command line) as a count >= 1."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() != str(n):
        raise BadInput(f"processes={value!r} is not allowed; give a whole number >= 1 (fresh processes each load "
                       f"group's rounds are spread over)")
    return n


class Pass(NamedTuple):
    """One sweep of a plan: its `artifact.run -m` overrides, whether it reverses the load groups' order, and the
    rounds it asks (None: the plan's own, not the rounds design)."""
    overrides: list[str]
    reverse: bool
    rounds: int | None


def passes(p: Plan) -> list[Pass]:
    """The sweeps that measure a plan. A sweep is a fresh
    process per load group (launch.GROUP_KEYS: model, precision, ...): it loads, warms up, measures the canary and
    its share of the rounds, and a later sweep asking more rounds adds to the records. In the rounds design the
    rounds are spread over `processes` sweeps (at most one per round), pass k asking ceil(k x rounds / processes)
    rounds, so a cell's interval holds the spread between processes, not only the drift within one (a fresh process
    can be 30 % off the last: ../shared/MEASUREMENT.md); every pass says `spread=[rounds, passes]`, so a record
    whose rounds came from fewer processes (all in one, say) is measured again. A sweep over several load groups
    takes at least 2 passes, every second one with each group key's values reversed: comparisons across groups pair
    rounds measured in separate minutes, and the reversal makes a drift that is linear in time weigh on both sides
    alike. Otherwise (back-to-back, one round) one sweep."""
    from .launch import GROUP_KEYS
    settings = p.settings or {}
    rounds = int(settings.get("rounds", 1))
    if settings.get("design") != "rounds" or rounds < 2:
        return [Pass(p.overrides, False, None)]
    swept = [k for k in GROUP_KEYS if isinstance(settings.get(k), list) and len(settings[k]) > 1]
    count = min(rounds, max(p.processes, 2 if swept else 1))
    head = [f"study={p.study}", f"profile={p.profile}"]
    out = []
    for k in range(1, count + 1):
        reverse = bool(swept) and k % 2 == 0
        s = {**settings, "rounds": -(-k * rounds // count),
             **({key: list(reversed(settings[key])) for key in swept} if reverse else {})}
        if k > 1:  # force=true starts the records over in the first pass; the later passes add to them
            s.pop("force", None)
        spread = f"spread=[{rounds},{count}]"  # one value, not a sweep
        out.append(Pass(head + [f"{key}={_value(v)}" for key, v in s.items()] + [spread], reverse, s["rounds"]))
    return out


def detect_profile() -> tuple[str, str]:
    """paper on a Jetson, gpu where CUDA is visible, else smoke; with the reason, to be printed."""
    tegra = Path("/etc/nv_tegra_release")
    model = Path("/proc/device-tree/model")
    board = model.read_text(errors="replace").strip("\x00 \n") if model.is_file() else ""
    if tegra.is_file() or "jetson" in board.lower() or "orin" in board.lower():
        return "paper", f"a Jetson ({board or tegra})"
    import torch
    if torch.cuda.is_available():
        return "gpu", f"a CUDA GPU ({torch.cuda.get_device_name(0)}) and no Jetson"
    return "smoke", f"no CUDA GPU and not a Jetson ({os.cpu_count()} CPU cores)"


def resolve_profile(requested: str) -> tuple[str, str]:
    if requested == "auto":
        return detect_profile()
    profile_settings(requested)  # checks the name
    return requested, "chosen on the command line"


def set_profile(requested: str, params: Path = Path("params.yaml")) -> None:
    """Point the DVC pipeline at a profile: the `profile:` line of params.yaml (what `dvc exp run -S
    profile=...` would write), so that a change of profile re-runs the experiment stages."""
    import re
    if requested != "auto":
        profile_settings(requested)
    text = params.read_text()
    params.write_text(re.sub(r"(?m)^profile: .*$", f"profile: {requested}", text))
    chosen, why = resolve_profile(requested)
    print(f"profile {chosen} ({why})" if requested == "auto" else f"profile {chosen} (chosen)", flush=True)



def write_plan(traces_dir: Path, p: Plan) -> None:
    """traces/<study>/PLAN.json: what this profile runs for the study (or why it skips it); it also makes
    the folder exist, which DVC needs of a stage's output even when the profile skips the experiment."""
    folder = traces_dir / p.study
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"experiment": p.name, "profile": p.profile, "cells": p.cells, "skip": p.skip, "processes": p.processes,
           "command": ["python", "-m", "artifact.run", "-m", *p.overrides] if not p.skip else None}
    tmp = folder / ".PLAN.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(folder / "PLAN.json")


def run_experiment(p: Plan, traces_dir: Path) -> int:
    """The experiment's sweep, run again while its process died holding a cell (artifact.sweep.isolation): each rerun
    skips the finished cells and measures the one it died on in a child process, so a cell that kills its process
    costs one restart, not the rest of the sweep. At most one rerun per cell. A cell that failed (an error, or a
    death in its child process too) is not tried again by a later pass or rerun of this experiment: the next command
    tries it. A pass before the last whose cells all hold its rounds already is not started (_holds_rounds)."""
    write_plan(traces_dir, p)
    if p.skip:
        print(f"  skipped in profile {p.profile}: {p.skip}", flush=True)
        return 0
    sweeps = passes(p)
    env = {**os.environ, FAILED_SINCE_ENV: repr(time.time())}
    holds = _holds_rounds(p, sweeps[-1], traces_dir) if len(sweeps) > 1 else None
    for n, sweep in enumerate(sweeps):
        if n < len(sweeps) - 1 and holds is not None and holds(sweep.rounds):
            print(f"  pass {n + 1} of {len(sweeps)}: every cell holds the {sweep.rounds} round(s) it asks already, "
                  f"skipped", flush=True)
            continue
        if len(sweeps) > 1:
            order = " (the load groups in reversed order)" if sweep.reverse else ""
            print(f"  pass {n + 1} of {len(sweeps)}{order}", flush=True)
        rc = _sweep([sys.executable, "-m", "artifact.run", "-m", *sweep.overrides, f"traces_dir={traces_dir}"], p,
                    traces_dir, env)
        if rc not in (0, 1):  # bad input or a stop: the second pass would fail the same way
            return rc
    return rc


def _holds_rounds(p: Plan, last: Pass, traces_dir: Path):
    """A test, rounds -> bool, of whether every cell of the plan already holds that many rounds from as many
    processes as the plan spreads them over: the rule a sweep's own process applies before it skips a cell
    (CellStore.finished), on each cell's identity composed here, lazily, once. A pass that would skip every cell is
    not started (a process costs its imports, its composes and, on a GPU machine, seconds of the GPU's time); the
    last pass always runs, so that a sweep still logs restored records to MLflow and reports. None where force=true
    asks for the records to start over, or where the overrides do not compose (the sweep itself says why)."""
    import functools
    import itertools

    from ..core.config import compose, resolve
    from ..store.record import CellStore, cell_hash
    from .preflight import config_overrides, sweep_choices
    if _value((p.settings or {}).get("force", False)).lower() == "true":
        return None
    lines = config_overrides(last.overrides) + [f"traces_dir={traces_dir}"]
    try:
        combos = list(itertools.product(*sweep_choices(lines)))
        first = resolve(compose(list(combos[0])))
    except BadInput:
        return None
    store, spread = CellStore(traces_dir, p.study), first.design.spread

    @functools.cache
    def key(i: int) -> str | None:
        try:
            cell = first if i == 0 else resolve(compose(list(combos[i])))
        except BadInput:
            return None
        return cell_hash(cell.config, cell.device, cell.hardware)

    return lambda rounds: all((k := key(i)) is not None and store.finished(k, rounds, spread) is not None
                              for i in range(len(combos)))


def _sweep(cmd: list[str], p: Plan, traces_dir: Path, env: dict[str, str]) -> int:
    """One sweep, run again while its process died holding a cell."""
    for _ in range(p.cells + 1):  # the first run, then at most one rerun per cell
        rc = subprocess.call(cmd, env=env)
        died = settle_dead_locks(traces_dir, p.study)
        if not died:
            break
        cmd = [a for a in cmd if not a.startswith("force=")]  # a rerun resumes; force=true would start over
        print(f"  the sweep's process ended (exit {rc}) while measuring {died} cell(s): running it again, finished "
              f"cells skipped and that cell measured in a child process", flush=True)
    return rc
