"""End-to-end: `python -m artifact.run` on the real embedded model, records and MLflow store checked."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import statistics
import subprocess
import time

import pytest
import yaml

from conftest import FAST
from fakes import crashing_cell_env


def load_record(path):
    result = json.loads((path / "result.json").read_text())
    config = yaml.safe_load((path / "config.yaml").read_text())
    with open(path / "reps.csv", newline="") as f:
        reps = list(csv.DictReader(f))
    return result, config, reps


def test_one_cell_writes_a_complete_record_and_mlflow_run(cli):
    """The default design: a plain run measures its cell in rounds (3 visits), each round's value the median of
    its visit's repetitions."""
    out = cli.run("batch_size=2", "seq_len=24", "warmup=1", "min_reps=2", "min_seconds=0",
                  "ppl.max_tokens=300", "ppl.window=128", "ppl.stride=64", "canary_seconds=0.2",
                  env=cli.env(HF_TOKEN="hf_SECRET_never_logged"))
    assert out.returncode == 0, out.stderr
    [rec] = cli.records()
    result, config, reps = load_record(rec)
    assert result["status"] == "ok" and result["cell_hash"] == rec.name
    assert config["batch_size"] == 2 and config["model"]["name"] == "smollm2-135m"
    # exactly the tokens asked for: 12 in + 12 out per prompt, counted per repetition
    assert result["tokens"] == {"in_len": 12, "out_len": 12, "seq_len": 24, "batch_size": 2,
                                "generated_per_rep": 24, "checked": True}
    assert result["prompts"]["distinct_prompts"] == 2
    assert result["design"] == "rounds" and result["rounds"]["done"] == result["metrics"]["latency_s"]["n"] == 3
    assert len(reps) == sum(v["reps"] for v in result["visits"]) == 6
    assert sorted({int(r["round"]) for r in reps}) == [1, 2, 3]
    for r in reps:
        lat, ttft, dec = float(r["latency_s"]), float(r["ttft_s"]), float(r["decode_s"])
        assert 0 < ttft < lat and math.isclose(ttft + dec, lat, rel_tol=1e-9)
        assert math.isclose(float(r["token_throughput_tps"]), 2 * 24 / lat, rel_tol=1e-9)  # the paper's T_P
        assert int(r["new_tokens"]) == 24
    per_round = sorted(statistics.median(float(r["latency_s"]) for r in reps if r["round"] == n) for n in "123")
    latency = result["metrics"]["latency_s"]
    assert (latency["min"], latency["median"], latency["max"]) == pytest.approx(per_round)
    assert (latency["interval"]["low"], latency["interval"]["high"]) == pytest.approx((per_round[0], per_round[2]))
    assert latency["interval"]["coverage"] == 0.75 and latency["p90"] is None
    assert result["memory"]["memory_kind"].startswith("process RSS")
    assert result["memory"]["incremental_peak_bytes"] >= 0
    assert result["model"]["weights"] == "real" and result["model"]["params"] == 134515008
    ppl = result["perplexity"]
    assert ppl["corpus_tokens"] == 300 and ppl["window"] == 128 and ppl["stride"] == 64
    assert 5 < ppl["perplexity"] < 200
    # no sensor: power is absent with a reason, never a number
    assert result["power"]["status"] == "no sensor"
    assert not any(isinstance(v, (int, float)) for v in result["power"].values())
    prov = result["provenance"]
    assert prov["git_sha"] and "torch" in prov["packages"] and prov["cpu_cores_logical"] >= 1
    # MLflow: one run in the study's experiment, carrying the same numbers and the record files
    from mlflow.tracking import MlflowClient
    [run] = cli.mlflow_runs()
    assert run.info.run_name == "smollm2-135m/fp32/bs2/sl24" and run.info.status == "FINISHED"
    assert run.data.tags["cell_hash"] == rec.name and run.data.tags["git_sha"] == prov["git_sha"]
    assert run.data.params["batch_size"] == "2" and run.data.params["quant.name"] == "fp32"
    assert run.data.metrics["latency_s_median"] == pytest.approx(result["metrics"]["latency_s"]["median"])
    assert run.data.metrics["perplexity_perplexity"] == pytest.approx(ppl["perplexity"])
    history = MlflowClient(cli.uri).get_metric_history(run.info.run_id, "round_latency_s")  # one step per round
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [statistics.median(float(r["latency_s"]) for r in reps if int(r["round"]) == n) for n in (1, 2, 3)])
    # how the checkpoint under models/ was made: in the record and in MLflow
    assert result["prepared"]["kind"] == "gguf-conversion" and result["model"]["source"].endswith("/smollm2-135m")
    assert run.data.params["prepared.kind"] == "gguf-conversion"
    assert run.data.params["prepared.tool_version"] == result["prepared"]["tool_version"]
    arts = {a.path for a in MlflowClient(cli.uri).list_artifacts(run.info.run_id, "record")}
    assert arts == {"record/config.yaml", "record/result.json", "record/reps.csv"}
    # the token never reaches a record or the store
    assert "hf_SECRET" not in "".join(p.read_text() for p in rec.iterdir())
    assert "hf_SECRET" not in json.dumps({**run.data.params, **run.data.tags})


def test_finished_cell_is_skipped_and_force_reruns_it(cli):
    assert cli.run(*FAST).returncode == 0
    [rec] = cli.records()
    first = json.loads((rec / "result.json").read_text())["record_id"]
    again = cli.run(*FAST)
    assert again.returncode == 0 and "done already" in again.stdout
    assert json.loads((rec / "result.json").read_text())["record_id"] == first
    assert len(cli.mlflow_runs()) == 1
    forced = cli.run(*FAST, "force=true")
    assert forced.returncode == 0 and "done already" not in forced.stdout
    assert cli.records() == [rec]
    assert json.loads((rec / "result.json").read_text())["record_id"] != first


def test_a_cell_measured_in_another_study_is_reused_not_measured_again_unless_reuse_twins_is_false(cli):
    assert cli.run(*FAST, "study=first").returncode == 0
    [measured] = cli.records("first")
    again = cli.run(*FAST, "study=second")
    assert again.returncode == 0 and "the same cell was measured in study first" in again.stdout
    [reused] = cli.records("second")
    assert reused.name == measured.name
    first, second = (json.loads((r / "result.json").read_text()) for r in (measured, reused))
    assert second.pop("same_record_as") == "first" and second == first  # one measurement, one record_id
    assert (reused / "reps.csv").read_bytes() == (measured / "reps.csv").read_bytes()
    assert yaml.safe_load((reused / "config.yaml").read_text())["study"] == "second"
    assert [r.data.tags["record_id"] for r in cli.mlflow_runs("second")] == [first["record_id"]]
    forced = cli.run(*FAST, "study=second", "force=true")
    assert forced.returncode == 0 and "measured in study" not in forced.stdout
    assert json.loads((reused / "result.json").read_text())["record_id"] != first["record_id"]
    rerun = cli.run(*FAST, "study=second_run", "reuse_twins=false")  # a second run kept as its own study
    assert rerun.returncode == 0 and "measured in study" not in rerun.stdout
    [remeasured] = cli.records("second_run")
    result = json.loads((remeasured / "result.json").read_text())
    assert remeasured.name == measured.name and "same_record_as" not in result
    assert result["record_id"] != first["record_id"]


def test_every_precision_in_one_sweep(cli):
    out = cli.run("-m", "quant=fp32,fp16,bf16,int8,int4,int4-fp4", "batch_size=2", "seq_len=12", "warmup=0",
                  "min_reps=2", "min_seconds=0", "ppl=off", "study=precisions", "design=back-to-back")
    assert out.returncode == 0, out.stderr
    results = {}
    for rec in cli.records("precisions"):
        result, config, _ = load_record(rec)
        assert result["status"] == "ok", result["message"]
        assert result["tokens"]["checked"] and result["tokens"]["generated_per_rep"] == 12
        results[config["quant"]["name"]] = result["model"]
    assert set(results) == {"fp32", "fp16", "bf16", "int8", "int4", "int4-fp4"}
    w = {q: m["weight_bytes"] for q, m in results.items()}
    assert w["int8"] < w["fp16"] == w["bf16"] < w["fp32"]
    # int4 keeps its unquantized modules (SmolLM2's large tied embedding) in float32 on the CPU
    assert w["int4"] == w["int4-fp4"] < w["fp32"]
    assert "Linear8bitLt" in results["int8"]["layer_types"]
    assert "Linear4bit" in results["int4"]["layer_types"] and "Linear4bit" in results["int4-fp4"]["layer_types"]
    assert results["fp16"]["dtype"] == "float16" and results["int4"]["dtype"] == "float32"  # auto on the CPU
    names = sorted(r.info.run_name for r in cli.mlflow_runs("precisions"))
    assert names == sorted(f"smollm2-135m/{q}/bs2/sl12" for q in results)


def test_longbench_int8_cell(cli):
    out = cli.run("quant=int8", "batch_size=2", "seq_len=32", "workload=longbench", "warmup=0", "min_reps=1",
                  "min_seconds=0", "ppl=off", "canary_seconds=0.2", "rounds=2")  # int8 in rounds: no empty_cache
    assert out.returncode == 0, out.stderr
    [rec] = cli.records()
    result, _, _ = load_record(rec)
    assert result["prompts"]["workload"] == "longbench" and result["prompts"]["distinct_prompts"] == 2
    assert result["tokens"]["in_len"] == 16 and result["tokens"]["generated_per_rep"] == 32


def test_model_is_reused_within_a_sweep(cli):
    out = cli.run("-m", "batch_size=1,2", *[a for a in FAST if not a.startswith("batch_size")])
    assert out.returncode == 0, out.stderr
    reused = sorted(load_record(r)[0]["model"]["reused_from_previous_cell"] for r in cli.records())
    assert reused == [False, True]


def test_synthetic_weights_build_the_architecture_without_download(cli):
    out = cli.run(*FAST, "model.weights=synthetic", "model.arch.num_hidden_layers=2", "model.params=null")
    assert out.returncode == 0, out.stderr
    [rec] = cli.records()
    result, _, _ = load_record(rec)
    assert result["status"] == "ok" and result["model"]["weights"] == "synthetic"
    assert result["model"]["source"].startswith("synthetic")
    assert result["perplexity"] == {"status": "not measured", "reason": "synthetic weights"}
    # embeddings (tied) + 2 decoder layers + final norm of SmolLM2's shapes
    layer = 2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576  # q,o + k,v + gate,up,down + norms
    assert result["model"]["params"] == 49152 * 576 + 2 * layer + 576


def test_a_cell_that_kills_its_process_is_recorded_as_an_error_and_the_sweep_goes_on(cli, tmp_path):
    crashing = cli.env(**crashing_cell_env(tmp_path / "fake_crash", 2))
    sweep = ["-m", "batch_size=2,1", "seq_len=16", "warmup=0", "min_reps=1", "min_seconds=0", "ppl=off",
             "study=crash", "design=back-to-back"]

    def records() -> dict[int, dict]:
        return {yaml.safe_load((r / "config.yaml").read_text())["batch_size"]:
                json.loads((r / "result.json").read_text()) for r in cli.records("crash")}

    first = cli.run(*sweep, env=crashing)  # dies in its first cell: nothing after it runs
    assert first.returncode == 1 and "ops.cu" in first.stderr
    assert records() == {}
    second = cli.run(*sweep, env=crashing)  # the cell runs in a child, which dies too: an error, and on
    assert second.returncode == 1, second.stderr
    assert second.stdout.count("measuring it in a child process") == 1  # the child measures it, hands it on to none
    assert "died measuring it" in second.stdout
    got = records()
    assert got[1]["status"] == "ok"
    assert got[2]["status"] == "error" and "exit status 1" in got[2]["message"] and "ops.cu" in got[2]["message"]
    assert got[2]["stderr_tail"][-1].startswith("Error invalid argument") and len(got[2]["process_deaths"]) == 2
    assert {r.data.tags["cell_hash"] for r in cli.mlflow_runs("crash")} == {got[1]["cell_hash"], got[2]["cell_hash"]}
    third = cli.run(*sweep)  # the fault gone: measured (in a child), the rest skipped
    assert third.returncode == 0, third.stderr
    assert records()[2]["status"] == "ok" and third.stdout.count("done already") == 1
    assert third.stdout.count("measuring it in a child process") == 1
    assert [p.name for p in (cli.traces / "crash").iterdir() if p.name.startswith(".")] == []


def test_sigkill_mid_sweep_then_resume_leaves_no_duplicate_or_corrupt_record(cli):
    sweep = ["-m", "batch_size=1,2,3,4", "seq_len=16", "warmup=0", "min_reps=3", "min_seconds=1.5", "ppl=off",
             "study=killed", "design=back-to-back"]
    proc = subprocess.Popen(cli.args(*sweep), cwd=cli.root, env=cli.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(cli.records("killed")) < 1:
        time.sleep(0.2)
    time.sleep(0.5)  # now inside a later cell
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = cli.records("killed")
    assert 1 <= len(done_before) < 4
    for rec in done_before:  # whatever is there is whole
        assert load_record(rec)[0]["status"] == "ok"
    out = cli.run(*sweep)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("done already") == len(done_before)
    records = cli.records("killed")
    assert len(records) == 4
    assert sorted(load_record(r)[1]["batch_size"] for r in records) == [1, 2, 3, 4]
    leftovers = [p.name for p in (cli.traces / "killed").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    runs = cli.mlflow_runs("killed")
    assert sorted(r.data.tags["cell_hash"] for r in runs if r.info.status == "FINISHED") == [r.name for r in records]
