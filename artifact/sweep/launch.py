"""Spreading a sweep over GPUs and machines with Hydra's launchers (conf/hydra/launcher: ray, slurm). The
driver (the `python -m artifact.run -m` process) checks the whole sweep, then hands Hydra one job per group
of cells that share a loaded model; each job runs its cells in a loop in one process (the ML.ENERGY
benchmark's pattern), on its own GPU. With the basic launcher nothing here applies: the cells run in the
driver's process, one after another."""
from __future__ import annotations

import itertools
import os
from pathlib import Path

from omegaconf import DictConfig

from ..core.config import BadInput, Cell, set_key

# What decides the model a process holds, and how it measures: a launcher job (a load group) per combination. The
# other swept keys (batch size, length, workload, power mode, ...) are the group's cells; in the rounds design each
# round visits all of them, the power modes as blocks (artifact.sweep.rounds).
GROUP_KEYS = ("model", "quant", "meter", "ppl", "device", "seed", "design", "rounds")
PATH_KEYS = ("traces_dir", "models_dir", "data_dir")


class CellsFailed(RuntimeError):
    """Raised at the end of a launcher job whose cells failed: Hydra then exits 1 once every job has run."""


def launcher_of(args: list[str]) -> str:
    """The launcher named on the command line (hydra/launcher=NAME), else basic."""
    for a in args:
        if a.lstrip("+~").startswith("hydra/launcher="):
            return a.split("=", 1)[1]
    return "basic"


def in_driver_process() -> bool:
    """True under the basic launcher: the job runs in the driver's own process."""
    from hydra.core.hydra_config import HydraConfig
    return "BasicLauncher" in str(HydraConfig.get().launcher.get("_target_", "BasicLauncher"))


def override_key(line: str) -> str:
    """The top-level key an override sets: `model` for model=phi2, +model.weights=synthetic, ~model."""
    return line.lstrip("+~").split("=")[0].split(".")[0]


def group_jobs(lines: list[str], choices: list[list[str]]) -> list[str]:
    """The command line's overrides rewritten for one launcher job per group: the group keys (GROUP_KEYS) stay
    swept by Hydra; every other swept key goes into one `cells` override, the group's cells as
    'k=v k=v;k=v k=v', which the job runs in order."""
    group = [line for line, c in zip(lines, choices) if override_key(line) in GROUP_KEYS or len(c) == 1]
    inner = [c for line, c in zip(lines, choices) if override_key(line) not in GROUP_KEYS and len(c) > 1]
    if not inner:
        return group
    cells = ";".join(" ".join(combo) for combo in itertools.product(*inner))
    return group + [f"cells='{cells}'"]


def driver_environment(launcher: str) -> None:
    """A Ray driver asks for token auth exactly where a token is available to it, as `ray start` decides for a
    head (Ray 2.60 turns token auth on only where a token exists; a driver given an address never does by itself,
    so it must ask). A cluster that wants a token the driver lacks answers with Ray's own error. RAY_AUTH_MODE,
    where set, is left as it is. Usage statistics stay off (no network at run time)."""
    if launcher == "ray":
        if ray_token_available():
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every cell prints its own line


def ray_token_available() -> bool:
    """Whether Ray finds an auth token: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.is_file() and bool(path.read_text().strip())


def driver_overrides(first: Cell) -> list[str]:
    """Paths and the tracking store made absolute in the driver: a Ray worker's cwd and environment are Ray's,
    so a relative traces/ or sqlite:///mlflow.db would put records in a temp folder of the worker."""
    out = [f"{k}={Path(getattr(first, k)).resolve()}" for k in PATH_KEYS]
    out.append(f"tracking.uri={absolute_uri(first.tracking.uri)}")
    if first.tracking.lock_db:
        out.append(f"tracking.lock_db={first.tracking.lock_db}")
    return out


def absolute_uri(uri: str) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri:  # a local folder store
        return str(Path(uri).resolve())
    return uri


def replace_overrides(args: list[str], new: list[str]) -> list[str]:
    """args with each of `new`'s keys set to its value (an existing override of the key replaced)."""
    keys = {n.split("=", 1)[0] for n in new}
    return [a for a in args if a.lstrip("+~").split("=", 1)[0] not in keys] + new


def cell_configs(cfg: DictConfig) -> list[DictConfig]:
    """The job's cells: the job's own config, or one per entry of its `cells` override."""
    if not cfg.get("cells"):
        return [cfg]
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parser = OverridesParser.create()
    out = []
    for spec in str(cfg.cells).split(";"):
        one = cfg.copy()
        for kv in spec.split():
            try:
                set_key(one, kv.split("=", 1)[0], parser.parse_override(kv).value())
            except Exception as e:
                raise BadInput(f"cells entry {kv!r}: {e}") from e
        one.cells = None
        out.append(one)
    return out
