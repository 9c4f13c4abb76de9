"""Bad input: one line naming the bad value and what is allowed, exit 2, no traceback, no record."""
from __future__ import annotations

import shutil

import pytest

from conftest import FAST

CASES = [
    (["model=gpt5"], "model='gpt5' is not available; use one of: llama31-8b"),
    (["quant=int3"], "quant='int3' is not available; use one of: bf16"),
    (["workload=squad"], "workload='squad' is not available; use one of: longbench, wikitext2"),
    (["batch_size=0"], "batch_size=0 is not allowed"),
    (["batch_size=-3"], "batch_size=-3 is not allowed"),
    (["batch_size=four"], "Value 'four' of type 'str' could not be converted to Integer"),
    (["seq_len=3"], "seq_len=3 is too small"),
    (["seq_len=9000"], "seq_len=9000 is above smollm2-135m's context of 8192 tokens"),
    (["model=phi2", "seq_len=4096", "model.weights=synthetic", "ppl=off"],
     "seq_len=4096 is above phi2's context of 2048"),
    (["out_fraction=1.0"], "out_fraction=1.0 is not allowed; use a number strictly between 0 and 1"),
    (["out_fraction=0"], "out_fraction=0.0 is not allowed"),
    (["model.source=local", "model.path=/no/such/model"], "model.path='/no/such/model' does not exist"),
    (["model.weights=synthetic", "ppl=stride"], "ppl is not applicable with model.weights=synthetic"),
    (["-m", "batch_size=1,0"], "batch_size=0 is not allowed"),  # a sweep is checked whole before any cell runs
    (["-m", "quant=fp32,int5"], "quant='int5' is not available"),
    (["device=cuda:0"], "no CUDA device is visible"),
    (["meter=nvml"], "meter=nvml reads a CUDA GPU's power, but the cell runs on device=cpu"),  # not a traceback
    (["design=sequential"], "design='sequential' is not allowed; use one of: rounds, back-to-back"),
    (["rounds=0"], "rounds=0, canary_seconds=1.0, warmup_tokens=16: need rounds >= 1"),
    (["spread=[2,3]"], "spread=[2, 3] is not allowed; use null or [rounds, processes] with 1 <= processes <= rounds"),
    (["workload=longbench", "batch_size=190", "seq_len=2048"], "more than the"),
    # GPTQ: CUDA only, no fallback; settings checked before anything is quantized
    (["quant=gptq-int4"], "quant=gptq-int4 needs a CUDA GPU"),
    (["quant=gptq-int4-autogptq"], "quant=gptq-int4-autogptq needs a CUDA GPU"),
    (["-m", "quant=fp32,gptq-int4"], "needs a CUDA GPU"),
    (["quant=gptq-int4", "quant.gptq.group_size=100"],
     "quant.gptq.group_size=100 is not allowed; use -1 or a power of two"),
    (["quant=gptq-int4", "quant.gptq.bits=5"], "quant.gptq.bits=5 is not allowed; use one of: 2, 3, 4, 8"),
    (["quant=gptq-int4", "quant.gptq.tool=optimum"],
     "quant.gptq.tool='optimum' is not allowed; use one of: gptqmodel, auto-gptq"),
    (["quant=gptq-int4", "quant.gptq.calibration.corpus=wikitext2"], "is the perplexity test text"),
    (["quant=gptq-int4", "quant.gptq.calibration.corpus=c4"], "workload='c4' is not available"),
    (["quant=fp32", "quant.gptq.bits=4"], "quant.gptq.bits=4 sets a field of a section the chosen group does not have"),
]


def assert_one_line_error(out, expected: str, cli) -> None:
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    assert cli.records() == [] and not cli.db.exists()


@pytest.mark.parametrize("overrides,expected", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input(cli, overrides, expected):
    assert_one_line_error(cli.run(*FAST, *overrides), expected, cli)


def test_a_hub_model_neither_cached_nor_reachable_is_one_line(cli, tmp_path):
    """No hub access (offline) and an empty cache: one line naming the hub id, the cache and the ways out, not an
    error cell holding transformers' OSError."""
    out = cli.run(*FAST, "model=phi2", "quant=int4",
                  env=cli.env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf")))
    assert_one_line_error(out, f"model=phi2: its weights (microsoft/phi-2) are not in the Hugging Face cache "
                               f"({tmp_path / 'hf'}) and the hub cannot be reached (HF_HUB_OFFLINE is set)", cli)
    assert "model.weights=synthetic ppl=off" in out.stderr


def test_missing_corpus(cli, tmp_path):
    out = cli.run(*FAST, env=cli.env(ARTIFACT_DATA_DIR=str(tmp_path / "empty")))
    assert_one_line_error(out, "wiki.test.raw is missing; run `make data`", cli)


def test_corpus_with_wrong_checksum(cli, tmp_path, data_dir):
    bad = tmp_path / "bad"
    shutil.copytree(data_dir, bad)
    f = bad / "wikitext-2-raw-v1" / "wiki.test.raw"
    f.chmod(0o644)
    f.write_bytes(f.read_bytes().replace(b"Boulter", b"Bolter", 1))
    out = cli.run(*FAST, env=cli.env(ARTIFACT_DATA_DIR=str(bad)))
    assert_one_line_error(out, "expected bbf94c53", cli)


def test_quantization_where_bitsandbytes_cannot_run(cli, tmp_path):
    # A stand-in that fails to import exactly as bitsandbytes does on a platform it has no build for.
    fake = tmp_path / "no_bnb" / "bitsandbytes"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no bitsandbytes build for this platform (test stand-in)')\n")
    out = cli.run(*FAST, "quant=int8", env=cli.env(PYTHONPATH=str(fake.parent)))
    assert_one_line_error(out, "quant=int8 needs bitsandbytes, which cannot be imported here", cli)
