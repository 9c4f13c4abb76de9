"""MLflow, the browsable copy of the records (the records on disk are the source of truth): one run per
record, and the report's run. Shared by `run` (records) and `report`."""
from __future__ import annotations

import csv
import logging
import math
import os
import statistics
import time
from datetime import datetime
from pathlib import Path

from ..core.config import flatten


def quiet() -> None:
    """MLflow, alembic and SQLAlchemy log at WARNING and show no progress bars: a run prints one line a cell."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (configures its loggers on import; quiet them after)
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def client(uri: str):
    quiet()
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


# The UI opens an experiment of this kind on its runs table (untagged, MLflow 3 guesses GenAI and opens an
# empty traces overview).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(mlflow_client, uri: str, name: str) -> str:
    """The experiment's id, created if needed (a sqlite store keeps its artifacts beside the database). Safe
    when several workers create it at once: the losers of the race read the winner's."""
    from mlflow.exceptions import MlflowException
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the cwd
        location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts" / name).as_uri()
    try:
        return mlflow_client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
    except MlflowException as e:
        exp = mlflow_client.get_experiment_by_name(name)
        if exp is None or e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return exp.experiment_id


def key_metrics(record_dir: Path) -> dict:
    """The results table's headline numbers, named with their units (latency_median_s, decode_median_tok_s,
    power_median_w, energy_per_token_j, ...): the columns a reviewer sorts the runs table by."""
    from .rows import KEY_METRICS, row_from_record
    row = row_from_record(record_dir)
    return {k: float(row[k]) for k in KEY_METRICS
            if isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) and math.isfinite(row[k])}


def numeric_metrics(result: dict) -> dict:
    """Every finite number of the result's metrics, memory, model, perplexity and power sections."""
    sections = {k: result.get(k) or {} for k in ("metrics", "memory", "model", "perplexity", "power")}
    out = {}
    for k, v in flatten(sections, sep="_").items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k.replace("metrics_", "", 1)] = float(v)
    return out


def log_record(uri: str, study: str, record_dir: Path, config: dict, result: dict) -> str:
    """Log one record as an MLflow run, unless a finished run for this record id is there already.
    Unfinished runs of the same cell (a crash mid-logging) are deleted first. Returns the run id."""
    from mlflow.entities import Metric, Param

    from .record import run_name
    mlflow = client(uri)
    exp_id = experiment_id(mlflow, uri, study)
    cell_hash, record_id = result["cell_hash"], result["record_id"]
    for run in mlflow.search_runs([exp_id], f"tags.cell_hash = '{cell_hash}'"):
        if run.data.tags.get("record_id") == record_id and run.info.status == "FINISHED":
            return run.info.run_id
        if run.info.status != "FINISHED":
            mlflow.delete_run(run.info.run_id)
    prov = result.get("provenance", {})
    tags = {"mlflow.runName": run_name(config), "cell_hash": cell_hash, "record_id": record_id,
            "status": result["status"], "git_sha": str(prov.get("git_sha")), "git_dirty": str(prov.get("git_dirty")),
            "host": str(prov.get("host")), "device": result.get("device", ""),
            "record_dir": str(record_dir.resolve())}
    start_ms, end_ms = _cell_times(result)
    run_id = mlflow.create_run(exp_id, start_time=start_ms, run_name=run_name(config), tags=tags).info.run_id
    params = [Param(k[:250], str(v)[:6000]) for k, v in flatten(config).items()]
    params += [Param(f"prepared.{k}"[:250], str(v)[:6000]) for k, v in flatten(result.get("prepared") or {}).items()
               if k not in ("model", "quant") and not k.startswith(("model.", "quant."))]  # those are the config's
    ts = end_ms
    metrics = [Metric(k, v, ts, 0) for k, v in {**numeric_metrics(result), **key_metrics(record_dir)}.items()]
    reps = _read_reps(record_dir)
    for step, rep in enumerate(reps):  # every timed repetition in order (all visits of a rounds cell)
        for k in ("latency_s", "token_throughput_tps", "ttft_s", "decode_tps"):
            metrics.append(Metric(f"rep_{k}", float(rep[k]), ts, step))
    metrics += _round_metrics(reps, ts)
    for i in range(0, len(params), 100):
        mlflow.log_batch(run_id, params=params[i:i + 100])
    for i in range(0, len(metrics), 500):
        mlflow.log_batch(run_id, metrics=metrics[i:i + 500])
    mlflow.log_artifacts(run_id, str(record_dir), artifact_path="record")
    mlflow.set_terminated(run_id, "FINISHED", end_time=end_ms)
    return run_id


def _round_metrics(reps: list[dict], ts: int) -> list:
    """The rounds design: each round's value (the median of its visit's repetitions) as a metric step, so the UI
    draws a cell's rounds as a line (round_latency_s, round_token_throughput_tps)."""
    from mlflow.entities import Metric
    by_round: dict[int, list[dict]] = {}
    for rep in reps:
        if rep.get("round"):
            by_round.setdefault(int(rep["round"]), []).append(rep)
    return [Metric(f"round_{k}", statistics.median(float(r[k]) for r in rs), ts, n)
            for n, rs in sorted(by_round.items()) for k in ("latency_s", "token_throughput_tps")]


def _cell_times(result: dict) -> tuple[int, int]:
    """The cell's own start and end (ms since the epoch), so the UI's Duration is the cell's, not the logging's."""
    try:
        start = datetime.strptime(result["started_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (KeyError, ValueError):
        start = time.time() - float(result.get("cell_seconds") or 0.0)
    return int(start * 1000), int((start + float(result.get("cell_seconds") or 0.0)) * 1000)


def _read_reps(record_dir: Path) -> list[dict]:
    p = record_dir / "reps.csv"
    if not p.is_file():
        return []
    with open(p, newline="") as f:
        return list(csv.DictReader(f))
