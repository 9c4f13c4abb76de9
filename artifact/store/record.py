"""The run record on disk, the source of truth (artifact.store.tracking copies it to MLflow).

traces/<study>/<cell-hash>/ holds config.yaml, result.json (artifact.core.schema.Result), reps.csv and, with a power
meter, power.csv and marks.csv. It appears in one rename (artifact.core.atomic),
so a crash leaves either a whole record or none; a lock file per cell keeps two processes (or
machines sharing the folder) from running the same cell at once. A lock left by a process of this host that died
is taken over, and the death is noted beside it (.<hash>.died) until the cell finishes: artifact.run measures
such a cell in a child process, so that a cell that kills its process cannot stop a sweep twice."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path

import psutil
import yaml

from .. import __version__
from ..core.atomic import atomic_folder, died_here, host_tag, recover_replaced

SCHEMA = 1            # records of the back-to-back design (result.json without `schema`)
ROUNDS_SCHEMA = 2     # records of the rounds design: every visit kept (artifact.sweep.rounds)
FINISHED = ("ok", "oom")  # statuses that count as done; an error is retried on the next run
# When the experiment of `make reproduce` began (epoch seconds), set for its sweeps (artifact.sweep.experiments): an
# error recorded since then is not retried by its later passes or by its reruns after a death, only by the next command
FAILED_SINCE_ENV = "ARTIFACT_FAILED_SINCE"
# Config keys that do not change a result, so they are not part of a cell's identity.
NOT_IDENTITY = ("study", "profile", "force", "reuse_twins", "batch_ladder", "traces_dir", "models_dir", "data_dir",
                "tracking", "device", "cells", "rounds", "canary_seconds", "spread")
# Knobs of the rounds design: not in a back-to-back cell's identity, so those keep the hashes they had before it.
ROUNDS_KNOBS = ("design", "warmup_tokens")
# Power-mode keys that describe rather than set the mode.
NOT_POWER_IDENTITY = ("dry_run", "clocks")


def cell_identity(config: dict, device: str, hardware: str) -> dict:
    """What makes a cell: every composed setting that can change its result, and the code that measures it.

    In: model, quant, workload, ppl, meter, power (less dry_run and its `clocks` label), the run knobs
    (batch_size, seq_len, out_fraction, warmup, min_reps, min_seconds, max_reps, seed), the device kind (cpu or
    cuda, not which GPU), the hardware class (artifact.core.hardware: the GPU's or CPU's model name, so an
    H100 record never stands for an H200 cell of a mixed cluster sharing traces/), and `code`: the package
    version and the record schema number (SCHEMA), so a change of either makes every cell new. Out
    (NOT_IDENTITY): where things are written or read (traces_dir, models_dir, data_dir, tracking), the grouping
    labels (study, profile), and how a sweep runs (force, batch_ladder, a launcher job's cells, the number of
    rounds: a cell holding more rounds than asked is complete, and more rounds add to it, and the canary). The
    design is in: a rounds cell carries `design` and `warmup_tokens` and record schema ROUNDS_SCHEMA; a
    back-to-back cell carries neither and schema SCHEMA, as before the rounds design existed. A null
    `quant.gptq` (every non-GPTQ quant) is left out, so that records made before GPTQ existed keep their
    identity. Records are found by the 16-hex-digit sha256 of this dict (`cell_hash`): equal identity, same
    record, never measured twice."""
    rounds = config.get("design", "back-to-back") == "rounds"
    ident = {k: v for k, v in config.items() if k not in NOT_IDENTITY and (rounds or k not in ROUNDS_KNOBS)}
    ident["power"] = {k: v for k, v in ident["power"].items() if k not in NOT_POWER_IDENTITY}
    if ident["quant"].get("gptq", "set") is None:
        ident["quant"] = {k: v for k, v in ident["quant"].items() if k != "gptq"}
    ident["device_kind"] = device.split(":")[0]
    ident["hardware"] = hardware
    ident["code"] = {"package": __version__, "record_schema": ROUNDS_SCHEMA if rounds else SCHEMA}
    return ident


def cell_hash(config: dict, device: str, hardware: str) -> str:
    blob = json.dumps(cell_identity(config, device, hardware), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ladder_key(config: dict, device: str, hardware: str) -> str:
    """The identity of a cell less its batch size: the cells of one batch ladder share it."""
    return cell_hash({k: v for k, v in config.items() if k != "batch_size"}, device, hardware)


def run_name(cfg: dict) -> str:
    return f"{cfg['model']['name']}/{cfg['quant']['name']}/bs{cfg['batch_size']}/sl{cfg['seq_len']}"


class CellStore:
    """Records of one study: lookup, locking and atomic writes."""

    def __init__(self, traces_dir: str | Path, study: str):
        self.root = Path(traces_dir) / study
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep_leftovers()

    def _sweep_leftovers(self) -> None:
        """Remove half-written temp folders left by processes of this host that died (e.g. SIGKILL), and finish the
        record replacements they died in."""
        recover_replaced(self.root)
        for p in self.root.glob(".tmp-*"):
            try:
                _, _, host, pid, _ = p.name.split("-", 4)
            except ValueError:
                continue
            if died_here(host, pid):
                shutil.rmtree(p, ignore_errors=True)

    def path(self, cell_hash: str) -> Path:
        return self.root / cell_hash

    def finished(self, cell_hash: str, rounds: int = 0, spread: tuple[int, int] | None = None) -> dict | None:
        """The result of a finished record (status ok or oom; a record of the rounds design with at least `rounds`
        rounds, from as many processes as `spread` asks: `too_few_processes`), else None."""
        return _finished_at(self.path(cell_hash) / "result.json", rounds, spread)

    def recorded(self, cell_hash: str) -> dict | None:
        """The result of the cell's record whatever its status (an error too), else None."""
        return _result_at(self.path(cell_hash) / "result.json")

    def failed_since(self, cell_hash: str, since: float) -> dict | None:
        """The result of the cell's record if it is an error written at or after `since` (epoch seconds), else None."""
        path = self.path(cell_hash) / "result.json"
        result = _result_at(path)
        try:
            return result if result and result.get("status") == "error" and path.stat().st_mtime >= since else None
        except OSError:  # gone between the two looks (replaced by another process's record)
            return None

    def twin(self, cell_hash: str, rounds: int = 0, spread: tuple[int, int] | None = None) -> Path | None:
        """A finished record of the same cell in another study of this traces folder: the same identity is the
        same measurement (a batch sweep's bs 32 is the precision sweep's fp16 cell), so it is reused, not re-run."""
        for other in sorted(self.root.parent.glob(f"*/{cell_hash}/result.json")):
            if other.parent.parent != self.root and _finished_at(other, rounds, spread) is not None:
                return other.parent
        return None

    def adopt(self, cell_hash: str, source: Path, config: dict, mark: dict | None = None) -> dict:
        """Copy the record `source` into this study, atomically: its measurement files as they are, the config
        with this study's labels, and the result with `mark` added: by default `same_record_as` (a twin: the study
        it was measured in); scripts/ship_rerun.py marks a record moved into its study with `moved_from`."""
        mark = {"same_record_as": source.parent.name} if mark is None else mark
        result = {**json.loads((source / "result.json").read_text()), **mark}
        with self._new_record(cell_hash, config, result) as tmp:
            for f in source.iterdir():
                if f.name not in ("config.yaml", "result.json"):
                    shutil.copy2(f, tmp / f.name)
        return result

    def ooms(self) -> list[tuple[dict, dict]]:
        """(config, result) of every record with status oom in this study."""
        out = []
        for result_path in sorted(self.root.glob("*/result.json")):
            try:
                result = json.loads(result_path.read_text())
                if result.get("status") == "oom":
                    out.append((yaml.safe_load((result_path.parent / "config.yaml").read_text()), result))
            except (OSError, ValueError, yaml.YAMLError):
                continue
        return out

    # -------------------------------------------------------------- locking
    def _lock_path(self, cell_hash: str) -> Path:
        return self.root / f".{cell_hash}.lock"

    def try_lock(self, cell_hash: str) -> bool:
        """Take the cell's lock; a lock left by a dead process on this host is taken over, and that process's
        death while holding it is noted (`deaths`) unless the cell is finished (it died after its record)."""
        lock = self._lock_path(cell_hash)
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                stale, dead_owner = self._stale(lock)
                if not stale:
                    return False
                if dead_owner is not None and dead_owner.get("visiting", True) and self.finished(cell_hash) is None:
                    with open(self._died_path(cell_hash), "a") as f:
                        f.write(json.dumps({**dead_owner, "found": time.time()}) + "\n")
                lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return True
        return False

    @staticmethod
    def _stale(lock: Path) -> tuple[bool, dict | None]:
        """Whether the lock may be taken over, and its owner where that was another process of this host that
        died holding it."""
        try:
            owner = json.loads(lock.read_text())
        except (OSError, ValueError):
            return True, None  # unreadable: a writer died between create and write, before any cell work
        if owner.get("host") != socket.gethostname():
            return False, None  # another machine's: we cannot tell, so we respect it
        if owner.get("pid") == os.getpid():
            return True, None
        dead = not psutil.pid_exists(owner.get("pid", -1))
        return dead, owner if dead else None

    def mark_visiting(self, cell_hash: str, visiting: bool) -> None:
        """Say in this process's lock whether the cell is being measured now. A process of the rounds design holds
        the locks of its whole load group but measures one cell at a time: a death is noted (`deaths`) only for the
        cell it was visiting. A lock without the mark (the back-to-back design) counts as visiting."""
        lock = self._lock_path(cell_hash)
        owner = json.loads(lock.read_text())
        tmp = lock.with_name(lock.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**owner, "visiting": visiting}))
        os.replace(tmp, lock)

    def rows(self, cell_hash: str) -> tuple[list[dict], dict[str, list[dict]]]:
        """reps.csv's rows and the further tables (power.csv, marks.csv) of the cell's record, as written (strings):
        a resumed rounds cell adds its new visits to them."""
        folder, tables = self.path(cell_hash), {}
        for f in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            with open(f, newline="") as fh:
                tables[f.name] = list(csv.DictReader(fh))
        return tables.pop("reps.csv", []), tables

    def unlock(self, cell_hash: str) -> None:
        """Release the cell's lock if this process holds it (a child it handed the cell to may have died
        holding its own)."""
        lock = self._lock_path(cell_hash)
        with contextlib.suppress(OSError, ValueError):
            owner = json.loads(lock.read_text())
            if owner.get("host") == socket.gethostname() and owner.get("pid") == os.getpid():
                lock.unlink(missing_ok=True)

    def _died_path(self, cell_hash: str) -> Path:
        return self.root / f".{cell_hash}.died"

    def deaths(self, cell_hash: str) -> list[dict]:
        """The processes (host, pid, since, found) that died holding this cell's lock since it last finished."""
        with contextlib.suppress(OSError):
            return [json.loads(line) for line in self._died_path(cell_hash).read_text().splitlines() if line.strip()]
        return []

    # -------------------------------------------------------------- writing
    def write(self, cell_hash: str, config: dict, result: dict, reps: list[dict],
              tables: dict[str, list[dict]] | None = None) -> Path:
        """Write the record in a temp folder and rename it into place (replacing an older record).
        `tables` are further CSV files (the power trace and phase marks)."""
        with self._new_record(cell_hash, config, result) as tmp:
            for name, rows in {"reps.csv": reps, **(tables or {})}.items():
                if rows:
                    with open(tmp / name, "w", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=list(rows[0]))
                        w.writeheader()
                        w.writerows(rows)
        return self.path(cell_hash)

    @contextlib.contextmanager
    def _new_record(self, cell_hash: str, config: dict, result: dict):
        """A temp folder holding config.yaml and result.json, renamed into place (replacing an older record) when
        the caller has added the rest; the temp name says which host and process write it (_sweep_leftovers)."""
        host = host_tag()
        with atomic_folder(self.path(cell_hash), prefix=f".tmp-{cell_hash}-{host}-{os.getpid()}-") as tmp:
            (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            (tmp / "result.json").write_text(json.dumps(_finite(result), indent=2, sort_keys=False))
            yield tmp
        if result.get("status") in FINISHED:
            self._died_path(cell_hash).unlink(missing_ok=True)


def settle_dead_locks(traces_dir: str | Path, study: str = "*") -> int:
    """Take over every cell lock of the study (default: every study) under traces_dir left by a dead process of
    this host, noting each death as a later run here would, and return how many. A sweep that died is then known
    to have died (artifact.reproduce runs it again), and records packed for another machine (another host name)
    carry the death, which makes that machine measure the cell in a child process, not a lock it must respect."""
    settled = 0
    for lock in sorted(Path(traces_dir).glob(f"{study}/.*.lock")):
        store, cell = CellStore(traces_dir, lock.parent.name), lock.name[1:-len(".lock")]
        if store.try_lock(cell):
            store.unlock(cell)
            settled += 1
    return settled


def _result_at(result: Path) -> dict | None:
    """The result in this result.json, or None where there is none (or it cannot be read)."""
    try:
        return json.loads(result.read_text())
    except (OSError, ValueError):
        return None


def too_few_processes(result: dict | None, spread: tuple[int, int] | None) -> tuple[int, int] | None:
    """(rounds, processes) of a rounds record whose rounds came from fewer processes than `spread` asks, else None.
    spread = (R, P): a cell's R rounds spread over P fresh processes, pass k asking ceil(k x R / P) of them
    (artifact.sweep.experiments.passes), so d rounds take at least min(P, floor((d - 1) x P / R) + 1) processes.
    A record measured under a smaller spread (all its rounds in one process, say) is not one of this design: it is
    measured again. A record a cut run left part-way is never one of these, and resumes."""
    if not spread or not result or result.get("design") != "rounds" or result.get("status") != "ok":
        return None
    total, processes = spread
    info = result.get("rounds") or {}
    done, runs = int(info.get("done") or 0), len(info.get("group_runs") or [])
    needed = min(processes, (done - 1) * processes // total + 1) if done else 0
    return (done, runs) if runs < needed else None


def _finished_at(result: Path, rounds: int = 0, spread: tuple[int, int] | None = None) -> dict | None:
    """The result in this result.json if its status is finished (ok or oom; in the rounds design, ok with at least
    `rounds` rounds from as many processes as `spread` asks), else None."""
    data = _result_at(result)
    if data is None or data.get("status") not in FINISHED:
        return None
    if data["status"] == "ok" and (data.get("rounds") or {}).get("done", rounds) < rounds:
        return None
    return None if too_few_processes(data, spread) else data


def _finite(obj):
    """JSON has no NaN/inf: write them as null (absent), never as a number."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
