"""`python -m artifact.run [overrides]`: one measured cell; `-m` makes a sweep (Hydra multirun).

Bad input: one line on stderr, exit 2, no record. A cell that fails while measuring is recorded with
status error (oom for out-of-memory) and a sweep goes on; the exit code is 1 if any cell failed.
This module only parses and hands over: the checks before a sweep are artifact.sweep.preflight, a Hydra job is
artifact.sweep.jobs, one cell's life (lock, resume, isolation, the OOM ladder, its record) artifact.sweep.cells."""
from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .cell.session import Session
from .core.config import overrides_from_params, register
from .sweep import jobs
from .sweep.preflight import preflight

register()
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def cli() -> None:
    session = Session()
    if sys.argv[1:2] == ["--params"]:  # DVC's `cell` stage: the config DVC composed into params.yaml
        if len(sys.argv) < 3 or not Path(sys.argv[2]).is_file():
            print("error: --params needs a composed config file, e.g. --params params.yaml", file=sys.stderr)
            sys.exit(2)
        sys.argv[1:] = overrides_from_params(sys.argv[2]) + sys.argv[3:]

    @hydra.main(config_path="../conf", config_name="config", version_base="1.3")
    def main(cfg: DictConfig) -> None:
        jobs.run_job(cfg, session)

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
    if jobs.report_sweep(session, started):
        sys.exit(1)


def _stop(signum: int, frame) -> None:
    """SIGTERM (`kill`, `timeout`, a scheduler) stops like Ctrl-C: the cell in progress is abandoned cleanly (its
    lock released, no half-written record), so it is not taken for a cell that killed its process."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    cli()
