"""A cell whose process died while measuring it is measured again in a child process.

Some failures end the process with no Python exception to catch: a CUDA library calling exit() (bitsandbytes'
LLM.int8 kernels do on a launch error), a segfault, SIGKILL from the kernel's OOM killer. Such a cell leaves its
lock behind, and artifact.store.record notes the death. Run in-process again, it would stop every later run of the sweep
at the same cell. In a child process it either gets measured (a death by power cut or `kill -9` was not the
cell's doing) or dies again; then the parent records status error, with the child's exit status and last stderr
lines, and the sweep goes on."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid

from ..core.config import Cell, flatten, override_value
from ..core.schema import Result

TAIL_LINES = 20  # stderr lines kept in the error record
CHILD_ENV = "ARTIFACT_ISOLATED_CELL"  # set for the child: the hash of the cell it was handed, to measure in-process


def is_child_for(cell_hash: str) -> bool:
    """Whether this process is the child its parent handed this cell to (it must not hand it on again)."""
    return os.environ.get(CHILD_ENV) == cell_hash


def child_command(cell: Cell, params: str) -> list[str]:
    """`python -m artifact.run` for this one cell: its composed config (written to `params`) plus what a params
    file does not carry (artifact.core.config.NOT_FROM_PARAMS). The database lock stays with the parent."""
    config = cell.config
    tracking = {**flatten(config["tracking"]), "lock_db": None}
    return [sys.executable, "-m", "artifact.run", "--params", params,
            f"study={override_value(config['study'])}", f"profile={override_value(config['profile'])}",
            f"traces_dir={override_value(str(cell.traces_dir))}", f"models_dir={override_value(str(cell.models_dir))}",
            f"data_dir={override_value(str(cell.data_dir))}",
            *[f"tracking.{k}={override_value(v)}" for k, v in tracking.items()]]


def run_child(cmd: list[str], cell_hash: str) -> tuple[int, list[str]]:
    """Run it as the child for this cell, passing its output through; returns its exit status (negative: the
    signal that ended it) and its last stderr lines. A child still running when this process is stopped is
    stopped too."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, errors="replace",
                             env={**os.environ, CHILD_ENV: cell_hash})
    try:
        for line in child.stderr:
            sys.stderr.write(line)
            if line.strip():
                tail.append(line.rstrip())
        return child.wait(), list(tail)
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait()


def describe_death(death: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(death.get("since", 0)))
    return f"process {death.get('pid')} on {death.get('host')} died measuring it (started {since})"


def died_result(cell: Cell, key: str, returncode: int, tail: list[str], *, deaths: list[dict],
                provenance: dict) -> Result:
    """The error record of a cell that killed its child process too."""
    how = f"signal {signal.Signals(-returncode).name}" if returncode < 0 else f"exit status {returncode}"
    last = tail[-1] if tail else "(nothing)"
    return {"cell_hash": key, "record_id": uuid.uuid4().hex, "status": "error",
            "message": f"the process measuring this cell died without a result, again: a child process ended with "
                       f"{how}; its last stderr line: {last}; before it, {describe_death(deaths[-1])}",
            "device": cell.device, "hardware": cell.hardware, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tokens": {"in_len": cell.in_len, "out_len": cell.out_len, "seq_len": cell.seq_len},
            "stderr_tail": tail, "process_deaths": deaths, "cell_seconds": 0.0, "provenance": provenance,
            "power_mode": {"name": cell.power.name, "status": "not known (the process died)"}}
