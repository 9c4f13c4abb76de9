"""What a process does around a cell's measurement, in either design: hold the cell (its file lock, and the
database lock where tracking.lock_db is set), write its record (a full disk is one line), log it to MLflow, and hand a
cell whose process died measuring it to a child process (artifact.sweep.isolation). run_cell is one cell's life
in the back-to-back design: skipped when finished, adopted from a twin, measured, written, logged."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import tempfile
from pathlib import Path

from ..cell.session import Session
from ..cell.visit import describe, implied_oom, measure_cell
from ..core.config import Cell
from ..core.schema import Result
from ..models import loading
from ..store.record import FAILED_SINCE_ENV, CellStore, cell_hash, run_name
from ..store.tracking import log_record
from . import isolation


@contextlib.contextmanager
def cell_lock(store: CellStore, session: Session, cell: Cell, key: str):
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


def failed_earlier(store: CellStore, key: str, name: str) -> bool:
    """Whether the cell failed earlier in this experiment of `make reproduce` (store.record.FAILED_SINCE_ENV): a
    later pass, or the rerun after a process died, does not try it again; the next command does. Says so."""
    since = os.environ.get(FAILED_SINCE_ENV)
    failed = store.failed_since(key, float(since)) if since else None
    if failed is not None:
        print(f"{name}: failed earlier in this experiment (its error record: {store.path(key)}); not tried again "
              f"until the next command", flush=True)
    return failed is not None


def measure_in_child(cell: Cell, session: Session, store: CellStore, key: str,
                      deaths: list[dict]) -> tuple[str, bool]:
    """A cell whose process died before (artifact.sweep.isolation), measured in a child process that gets the device
    (this process drops its model) and the file lock (handed over; the database lock stays here). The child
    writes and logs its record; if it dies too, this process records status error and the sweep goes on."""
    name = run_name(cell.config)
    print(f"{name}: {isolation.describe_death(deaths[-1])}; measuring it in a child process", flush=True)
    session.release_model()
    before = _version(store.recorded(key))
    with tempfile.TemporaryDirectory(prefix="artifact-cell-") as tmp:
        params = Path(tmp) / "cell.yaml"
        params.write_text(json.dumps(cell.config, default=str))  # JSON is YAML
        store.unlock(key)
        returncode, tail = isolation.run_child(isolation.child_command(cell, str(params)), key)
    after = store.recorded(key)
    if after is not None and _version(after) != before:  # the child wrote its record (or added visits to it)
        return after["status"], True
    if returncode == 0 or not store.try_lock(key):  # the child found the cell busy, or another process took it
        print(f"{name}: another process is measuring it ({store.path(key)}), skipped", flush=True)
        return "busy", False
    result = isolation.died_result(cell, key, returncode, tail, deaths=store.deaths(key),
                                  provenance=session.provenance())
    old = store.recorded(key) or {}
    rows, tables = store.rows(key) if old.get("design") == "rounds" else ([], {})
    if rows:  # the visits of a rounds cell before its deaths stay in its record (a later run resumes from them)
        result = {**{k: old[k] for k in ("schema", "design", "visits", "rounds", "metrics") if k in old}, **result}
    path = store.write(key, cell.config, result, rows, tables)
    print(f"{name}: {describe(result)} -> {path}", flush=True)
    log_to_mlflow(cell, path, result)
    return "error", True


def _version(result: dict | None) -> tuple | None:
    """What changes when a record is written: its id, and in the rounds design its visits and status."""
    if result is None:
        return None
    return result.get("record_id"), len(result.get("visits") or []), result.get("status")


def write_record(store: CellStore, key: str, cell: Cell, result: Result, rows: tuple[list, dict]) -> Path:
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


def log_to_mlflow(cell: Cell, path: Path, result: Result) -> None:
    if not cell.tracking.enabled:
        return
    try:
        log_record(cell.tracking.uri, cell.study, path, cell.config, result)
    except Exception as e:  # the record on disk stands; the next run of this cell logs it
        print(f"warning: MLflow logging to {cell.tracking.uri} failed ({type(e).__name__}: {e}); "
              f"the record is on disk and will be logged on the next run", file=sys.stderr)


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
        with cell_lock(store, session, cell, key) as locked:
            if locked:  # backfills MLflow if a crash came between record and log; else its writer logs it
                log_to_mlflow(cell, store.path(key), done)
        return done["status"], False
    with cell_lock(store, session, cell, key) as locked:
        if not locked:
            print(f"{name}: another process is measuring it ({store.path(key)}), skipped", flush=True)
            return "busy", False
        done = None if cell.force else store.finished(key)
        if done is not None:  # finished by another worker between the first look and the lock
            print(f"{name}: done already ({store.path(key)}), skipped; force=true re-runs it", flush=True)
            log_to_mlflow(cell, store.path(key), done)
            return done["status"], False
        twin = None if cell.force or not cell.reuse_twins else store.twin(key)
        if twin is not None:
            result = store.adopt(key, twin, cell.config)
            print(f"{name}: the same cell was measured in study {twin.parent.name} ({twin}); its record is reused "
                  f"-> {store.path(key)}", flush=True)
            log_to_mlflow(cell, store.path(key), result)
            return result["status"], False
        if failed_earlier(store, key, name):
            return "error", False
        deaths = store.deaths(key)
        if deaths and not isolation.is_child_for(key):
            return measure_in_child(cell, session, store, key, deaths)
        try:
            result, path = _measure_and_write(cell, session, store, key)
        finally:
            loading.release()  # the allocator's cached blocks: between cells the GPU holds the weights alone
        print(f"{name}: {describe(result)} -> {path}", flush=True)
        log_to_mlflow(cell, path, result)
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
    return result, write_record(store, key, cell, result, (reps, tables))
