"""How a sweep is cut into launcher jobs and what the driver passes them (artifact.sweep.launch); the Ray runs
themselves are in test_scaleout.py."""
from __future__ import annotations

from pathlib import Path

from artifact.sweep import launch
from conftest import cell


def test_one_launcher_job_per_model_group_with_the_other_swept_keys_as_its_cells():
    lines = ["model=phi2,llama31-8b", "quant=fp16", "batch_size=1,32", "seq_len=128,512"]
    choices = [["model=phi2", "model=llama31-8b"], ["quant=fp16"], ["batch_size=1", "batch_size=32"],
               ["seq_len=128", "seq_len=512"]]
    assert launch.group_jobs(lines, choices) == [
        "model=phi2,llama31-8b", "quant=fp16",
        "cells='batch_size=1 seq_len=128;batch_size=1 seq_len=512;batch_size=32 seq_len=128;batch_size=32 seq_len=512'"]
    assert launch.group_jobs(lines[:2], choices[:2]) == lines[:2]  # nothing to group


def test_the_driver_passes_absolute_paths_and_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = cell("traces_dir=traces", "models_dir=models", "tracking.uri=sqlite:///mlflow.db")
    out = dict(o.split("=", 1) for o in launch.driver_overrides(c))
    assert out["traces_dir"] == str(tmp_path / "traces") and out["models_dir"] == str(tmp_path / "models")
    assert Path(out["data_dir"]).is_absolute()
    assert out["tracking.uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert launch.absolute_uri("http://10.0.0.1:5000") == "http://10.0.0.1:5000"
    assert launch.replace_overrides(["traces_dir=a", "seed=1"], ["traces_dir=/x"]) == ["seed=1", "traces_dir=/x"]
