"""A tiny real pipeline through DVC (run, no-op re-run, push/pull, figures from pulled records, the report in
MLflow), and `make reproduce` in a fresh clone from the shipped records."""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from artifact.models import checkpoints
from conftest import REPO, TINY, sh

BIN = Path(sys.executable).parent


def read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, models_dir, data_dir):
    """A git + DVC project running one real experiment (precision_sweep, smoke, shrunk) and the report. Its models/
    starts with the session's converted GGUF (the conversion is tested there and in the fresh clone below): the
    quantize stage finds it ready, and DVC versions it."""
    root = tmp_path_factory.mktemp("pipeline")
    shutil.copytree(models_dir / "smollm2-135m", root / "models" / "smollm2-135m")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "PATH": f"{BIN}:{os.environ['PATH']}", "ARTIFACT_DATA_DIR": str(data_dir),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    shrink = " ".join(["quant=fp32,int8", *TINY, "rounds=2", "processes=2", "models_dir=models",
                       f"tracking.uri=sqlite:///{root / 'mlflow.db'}"])
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "data": {"cmd": "python -m artifact.data --manifest traces/data.json", "outs": ["traces/data.json"]},
        "quantize": {"cmd": "python -m artifact.quantize --profile smoke", "outs": [{"models": {"persist": True}}]},
        "experiment": {"cmd": f"python -m artifact.reproduce --profile smoke --no-report precision_sweep -- {shrink}",
                       "deps": ["traces/data.json", "models"],
                       "outs": [{"traces/precision_sweep": {"persist": True}}]},
        "report": {"cmd": "python -m artifact.report --profile smoke", "deps": ["traces/precision_sweep"],
                   "outs": [{"paper": {"cache": False, "persist": True}}]}}}))
    sh("git init -q && git config user.email t@t && git config user.name t && dvc init -q && "
       f"dvc remote add -d store {root / 'remote'}", root, env)
    first = sh(f"{BIN}/dvc repro", root, env)
    second = sh(f"{BIN}/dvc repro", root, env)
    return root, env, first, second


def test_pipeline_runs_then_does_nothing_the_second_time(pipeline):
    root, _, first, second = pipeline
    assert "Running stage 'experiment'" in first.stdout and "[round 1/1, visit 2/2]" in first.stdout
    # processes=2: the 2 rounds in 2 passes, each a fresh process per load group (two precisions: two groups),
    # the second pass with the groups in reversed order; each pass measures one round
    assert "pass 1 of 2\n" in first.stdout and "pass 2 of 2 (the load groups in reversed order)" in first.stdout
    assert "[round 2/" not in first.stdout
    assert "Running stage" not in second.stdout and "Data and pipelines are up to date" in second.stdout
    records = sorted((root / "traces" / "precision_sweep").glob("*/result.json"))
    assert len(records) == 4
    plan = json.loads((root / "traces" / "precision_sweep" / "PLAN.json").read_text())
    assert plan["profile"] == "smoke" and plan["cells"] == 4


def test_results_table_and_figure_data_equal_the_records(pipeline):
    root = pipeline[0]
    rows = read(root / "paper" / "smoke" / "results.csv")
    assert len(rows) == 4 and {r["quant"] for r in rows} == {"fp32", "int8"}
    points = read(root / "paper" / "smoke" / "figures" / "precision_sweep.csv")
    for row in rows:
        result = json.loads((root / row["record"] / "result.json").read_text())
        median = result["metrics"]["latency_s"]["median"]
        assert float(row["latency_median_s"]) == pytest.approx(median, rel=1e-5)
        assert float(row["weights_mib"]) == pytest.approx(result["model"]["weight_bytes"] / 2**20, rel=1e-5)
        assert row["power_median_w"] == "" and row["power_status"] == "no sensor"  # absent, never zero
        drawn = [p for p in points if p["record"] == row["record"] and p["panel"] == "latency_median_s"]
        assert len(drawn) == 1 and float(drawn[0]["value"]) == pytest.approx(median, rel=1e-5)
        interval = result["metrics"]["latency_s"]["interval"]  # rounds: the error bar is the interval of the median
        assert result["rounds"]["done"] == 2 and interval["method"] == "min-max over rounds"
        assert float(drawn[0]["low"]) == pytest.approx(interval["low"], rel=1e-5)
        assert float(drawn[0]["high"]) == pytest.approx(interval["high"], rel=1e-5)
        assert drawn[0]["error"] == "" and row["design"] == "rounds" and row["rounds"] == "2"
        assert len(result["rounds"]["group_runs"]) == 2 and "2 rounds in 2 processes" in row["interval"]
    series = {p["series"] for p in points if p["panel"] == "throughput_median_tok_s"}
    assert series == {"fp32, batch_size=1", "fp32, batch_size=2", "int8, batch_size=1", "int8, batch_size=2"}
    power = [p for p in points if p["panel"] == "power_median_w"]
    assert power and all(p["value"] == "" for p in power)
    for ext in ("pdf", "png"):
        assert (root / "paper" / "smoke" / "figures" / f"precision_sweep.{ext}").stat().st_size > 10_000


def test_figures_rebuild_from_the_archive_alone_and_from_the_results_table(pipeline, tmp_path):
    """No model and no torch: the report only reads. The profile's archive of raw records alone, with no traces/,
    rebuilds the same files byte for byte; the committed results table alone gives the same drawn data."""
    root, env = pipeline[0], pipeline[1]
    probe = ("import sys; from artifact.report.__main__ import main; rc = main(sys.argv[1:]); "
             "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, "
             "'report imported a model stack'; "
             "sys.exit(rc)")
    shipped = root / "paper" / "smoke"
    assert (shipped / "records.tar.xz").stat().st_size < 50_000  # four records, compressed
    replay = tmp_path / "replay"
    shutil.copytree(root / "paper", replay / "paper")
    out = sh([sys.executable, "-c", probe, "--no-mlflow", "--replay"], replay, env)  # no traces/ here
    assert "report from 4 records in paper/smoke/records.tar.xz" in out.stdout
    for f in sorted(p for p in shipped.rglob("*") if p.is_file()):
        assert (replay / "paper" / "smoke" / f.relative_to(shipped)).read_bytes() == f.read_bytes(), f
    assert not (replay / "traces").exists()
    table_only = tmp_path / "table-only"
    (table_only / "paper" / "smoke").mkdir(parents=True)
    shutil.copy(shipped / "results.csv", table_only / "paper" / "smoke" / "results.csv")
    out = sh([sys.executable, "-c", probe, "--no-mlflow"], table_only, env)
    assert "report from paper/smoke/results.csv (no records)" in out.stdout
    drawn = "paper/smoke/figures/precision_sweep.csv"
    assert read(table_only / drawn) == read(root / drawn)
    assert not (table_only / "paper" / "smoke" / "tables" / "models_table.md").is_file()  # no such records
    assert "power_modes_table" in (table_only / "paper" / "smoke" / "index.md").read_text()
    assert "[smoke](smoke/index.md)" in (table_only / "paper" / "index.md").read_text()


def test_the_quantize_stage_versions_models_and_the_records_name_their_provenance(pipeline):
    root = pipeline[0]
    assert "Running stage 'quantize'" in pipeline[2].stdout
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["quantize"]
    [out] = lock["outs"]
    assert out["path"] == "models" and out["md5"].endswith(".dir") and out["nfiles"] >= 5
    prov = checkpoints.provenance_of(root / "models" / "smollm2-135m")  # provenance.json with build.json
    assert prov["kind"] == "gguf-conversion" and "built_at" in prov
    for rec in (root / "traces" / "precision_sweep").glob("*/result.json"):
        assert json.loads(rec.read_text())["prepared"] == prov


def test_push_then_pull_restores_the_records_and_the_models(pipeline):
    root, env = pipeline[0], pipeline[1]
    sh(f"{BIN}/dvc push -q", root, env)
    before = sorted(p.relative_to(root) for p in (root / "traces").rglob("result.json"))
    weights = (root / "models" / "smollm2-135m" / "model.safetensors").read_bytes()
    shutil.rmtree(root / "traces")
    shutil.rmtree(root / "models")
    shutil.rmtree(root / ".dvc" / "cache")
    sh(f"{BIN}/dvc pull -q", root, env)
    assert sorted(p.relative_to(root) for p in (root / "traces").rglob("result.json")) == before
    assert (root / "models" / "smollm2-135m" / "model.safetensors").read_bytes() == weights
    assert "Data and pipelines are up to date" in sh(f"{BIN}/dvc repro", root, env).stdout


def test_a_fresh_clone_reproduces_from_the_shipped_records_and_keeps_the_lock(tmp_path, data_dir):
    """What `make reproduce` does in a fresh clone on this kind of host: the shipped records of every profile are
    restored into traces/ (none is measured again), the models are converted again, and dvc.lock, params.yaml and
    paper/ come out exactly as committed. On a host of another CPU model the smoke cells are new ones (the hardware
    is in their identity): measuring them is right there, and the lock changes by design."""
    from artifact.core.hardware import hardware_class
    shipped = {r["hardware"] for r in read(REPO / "paper" / "smoke" / "results.csv")}
    if shipped != {hardware_class("cpu")}:
        pytest.skip(f"the shipped smoke records were measured on {shipped}, this host is {hardware_class('cpu')!r}")
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(REPO), str(clone)], tmp_path)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
           "PATH": f"{BIN}:{os.environ['PATH']}", "ARTIFACT_DATA_DIR": str(data_dir),
           "MLFLOW_TRACKING_URI": f"sqlite:///{clone / 'mlflow.db'}"}
    sh(f"{BIN}/python -m artifact.experiments --set-profile auto", clone, env)
    out = sh(f"{BIN}/dvc repro report", clone, env, timeout=1500)
    assert "shipped records restored into traces/" in out.stdout and "[round " not in out.stdout  # nothing measured
    changed = sh(["git", "status", "--porcelain", "--", "dvc.lock", "params.yaml", "paper"], clone).stdout
    assert changed == "", f"a fresh clone changed what it should reproduce:\n{changed}"


def test_report_run_in_mlflow_holds_the_outputs(pipeline):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{pipeline[0] / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("report").experiment_id])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"figures", "tables", "results.csv", "claims.md"} <= names
    assert {a.path for a in client.list_artifacts(run.info.run_id, "figures")} >= {"figures/precision_sweep.pdf"}
