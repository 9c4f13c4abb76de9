"""The run record on disk (the source of truth) and its copy in MLflow.

traces/<study>/<cell-hash>/ holds config.yaml, result.json and reps.csv. It appears in one rename,
so a crash leaves either a whole record or none; a lock file per cell keeps two processes (or
machines sharing the folder) from running the same cell at once."""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import yaml

from . import __version__

SCHEMA = 1
FINISHED = ("ok", "oom")  # statuses that count as done; an error is retried on the next run
# Config keys that do not change a result, so they are not part of a cell's identity.
NOT_IDENTITY = ("study", "profile", "force", "traces_dir", "models_dir", "data_dir", "tracking", "device")

log = logging.getLogger(__name__)


def cell_identity(cfg: dict, device: str) -> dict:
    ident = {k: v for k, v in cfg.items() if k not in NOT_IDENTITY}
    ident["power"] = {k: v for k, v in ident["power"].items() if k != "dry_run"}
    if ident["quant"].get("gptq", "set") is None:  # added for GPTQ: absent, records made before stay valid
        ident["quant"] = {k: v for k, v in ident["quant"].items() if k != "gptq"}
    ident["device_kind"] = device.split(":")[0]
    ident["code"] = {"package": __version__, "record_schema": SCHEMA}
    return ident


def cell_hash(cfg: dict, device: str) -> str:
    blob = json.dumps(cell_identity(cfg, device), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_name(cfg: dict) -> str:
    return f"{cfg['model']['name']}/{cfg['quant']['name']}/bs{cfg['batch_size']}/sl{cfg['seq_len']}"


class CellStore:
    """Records of one study: lookup, locking and atomic writes."""

    def __init__(self, traces_dir: str | Path, study: str):
        self.root = Path(traces_dir) / study
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep_leftovers()

    def _sweep_leftovers(self) -> None:
        """Remove half-written temp folders left by processes of this host that died (e.g. SIGKILL)."""
        host = socket.gethostname().replace("-", "_")
        for p in self.root.glob(".tmp-*"):
            try:
                _, _, p_host, pid, _ = p.name.split("-", 4)
            except ValueError:
                continue
            if p_host == host and not psutil.pid_exists(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    def path(self, h: str) -> Path:
        return self.root / h

    def finished(self, h: str) -> dict | None:
        """The result of a finished record (status ok or oom), else None."""
        result = self.path(h) / "result.json"
        try:
            data = json.loads(result.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("status") in FINISHED else None

    # -------------------------------------------------------------- locking
    def _lock_path(self, h: str) -> Path:
        return self.root / f".{h}.lock"

    def try_lock(self, h: str) -> bool:
        """Take the cell's lock; a lock left by a dead process on this host is taken over."""
        lock = self._lock_path(h)
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale(lock):
                    lock.unlink(missing_ok=True)
                    continue
                return False
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return True
        return False

    @staticmethod
    def _stale(lock: Path) -> bool:
        try:
            owner = json.loads(lock.read_text())
        except (OSError, ValueError):
            return True  # unreadable: a writer died between create and write
        if owner.get("host") != socket.gethostname():
            return False  # another machine's: we cannot tell, so we respect it
        return owner.get("pid") == os.getpid() or not psutil.pid_exists(owner.get("pid", -1))

    def unlock(self, h: str) -> None:
        self._lock_path(h).unlink(missing_ok=True)

    # -------------------------------------------------------------- writing
    def write(self, h: str, config: dict, result: dict, reps: list[dict],
              tables: dict[str, list[dict]] | None = None) -> Path:
        """Write the record in a temp folder and rename it into place (replacing an older record).
        `tables` are further CSV files (the power trace and phase marks)."""
        host = socket.gethostname().replace("-", "_")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{h}-{host}-{os.getpid()}-", dir=self.root))
        try:
            (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            (tmp / "result.json").write_text(json.dumps(_finite(result), indent=2, sort_keys=False))
            for name, rows in {"reps.csv": reps, **(tables or {})}.items():
                if rows:
                    with open(tmp / name, "w", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=list(rows[0]))
                        w.writeheader()
                        w.writerows(rows)
            for p in tmp.iterdir():  # make the contents durable before the rename publishes them
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
            final = self.path(h)
            if final.exists():
                trash = self.root / f".trash-{h}-{uuid.uuid4().hex[:8]}"
                os.rename(final, trash)
                os.rename(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(tmp, final)
            return final
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _finite(obj):
    """JSON has no NaN/inf: write them as null (absent), never as a number."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# ------------------------------------------------------------------ MLflow

def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    """Nested keys joined by `sep`; an empty dict stays a leaf (it is a value, e.g. `power.expect: {}`)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out


def numeric_metrics(result: dict) -> dict:
    """Every finite number of the result's metrics, memory, model and perplexity sections."""
    sections = {k: result.get(k) or {} for k in ("metrics", "memory", "model", "perplexity", "power")}
    out = {}
    for k, v in flatten(sections, sep="_").items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k.replace("metrics_", "", 1)] = float(v)
    return out


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (configures its loggers on import; quiet them after)
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _experiment(client, uri: str, study: str) -> str:
    exp = client.get_experiment_by_name(study)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the cwd
        location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / study).as_uri()
    return client.create_experiment(study, artifact_location=location)


def log_to_mlflow(uri: str, study: str, record_dir: Path, config: dict, result: dict) -> str:
    """Log one record as an MLflow run, unless a finished run for this record id is there already.
    Unfinished runs of the same cell (a crash mid-logging) are deleted first. Returns the run id."""
    _quiet_mlflow()
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    exp_id = _experiment(client, uri, study)
    h, rid = result["cell_hash"], result["record_id"]
    for run in client.search_runs([exp_id], f"tags.cell_hash = '{h}'"):
        if run.data.tags.get("record_id") == rid and run.info.status == "FINISHED":
            return run.info.run_id
        if run.info.status != "FINISHED":
            client.delete_run(run.info.run_id)
    prov = result.get("provenance", {})
    tags = {"mlflow.runName": run_name(config), "cell_hash": h, "record_id": rid, "status": result["status"],
            "git_sha": str(prov.get("git_sha")), "git_dirty": str(prov.get("git_dirty")),
            "host": str(prov.get("host")), "device": result.get("device", ""),
            "record_dir": str(record_dir.resolve())}
    run = client.create_run(exp_id, run_name=run_name(config), tags=tags)
    run_id = run.info.run_id
    params = [Param(k[:250], str(v)[:6000]) for k, v in flatten(config).items()]
    params += [Param(f"prepared.{k}"[:250], str(v)[:6000]) for k, v in flatten(result.get("prepared") or {}).items()
               if k not in ("model", "quant") and not k.startswith(("model.", "quant."))]  # those are the config's
    ts = int(time.time() * 1000)
    metrics = [Metric(k, v, ts, 0) for k, v in numeric_metrics(result).items()]
    for rep in _read_reps(record_dir):
        for k in ("latency_s", "token_throughput_tps", "ttft_s", "decode_tps"):
            metrics.append(Metric(f"rep_{k}", float(rep[k]), ts, int(rep["rep"])))
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    for i in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[i:i + 500])
    client.log_artifacts(run_id, str(record_dir), artifact_path="record")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _read_reps(record_dir: Path) -> list[dict]:
    p = record_dir / "reps.csv"
    if not p.is_file():
        return []
    with open(p, newline="") as f:
        return list(csv.DictReader(f))
