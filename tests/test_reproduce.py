"""The reproduction path: experiments as config, sweeps in passes (resumed, restarted after a cell that ended its
process), replay of the shipped profiles, and the report's tables, figures and claims on crafted records. The tiny
DVC pipeline is in test_pipeline.py."""
from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from artifact.report import claims, results
from artifact.store.record import too_few_processes
from artifact.sweep import experiments
from conftest import REPO, TINY, sh
from fakes import crashing_cell_env

# ------------------------------------------------------------------ experiments as config

def test_every_experiment_composes_in_every_profile():
    """Each profile's sweep of each experiment composes through Hydra and passes validation (every swept value)."""
    from artifact.core.config import compose, validate
    composed = set()  # a composition that two plans share is checked once (Hydra takes about 0.2 s for each)
    for name in experiments.names():
        for profile in experiments.PROFILES:
            p = experiments.plan(name, profile)
            assert p.study == name  # the DVC stage's output folder is traces/<experiment>
            if p.skip:
                continue
            base = [o.split(",")[0] if "," in o and not o.endswith("]") else o for o in p.overrides]
            for i, o in enumerate(p.overrides):
                key, values = o.split("=", 1)
                for v in values.split(","):
                    overrides = tuple(base[:i] + [f"{key}={v}"] + base[i + 1:])
                    if overrides in composed:
                        continue
                    composed.add(overrides)
                    cfg = compose(list(overrides))
                    validate(cfg)
                    assert cfg.profile == profile


def test_dvc_pipeline_has_one_stage_per_experiment():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert spec["experiment"]["foreach"] == experiments.names()
    assert spec["report"]["deps"][:len(experiments.names())] == [f"traces/{n}" for n in experiments.names()]


def test_reproduce_lists_the_plan_and_rejects_a_bad_profile():
    out = subprocess.run([sys.executable, "-m", "artifact.reproduce", "--list"], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.startswith("profile smoke: no CUDA GPU and not a Jetson")
    assert "power_sweep: skipped: power modes are set with nvpmodel" in out.stdout
    assert ("; in 2 passes, each a fresh process per load group, asking rounds=2, 3 (every second pass with the "
            "load groups in reversed order)") in out.stdout  # precision_sweep: four precisions, four load groups
    bad = subprocess.run([sys.executable, "-m", "artifact.reproduce", "--profile", "orin"], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: profile='orin' is not allowed; use auto or one of: paper, gpu, smoke")
    bad = subprocess.run([sys.executable, "-m", "artifact.reproduce", "--profile", "smoke", "--list", "batch_sweep",
                          "--", "processes=0"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: processes='0' is not allowed; give a whole number >= 1 (fresh processes each load group's rounds "
        "are spread over)")


def test_force_starts_the_records_over_in_the_first_pass_only():
    """force=true with rounds over processes: the first pass starts every record over, the later passes add their
    rounds to it (a force in every pass would leave only the last pass's rounds, measured in one process)."""
    p = experiments.plan("batch_sweep", "gpu", ["model=phi2", "force=true"])
    sweeps = experiments.passes(p)
    assert [s.rounds for s in sweeps] == [1, 2, 3, 4, 5]
    assert ["force=true" in s.overrides for s in sweeps] == [True, False, False, False, False]


def _pass_states(total: int, processes: int) -> set[tuple[int, int]]:
    """Every (rounds done, processes) a record can hold under passes(), runs cut anywhere and resumed: pass k asks
    ceil(k x R / P) rounds, the first pass asking more than the record holds measures it in a fresh process, which
    adds rounds one by one up to that pass's ask (a cut can fall after any of them), and the next pass goes on."""
    asked = [-(-k * total // processes) for k in range(1, processes + 1)]
    states, todo = set(), [(0, 0)]
    while todo:
        done, runs = todo.pop()
        want = next((a for a in asked if a > done), None)  # the pass that measures it next (None: complete)
        for got in range(done + 1, (want or done) + 1):
            if (got, runs + 1) not in states:
                states.add((got, runs + 1))
                todo.append((got, runs + 1))
    return states


@pytest.mark.parametrize("total,processes", [(5, 5), (3, 2), (5, 2), (3, 3), (5, 1), (7, 3)])
def test_a_record_of_the_spread_resumes_and_one_from_fewer_processes_is_measured_again(total, processes):
    """The rule that `make reproduce` applies to a finished record (artifact.store.record.too_few_processes): no state
    that passes() can leave, cut at any round and resumed, counts as too few processes (it resumes), and a record
    whose rounds all came from one process (the H200 records of issue 22 before `processes: 5`) does where P > 1."""
    spread = (total, processes)
    rec = lambda done, runs: {"design": "rounds", "status": "ok",  # noqa: E731
                              "rounds": {"done": done, "group_runs": [f"run{i}" for i in range(runs)]}}
    for done, runs in _pass_states(total, processes):
        assert too_few_processes(rec(done, runs), spread) is None, (done, runs)
    assert (too_few_processes(rec(total, 1), spread) is None) == (processes == 1)
    assert too_few_processes(rec(total, 1), None) is None  # no spread asked (python -m artifact.run): no check
    assert too_few_processes({**rec(total, 1), "design": "back-to-back"}, spread) is None  # another design: kept


def test_records_from_fewer_processes_than_the_spread_are_measured_again(tmp_path, models_dir, data_dir):
    """Records of 2 rounds in one process, then reproduce with processes=2: each is measured again, its 2 rounds in
    2 processes, saying so; a third run measures nothing and starts no process for the pass its records hold."""
    traces = tmp_path / "traces"

    def reproduce(processes: int) -> str:
        return sh([sys.executable, "-m", "artifact.reproduce", "--profile", "smoke", "--no-report", "--traces-dir",
                   str(traces), "batch_sweep", "--", *TINY, "workload=wikitext2", "rounds=2", f"processes={processes}",
                   "canary_seconds=0", f"models_dir={models_dir}", "tracking.enabled=false"], tmp_path,
                  {**os.environ, "ARTIFACT_DATA_DIR": str(data_dir)}).stdout

    def processes_per_record() -> list[int]:
        return sorted(len(json.loads(r.read_text())["rounds"]["group_runs"])
                      for r in (traces / "batch_sweep").glob("*/result.json"))

    reproduce(1)
    assert processes_per_record() == [1, 1]
    again = reproduce(2)
    assert again.count("its 2 rounds came from 1 process(es), fewer than spread=[2, 2] asks") == 2, again[-3000:]
    assert processes_per_record() == [2, 2]
    third = reproduce(2)  # pass 1 is not started (its cells hold their rounds); the last runs and skips both cells
    assert "pass 1 of 2: every cell holds the 1 round(s) it asks already, skipped" in third, third[-3000:]
    assert third.count("done already") == 2 and "[round " not in third


def test_a_cell_that_ends_its_process_costs_its_sweep_one_restart_not_the_rest(tmp_path, models_dir, data_dir):
    """reproduce runs a sweep again when its process died measuring a cell (the fake makes bs 2 and bs 3 end it);
    each rerun measures the cell it died on in a child process, so every other cell is measured, and leaves a cell
    that failed in an earlier rerun be: each crashing cell gets one child process, not one per rerun."""
    env = {**os.environ, "ARTIFACT_DATA_DIR": str(data_dir), **crashing_cell_env(tmp_path / "hook", 2, 3)}
    traces = tmp_path / "traces"
    out = subprocess.run([sys.executable, "-m", "artifact.reproduce", "--profile", "smoke", "--no-report",
                          "--traces-dir", str(traces), "precision_sweep", "--", "quant=fp32", "batch_size=3,2,1",
                          "seq_len=8", "rounds=1", "warmup=0", "min_reps=1", "min_seconds=0", "ppl=off",
                          "canary_seconds=0",
                          f"models_dir={models_dir}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 1, out.stderr[-3000:]  # two cells failed, and say so
    assert out.stdout.count("running it again") == 2  # one restart per cell that ended the process
    assert out.stdout.count("measuring it in a child process") == 2
    died = re.findall(r"^(\S+): process \d+ on \S+ died measuring it", out.stdout, re.M)  # in the visits' order
    assert sorted(died) == ["smollm2-135m/fp32/bs2/sl8", "smollm2-135m/fp32/bs3/sl8"], out.stdout
    assert out.stdout.count("failed earlier in this experiment") == 1  # the second rerun leaves the first one be
    assert f"{died[0]}: failed earlier in this experiment" in out.stdout
    got = {yaml.safe_load((r.parent / "config.yaml").read_text())["batch_size"]: json.loads(r.read_text())
           for r in (traces / "precision_sweep").glob("*/result.json")}
    assert {k: v["status"] for k, v in got.items()} == {1: "ok", 2: "error", 3: "error"}
    assert all("ops.cu" in got[b]["message"] for b in (2, 3))
    assert sorted(p.name for p in (traces / "precision_sweep").glob(".*.lock")) == []


def test_every_shipped_profile_replays_byte_identical_from_its_archive(tmp_path):
    """make replay's promise on the repository itself: each paper/<profile>/ (the gpu profile's H100 records too)
    rebuilds from its records.tar.xz alone, every committed file byte for byte, with no traces/ and no remote."""
    shipped = subprocess.run(["git", "ls-files", "paper"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    profiles = sorted({Path(f).parts[1] for f in shipped if f.endswith("/records.tar.xz")})
    assert {"smoke", "gpu"} <= set(profiles)
    shutil.copytree(REPO / "paper", tmp_path / "paper")
    for f in (tmp_path / "paper").rglob("*"):  # everything but the archives is rebuilt from scratch
        if f.is_file() and f.name != "records.tar.xz":
            f.unlink()
    out = subprocess.run([sys.executable, "-m", "artifact.report", "--replay", "--no-mlflow",
                          "--traces-dir", str(tmp_path / "no-traces")], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    for profile in profiles:
        assert f"profile {profile}: report from" in out.stdout and "records in paper/" in out.stdout
    for f in shipped:
        assert (tmp_path / f).read_bytes() == (REPO / f).read_bytes(), f"{f} differs when replayed"


# ------------------------------------------------------------------ claims on crafted records

def craft(traces: Path, study: str, i: int, *, status="ok", host="cpu", **cell) -> None:
    """A minimal record folder with the fields the results table reads (crafted: no model ran)."""
    cfg = {"study": study, "profile": "paper" if host == "jetson" else "smoke", "batch_size": 1, "seq_len": 128,
           "model": {"name": "phi2", "weights": "real", "params": 2_779_683_840}, "quant": {"name": "fp16"},
           "workload": {"name": "wikitext2"}, "power": {"name": "maxn"}, "meter": {"name": "ina3221"}}
    metrics = {}
    for key in ("model", "quant", "power"):
        if key in cell:
            cfg[key]["name"] = cell.pop(key)
    cfg.update({k: cell.pop(k) for k in ("batch_size", "seq_len") if k in cell})
    if status == "ok":
        metrics = {"latency_s": {"median": cell.get("latency", 1.0), "std": 0.01, "n": 3},
                   "token_throughput_tps": {"median": cell.get("throughput", 100.0), "std": 1.0, "n": 3}}
    power = {"status": "ok", "timed": {"power_w": {"median": cell["power_w"]}},
             "energy": {"per_rep_j_median": cell.get("energy", 10.0)}} if "power_w" in cell else {"status": "no sensor"}
    if "gpu_uuid" in cell:
        power["meter"] = {"name": "nvml", "gpu_uuid": cell["gpu_uuid"], "gpu_pci": cell.get("pci"),
                          "gpu_pci_cuda": cell.get("pci")}
        power.setdefault("energy", {})["sampled_vs_counter_rel"] = cell.get("energy_check")
    result = {"cell_hash": f"{study}{i:04d}", "status": status, "device": "cuda", "hardware": cell.get("hardware"),
              "started_at": cell.get("started_at", "2026-11-24T00:00:00"), "cuda_visible_devices": cell.get("visible"),
              "gpu_uuid": cell.get("device_uuid"),
              "metrics": metrics, "memory": {"incremental_peak_bytes": cell.get("mem_mib", 100) * 2**20},
              "model": {"weight_bytes": cell.get("weights_mib", 500) * 2**20}, "power": power,
              "provenance": {"l4t_release": "R36.3" if host == "jetson" else None, "cpu_model": "test"}}
    if "rounds_gpus" in cell:  # rounds resumed on other machines (artifact.sweep.rounds.summarize)
        result.update(design="rounds", rounds={"done": len(cell["rounds_gpus"]), "gpu_uuids": cell["rounds_gpus"]})
    folder = traces / study / f"{study}{i:04d}"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "result.json").write_text(json.dumps(result))


def test_the_report_says_which_gpu_ran_each_cell(tmp_path):
    """Crafted records of a sweep over two GPUs of one host (no such host was lent): the per-profile index lists
    each GPU's cells, studies, start times and its energy agreement with its own counter."""
    from artifact.report.build import placement
    gpus = ["GPU-aaaa", "GPU-bbbb"]
    for i, (gpu, check, start, pci) in enumerate([(0, 0.002, "2026-11-24T10:00:00", "00000000:18:00"),
                                                  (1, -0.004, "2026-11-24T10:00:05", None),  # before the PCI check
                                                  (0, 0.03, "2026-11-24T10:01:00", "00000000:18:00")]):
        craft(tmp_path, "batch_sweep", i, batch_size=2 ** i, power_w=300, gpu_uuid=gpus[gpu], energy_check=check,
              visible=str(gpu), started_at=start, pci=pci)
    craft(tmp_path, "models_table", 0, status="oom")
    lines = placement(results.collect(tmp_path))
    assert lines[1] == "## Where the cells ran"
    assert lines[5] == ("| GPU-aaaa | test | 0 | 2 | batch_sweep (2) | 2026-11-24T10:00 to 2026-11-24T10:01 | "
                        "00000000:18:00: 2 of 2 | 1 of 2, worst +3.0% |")
    assert lines[6] == ("| GPU-bbbb | test | 1 | 1 | batch_sweep (1) | 2026-11-24T10:00 to 2026-11-24T10:00 | "
                        "not recorded | 1 of 1, worst -0.4% |")
    assert lines[7].startswith("\nCells that name no GPU: 1 ")
    assert placement([r for r in results.collect(tmp_path) if not r["gpu_uuid"]]) == []


def test_a_cell_whose_rounds_ran_on_two_gpus_counts_under_both(tmp_path):
    """Crafted: one cell's rounds ran on GPU-aaaa then GPU-bbbb (its meter the last process's, on bbbb), another cell
    on aaaa alone. Each GPU's row counts the shared cell; the energy check and PCI address count under bbbb only;
    a line says so; the caption names both GPUs for the model."""
    from artifact.report import build
    craft(tmp_path, "batch_sweep", 0, power_w=300, gpu_uuid="GPU-bbbb", energy_check=0.002, pci="00000000:18:00",
          rounds_gpus=["GPU-aaaa", "GPU-bbbb"], started_at="2026-11-24T10:00:00")
    craft(tmp_path, "batch_sweep", 1, batch_size=2, power_w=300, gpu_uuid="GPU-aaaa", energy_check=-0.004,
          pci="00000000:19:00", started_at="2026-11-24T10:01:00")
    rows = results.collect(tmp_path)
    assert [r["gpu_uuids"] for r in rows] == ["GPU-aaaa GPU-bbbb", None]
    lines = build.placement(rows)
    assert lines[5] == ("| GPU-aaaa | test | unset | 2 | batch_sweep (2) | 2026-11-24T10:00 to 2026-11-24T10:01 "
                        "| 00000000:19:00: 1 of 1 | 1 of 1, worst -0.4% |")
    assert lines[6] == ("| GPU-bbbb | test | unset | 1 | batch_sweep (1) | 2026-11-24T10:00 to 2026-11-24T10:00 "
                        "| 00000000:18:00: 1 of 1 | 1 of 1, worst +0.2% |")
    assert lines[7].startswith("\n1 cell had its rounds measured on several GPUs: it counts under every one")
    assert "phi2: aaaa, bbbb;" in build.machines(rows)


def test_time_md_sets_the_cells_measured_in_both_designs_side_by_side(tmp_path):
    """On the shipped gpu records: the Phi-2 batch sweep ran back to back and in rounds on H200s; time.md's second
    table has both designs over those 8 cells alone, with their seconds and the rounds design's cost against the
    other, each sum that of the records' own clocks (results.csv)."""
    from artifact.report.build import write_time
    with tarfile.open(REPO / "paper" / "gpu" / "records.tar.xz") as tar:
        tar.extractall(tmp_path, filter="data")
    rows = results.collect(tmp_path / "traces")
    write_time(rows, tmp_path)
    text = (tmp_path / "time.md").read_text()
    assert text == (REPO / "paper" / "gpu" / "time.md").read_text()
    both = text.split("## The same cells in both designs")[1].splitlines()
    phi2 = [r for r in rows if r["study"] == "batch_sweep" and r["model"] == "phi2" and r["hardware"] == "NVIDIA H200"
            and not r["same_record_as"]]
    cells = {design: sum(r["cell_s"] for r in phi2 if r["design"] == design)
             for design in ("back-to-back repetitions", "rounds")}
    records = {r["record"] for r in phi2 if r["design"] == "rounds"}
    visits = sum(v["record"] in records for v in results.read_rounds(REPO / "paper" / "gpu" / "rounds.csv"))
    most = experiments.profile_settings("gpu")["defaults"]["rounds"]  # each rounds cell holds 1 to that many rounds
    assert len(records) == 8 and 8 <= visits <= 8 * most
    b2b, rounds = (next(line.split(" | ") for line in both if line.startswith(f"| batch_sweep | {d} | NVIDIA H200"))
                   for d in cells)
    assert (b2b[3], b2b[4], b2b[5], b2b[-1]) == ("8", "8", f"{cells['back-to-back repetitions']:.1f}", "1.00x |")
    assert (rounds[3], rounds[4], rounds[5]) == ("8", str(visits), f"{cells['rounds']:.1f}")
    assert rounds[-1] == f"{cells['rounds'] / cells['back-to-back repetitions']:.2f}x |"


def test_an_unmetered_cell_still_names_the_gpu_it_ran_on(tmp_path):
    """A fit test runs with no meter, yet its record names its device's GPU (torch's UUID): on a host of several
    GPUs the placement table lists it under that GPU. The meter's UUID, where there is one, is the same GPU."""
    from artifact.report.build import placement
    craft(tmp_path, "models_table", 0, device_uuid="GPU-cccc", visible="2", started_at="2026-12-02T09:00:00")
    craft(tmp_path, "models_table", 1, status="oom", device_uuid="GPU-cccc", visible="2",
          started_at="2026-12-02T09:01:00")
    craft(tmp_path, "batch_sweep", 0, power_w=300, gpu_uuid="GPU-cccc", device_uuid="GPU-cccc", energy_check=0.001,
          visible="2", started_at="2026-12-02T09:02:00", pci="00000000:38:00")
    craft(tmp_path, "models_table", 2, status="oom")  # not run: out of memory by implication, on no GPU
    rows = results.collect(tmp_path)
    assert sorted(r["gpu_uuid"] or "" for r in rows) == ["", "GPU-cccc", "GPU-cccc", "GPU-cccc"]
    lines = placement(rows)
    assert lines[5] == ("| GPU-cccc | test | 2 | 3 | batch_sweep (1), models_table (2) | 2026-12-02T09:00 to "
                        "2026-12-02T09:02 | 00000000:38:00: 1 of 1 (2 not recorded) | 1 of 1, worst +0.1% |")
    assert lines[6].startswith("\nCells that name no GPU: 1 (not run: out of memory by implication")
    only_unmetered = placement([r for r in rows if r["study"] == "models_table"])
    assert only_unmetered[5].endswith("| not recorded | none checked |")


def test_a_run_over_two_gpus_reports_speed_up_efficiency_and_where_the_rest_went():
    """Rows as a sweep over two GPUs of one host writes them (crafted: no such host was lent). A later cell alone,
    and two lent machines one after the other (never at once), are not runs over several GPUs."""
    from artifact.report import spread

    def cell(gpu, start_s, cell_s, load_s=0.0, **extra):
        t = datetime(2026, 11, 24, 10, 0, 0) + timedelta(seconds=start_s)
        return {"gpu_uuid": gpu, "date": t.isoformat(), "cell_s": cell_s, "load_s": load_s, **extra}
    rows = [cell("GPU-a", 0, 100, 20), cell("GPU-a", 105, 50), cell("GPU-b", 10, 200, 30),
            cell("GPU-b", 60, 0, implied_by="x"), cell(None, 20, 5),  # OOM by implication; no GPU named
            cell("GPU-a", 1000, 80),  # after a pause of more than RUN_GAP_S: a run of one GPU
            cell("GPU-c", 2000, 100), cell("GPU-d", 2150, 100)]  # one machine after another
    [run] = spread.runs(rows)
    s = spread.summary(run)
    assert (s["span"], s["busy"], s["cells"]) == (210, 350, 3)
    assert s["speedup"] == pytest.approx(350 / 210) and s["efficiency"] == pytest.approx(350 / 420)
    assert s["gpus"]["GPU-a"] == {"cells": 2, "busy": 150, "load": 20, "lead": 0, "gaps": 5, "tail": 55}
    assert s["gpus"]["GPU-b"] == {"cells": 1, "busy": 200, "load": 30, "lead": 10, "gaps": 0, "tail": 0}
    text = spread.lines(rows)
    assert text[1] == "## Spread over 2 GPUs: the run from 2026-11-24T10:00"
    assert text[3].startswith("3 cell visits in 210 s of span; 350 s of visits, so speed-up 1.67 and efficiency 83%")
    assert text[7] == "| GPU-a | 2 | 150 | 20 | 0 | 5 | 55 |"
    fit = cell(None, 0, 10, cuda_visible_devices="1")  # an unmetered fit test names its GPU by index
    assert spread._cells([fit])[0]["gpu"] == "CUDA_VISIBLE_DEVICES=1"


def test_a_rounds_cell_counts_each_visit_where_and_when_it_ran():
    """A rounds-design cell (crafted rows) whose three rounds ran in three processes, the last on another GPU while
    a back-to-back cell ran on the first: its visits, not its first start plus its summed time, place it."""
    from artifact.report import spread
    t0 = datetime(2026, 12, 7, 17, 0, tzinfo=timezone.utc).timestamp()
    rounds_cell = {"record": "traces/batch_sweep/r", "gpu_uuid": "GPU-b", "cell_s": 90.0, "load_s": 40.0,
                   "date": datetime.fromtimestamp(t0, timezone.utc).isoformat()}
    visits = [{"record": "traces/batch_sweep/r", "started_at": t0 + start, "seconds": 10.0, "gpu_uuid": gpu}
              for start, gpu in [(0, "GPU-a"), (300, "GPU-a"), (600, "GPU-b")]]
    other = {"record": "traces/batch_sweep/o", "gpu_uuid": "GPU-a", "cell_s": 20.0, "load_s": 5.0,
             "date": datetime.fromtimestamp(t0 + 595, timezone.utc).isoformat()}
    assert [(c["gpu"], c["start"] - t0) for c in spread._cells([rounds_cell, other], visits)] == [
        ("GPU-a", 0), ("GPU-a", 300), ("GPU-a", 595), ("GPU-b", 600)]
    [run] = spread.runs([rounds_cell, other], visits)  # the first two visits are runs of one GPU
    assert spread.summary(run)["gpus"] == {
        "GPU-a": {"cells": 1, "busy": 20.0, "load": 5.0, "lead": 0.0, "gaps": 0.0, "tail": 0.0},
        "GPU-b": {"cells": 1, "busy": 10.0, "load": 0.0, "lead": 5.0, "gaps": 0.0, "tail": 5.0}}
    assert spread.runs([rounds_cell, other]) == []  # the cell's own start and length alone: never at once


def test_the_index_names_the_declared_cells_that_have_no_record(tmp_path):
    from artifact.report.build import not_measured
    for i, quant in enumerate(["fp32", "int8"]):
        craft(tmp_path, "models_table", i, model="smollm2-135m", quant=quant, batch_size=4, seq_len=16, power="none")
    missing = not_measured(experiments.plan("models_table", "smoke"), results.collect(tmp_path))
    assert missing == ["smollm2-135m/fp32/bs1/sl16", "smollm2-135m/fp16/bs1/sl16", "smollm2-135m/fp16/bs4/sl16",
                       "smollm2-135m/int8/bs1/sl16", "smollm2-135m/int4/bs1/sl16", "smollm2-135m/int4/bs4/sl16"]
    assert not_measured(experiments.plan("power_sweep", "smoke"), []) == []  # skipped off a Jetson: nothing is owed


def test_the_models_table_names_a_batch_that_failed_apart_from_fit_and_oom(tmp_path):
    """A fit test that ended with an error (bitsandbytes' LLM.int8 raised a CUDA launch error for Mistral-24B int8 at
    bs 128 on an H100) neither fits nor ran out of memory."""
    from artifact.report import tables
    for i, (bs, status) in enumerate([(1, "ok"), (8, "ok"), (32, "ok"), (128, "error")]):
        craft(tmp_path, "models_table", i, model="mistral-small-24b", quant="int8", batch_size=bs, status=status)
    head, [row] = tables.models({}, results.collect(tmp_path))
    line = dict(zip(head, row))
    assert line["largest batch that fits"] == 32 and line["smallest OOM batch"] == "no OOM"
    assert line["failed (error)"] == "128"
    assert line["batches tried"] == "1,8,32,128"


def test_cells_of_two_gpu_models_are_never_merged_in_a_table_claim_or_bar(tmp_path):
    """What fits depends on the GPU's memory: the shipped gpu profile holds H100 and H200 fit tests of one model,
    which must stay apart (two table rows, the claim naming the GPU, one bar each) and count as one declared cell."""
    import matplotlib.pyplot as plt

    from artifact.report import figures, tables
    from artifact.report.build import write_index
    cells = [("H100", 1, "ok"), ("H100", 8, "oom"), ("H200", 1, "ok"), ("H200", 8, "ok")]
    for i, (hw, bs, status) in enumerate(cells):
        craft(tmp_path, "models_table", i, model="r1-qwen-32b", batch_size=bs, status=status, hardware=hw)
    rows = results.collect(tmp_path)
    head, body = tables.models({}, rows)
    fit = {line[head.index("hardware")]: line[head.index("largest batch that fits")] for line in body}
    assert fit == {"H100": 1, "H200": 8}
    c7 = verdicts(tmp_path)["C7"]
    assert c7["verdict"] == "PASS"
    assert c7["measured"] == "r1-qwen-32b/fp16 sl128 on H100: fits up to bs 1, OOM from bs 8"
    fig, axes = plt.subplots(1, 1, squeeze=False)
    ok = [r for r in rows if r["batch_size"] == 1]
    figures.bars({"x": "model", "series": "quant", "panels": ["latency_median_s"]}, ok, axes.flat)
    assert len(axes.flat[0].patches) == 2  # side by side, not one over the other
    assert [t.get_text() for t in axes.flat[0].get_legend().get_texts()] == ["fp16, H100", "fp16, H200"]
    plt.close("all")
    folder = tmp_path / "paper" / "smoke"
    folder.mkdir(parents=True)
    for r in rows:
        r["profile"], r["model"], r["seq_len"], r["power_mode"] = "smoke", "smollm2-135m", 16, "none"
    for r in rows[1::2]:
        r["quant"], r["batch_size"] = "int8", 4
    results.write_csv(rows, folder / "results.csv")
    line = write_index(tmp_path / "paper").read_text().splitlines()[-1]
    assert "| 2 of 27 in 4 records (3 / 1 / 0) |" in line  # each of the two declared cells on both GPU models


def verdicts(traces: Path) -> dict:
    rows = results.collect(traces)
    return {t["id"]: t for t in claims.evaluate(claims.load(REPO / "conf" / "claims.yaml"), rows)}


def test_claims_pass_on_records_that_show_the_papers_results(tmp_path):
    for i, (sl, thr, lat) in enumerate([(128, 271, 15), (1024, 107, 305)]):
        craft(tmp_path, "seqlen_sweep", i, host="jetson", model="llama31-8b", batch_size=32, seq_len=sl,
              throughput=thr * 1.05, latency=lat * 0.95)
    for i, (quant, lat, mem, weights, w) in enumerate([("fp16", 1.0, 1000, 5300, 20), ("int8", 1.6, 545, 2900, 15),
                                                       ("int4", 1.4, 400, 1700, 14)]):
        craft(tmp_path, "precision_sweep", i, host="jetson", quant=quant, latency=lat, mem_mib=mem, weights_mib=weights,
              power_w=w)
    for i, (mode, lat, energy, w) in enumerate([("maxn", 10, 100, 40), ("pm-h", 47, 172, 19.2),
                                                ("pm-b", 15, 90, 19.6)]):
        craft(tmp_path, "power_sweep", i, host="jetson", model="llama31-8b", power=mode, latency=lat, energy=energy,
              power_w=w)
    for i, (bs, status) in enumerate([(1, "ok"), (8, "ok"), (16, "oom"), (32, "oom")]):
        craft(tmp_path, "models_table", i, host="jetson", model="r1-qwen-32b", batch_size=bs, status=status)
    v = verdicts(tmp_path)
    assert {k: t["verdict"] for k, t in v.items()} == {k: "PASS" for k in v}, v
    assert "r1-qwen-32b/fp16 sl128: fits up to bs 8, OOM from bs 16" in v["C7"]["measured"]


def test_claims_fail_when_the_records_contradict_them(tmp_path):
    for i, sl in enumerate([128, 1024]):
        craft(tmp_path, "seqlen_sweep", i, host="jetson", model="llama31-8b", batch_size=32, seq_len=sl,
              throughput=100 + sl)
    craft(tmp_path, "precision_sweep", 0, quant="fp16", latency=2.0, weights_mib=500, power_w=10)
    craft(tmp_path, "precision_sweep", 1, quant="int8", latency=1.0, weights_mib=600, power_w=12)
    for i, (bs, status) in enumerate([(1, "ok"), (8, "oom"), (16, "ok")]):  # a larger batch fits after an OOM
        craft(tmp_path, "models_table", i, batch_size=bs, status=status)
    v = verdicts(tmp_path)
    for claim in ("C1", "C2t", "C2m", "C3", "C6", "C7"):
        assert v[claim]["verdict"] == "FAIL", (claim, v[claim])
    assert ("llama31-8b/fp16/wikitext2 bs32: 228 ± 1 -> 1124 ± 1 (seq_len 128 -> 1024; back-to-back repetitions)"
            in v["C1"]["measured"])


def test_claims_not_applicable_off_the_orin_or_without_a_sensor(tmp_path):
    craft(tmp_path, "precision_sweep", 0, quant="fp16")
    craft(tmp_path, "precision_sweep", 1, quant="int8")
    craft(tmp_path, "models_table", 0, batch_size=4)
    v = verdicts(tmp_path)
    assert v["C2"]["verdict"] == "NOT APPLICABLE" and "absolute Jetson Orin numbers" in v["C2"]["measured"]
    assert v["C6"]["verdict"] == "NOT APPLICABLE" and "no power sensor" in v["C6"]["measured"]
    assert v["C7"]["verdict"] == "NOT APPLICABLE" and "no cell ran out of memory" in v["C7"]["measured"]
    assert v["C4"]["verdict"] == "NOT APPLICABLE" and v["C1"]["verdict"] == "NOT APPLICABLE"


def test_bar_legends_name_every_series_and_single_lines_have_none():
    """A precision missing for the first model (Phi-2 has no int8 bar) is still in the legend; a line figure of
    one series draws no legend ("all")."""
    import matplotlib.pyplot as plt

    from artifact.report import figures
    base = {"weights": "synthetic", "workload": "wikitext2", "power_mode": "none", "batch_size": 32, "seq_len": 512,
            "status": "ok", "record": "r", "latency_std_s": 0.1, "hardware": "test"}
    rows = [{**base, "model": "phi2", "quant": "fp16", "latency_median_s": 1.0},
            {**base, "model": "llama31-8b", "quant": "fp16", "latency_median_s": 2.0},
            {**base, "model": "llama31-8b", "quant": "int8", "latency_median_s": 3.0}]
    fig, axes = plt.subplots(1, 1, squeeze=False)
    figures.bars({"x": "model", "series": "quant", "panels": ["latency_median_s"]}, rows, axes.flat)
    assert [t.get_text() for t in axes.flat[0].get_legend().get_texts()] == ["fp16", "int8"]
    fig, axes = plt.subplots(1, 1, squeeze=False)
    figures.lines({"x": "seq_len", "panels": ["latency_median_s"]}, [{**rows[0], "seq_len": s} for s in (128, 256)],
                  axes.flat)
    assert axes.flat[0].get_legend() is None
    plt.close("all")


def test_the_claims_table_names_the_regime_of_the_records():
    ok = {"status": "ok"}
    assert claims.regime([{**ok, "decode_bw_fraction": 0.06}, {**ok, "decode_bw_fraction": 0.14}]).startswith(
        "not bandwidth-bound: decode at 0.06-0.14 of peak memory bandwidth")
    near = claims.regime([{**ok, "decode_bw_fraction": 0.8}])
    assert near == "bandwidth-bound: decode at 0.80 of peak memory bandwidth"
    assert claims.regime([{**ok, "decode_bw_fraction": 0.1}, {**ok, "decode_bw_fraction": 0.7}]).startswith("mixed")
    assert claims.regime([{**ok, "decode_bw_fraction": None}]).startswith("not known")


def test_power_and_energy_spread_come_from_each_repetitions_energy_and_latency(tmp_path):
    from artifact.store.rows import _power_spread
    (tmp_path / "reps.csv").write_text("rep,latency_s\n0,2.0\n1,4.0\n")
    out = _power_spread(tmp_path, {"per_rep_j": [200.0, 600.0]}, {"batch_size": 2, "seq_len": 50})
    assert out["power_std_w"] == pytest.approx(statistics.stdev([100.0, 150.0]))
    assert out["energy_per_token_std_j"] == pytest.approx(statistics.stdev([2.0, 6.0]))
    assert _power_spread(tmp_path, {"per_rep_j": [200.0]}, {"batch_size": 2, "seq_len": 50}) == {
        "power_std_w": None, "energy_per_token_std_j": None}  # one repetition has no spread: absent


def test_the_second_run_table_pairs_each_cell_with_its_first_run():
    """paper/gpu's batch_sweep_rerun table (conf/experiment/batch_sweep_rerun.yaml) from the shipped results table:
    each second-run cell beside the first-run cell of the same model, batch, GPU model and design, with the overlap of
    their latency intervals computed from the rows themselves (none where a run has one round), and the count in the
    last line, of the cells with an interval in both runs."""
    from artifact.report import tables
    rows = results.read_csv(REPO / "paper/gpu/results.csv")
    spec = experiments.load("batch_sweep_rerun")["table"]
    second = [r for r in rows if r["study"] == "batch_sweep_rerun" and r["status"] == "ok"]
    head, body = tables.rerun(spec, [r for r in rows if r["study"] in ("batch_sweep", "batch_sweep_rerun")])
    assert second and len(body) == len(second) + 1
    overlap = judged = 0
    for line, b in zip(body, sorted(second, key=lambda r: (r["model"], r["batch_size"]))):
        [a] = [r for r in rows if r["study"] == "batch_sweep" and r["design"] == "rounds" and r["model"] == b["model"]
               and r["batch_size"] == b["batch_size"] and r["hardware"] == b["hardware"]]
        assert line[:4] == [b["model"], b["batch_size"], b["seq_len"], b["hardware"]]
        assert a["gpu_uuid"].split("-")[1] in line[4] and b["gpu_uuid"].split("-")[1] in line[4]
        if None in (a["latency_low_s"], b["latency_low_s"]):
            assert a["rounds"] == 1 or b["rounds"] == 1
            assert line[head.index("overlap")] == "–"
            continue
        agree = a["latency_low_s"] <= b["latency_high_s"] and b["latency_low_s"] <= a["latency_high_s"]
        overlap, judged = overlap + agree, judged + 1
        assert line[head.index("overlap")] == ("yes" if agree else "NO")
    unjudged = f" ({len(second) - judged} without an interval)" if judged < len(second) else ""
    assert judged and body[-1][head.index("overlap")] == f"{overlap} of {judged}{unjudged}"


def test_the_second_run_table_shows_each_runs_canary_per_repetition():
    """With the shipped rounds.csv and canary.csv, each line carries the drift canary of the group runs that measured
    its two cells, per repetition (a probe's repetition count is calibrated per group run, so totals do not compare),
    computed here from canary.csv's own columns: a cell measured in several processes takes the median of its runs'."""
    from artifact.report import build, tables
    out = REPO / "paper/gpu"
    rows = [r for r in results.read_csv(out / "results.csv") if r["study"] in ("batch_sweep", "batch_sweep_rerun")]
    round_rows, points = results.read_rounds(out / "rounds.csv"), build.read_canary(out)
    head, body = tables.rerun(experiments.load("batch_sweep_rerun")["table"],
                              build.with_canary(rows, round_rows, points))
    column = head.index("canary host probe, s per generation: first / second")
    runs = {}
    for p in points:
        runs.setdefault(p["group_run"], []).append(p["host_s"] / p["host_reps"])
    for line in body[:-1]:
        pair = []
        for study in ("batch_sweep", "batch_sweep_rerun"):
            [r] = [r for r in rows if r["study"] == study and r["design"] == "rounds" and r["model"] == line[0]
                   and r["batch_size"] == line[1]]
            its_runs = {v["group_run"] for v in round_rows if v["record"] == r["record"]}  # one per process
            pair.append(statistics.median(statistics.median(runs[run]) for run in its_runs))
        assert line[column].startswith(f"{pair[0]:.3f} / {pair[1]:.3f} ")


def test_a_figure_from_several_gpus_of_one_model_names_each_series_gpus():
    """The H200 rounds batch sweep's cells come from several machines: the caption names, per model, the GPUs its
    cells' rounds ran on (from the rows' NVML UUIDs), since a machine moved a whole series in the second runs."""
    from artifact.report import build
    rows = [r for r in results.read_csv(REPO / "paper/gpu/results.csv") if r["study"] == "batch_sweep"
            and r["design"] == "rounds" and r["status"] == "ok"]
    text = build.machines(rows)
    for model in {r["model"] for r in rows}:
        gpus = sorted({u.split("-")[1] for r in rows if r["model"] == model
                       for u in (r["gpu_uuids"] or r["gpu_uuid"]).split()})  # rounds on several machines: each
        assert f"{model}: {', '.join(gpus)}" in text
    assert "phi2: 3e0a8785, ffff2101;" in text  # passes 1-2 on one H200, 3-5 on another (issue 22)
    assert build.machines(rows[:1]) == ""  # one GPU: nothing to say
