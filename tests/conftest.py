"""Shared fixtures. Everything here is real: the embedded SmolLM2 model, the reference corpora in
../shared/data (or $ARTIFACT_DATA_DIR), a real MLflow sqlite store, real subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("ARTIFACT_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
# A quick cell: 8 input + 8 output tokens, two timed repetitions, no warm-up, no perplexity, in one visit (the
# back-to-back design: these tests are about records, locks and processes; the rounds design has its own tests).
FAST = ["batch_size=1", "seq_len=16", "warmup=0", "min_reps=2", "min_seconds=0", "ppl=off", "design=back-to-back"]
# Two tiny cells (bs 1 and 2, 4 + 4 tokens) for the sweeps that `artifact.reproduce` runs in the tests.
TINY = ["batch_size=1,2", "seq_len=8", "warmup=0", "min_reps=2", "min_seconds=0"]


def sh(cmd, cwd, env=None, timeout=900) -> subprocess.CompletedProcess:
    """A command (a list, or a string for the shell) that must succeed; its output's tail if it does not."""
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         shell=isinstance(cmd, str))
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def conf(group: str, name: str):
    from artifact.core.config import load_group
    return load_group(group, name)


def cell(*overrides: str, models_dir: Path | None = None):
    """A resolved cell of the default config with these overrides (paths: the test's models, the shared data)."""
    from artifact.core.config import compose, resolve
    extra = [f"models_dir={models_dir}"] if models_dir is not None else []
    return resolve(compose([*overrides, *extra, f"data_dir={DATA}"]))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "wikitext-2-raw-v1" / "wiki.test.raw").is_file():
        pytest.fail(f"reference corpora not found in {DATA}; set ARTIFACT_DATA_DIR")
    return DATA


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, worker_id) -> Path:
    """The embedded GGUF converted once per test run (the conversion itself is under test). Under xdist it is in
    the run's folder that the workers share: the first to get the file lock converts, the others find it ready.
    $ARTIFACT_TEST_MODELS names a folder that outlives one pytest run: `make test` sets it, so that its quiet_host
    run finds the model that its first run (the same venv) converted, and CI sets it for the Python 3.10 run to the
    folder that the quantize stage on that stack converted into while the first stack's tests ran."""
    from filelock import FileLock

    from artifact.models import checkpoints
    if os.environ.get("ARTIFACT_TEST_MODELS"):
        root = Path(os.environ["ARTIFACT_TEST_MODELS"])
        root.mkdir(parents=True, exist_ok=True)
    elif worker_id == "master":  # one process
        root = tmp_path_factory.mktemp("models")
    else:
        root = tmp_path_factory.getbasetemp().parent / "models"
        root.mkdir(exist_ok=True)
    with FileLock(f"{root}.lock"):
        folder = checkpoints.converted_gguf_dir(conf("model", "smollm2-135m"), root)
    assert (folder / "model.safetensors").is_file() and (folder / "provenance.json").is_file()
    return root


@pytest.fixture(scope="session")
def smol(models_dir):
    """The embedded model in fp32, loaded in this process."""
    from artifact.models import loading
    return loading.load(cell("model=smollm2-135m", "quant=fp32", "device=cpu", models_dir=models_dir))


class Cli:
    """Runs `python -m artifact.run` as a user would, with its own traces folder and MLflow store."""

    def __init__(self, root: Path, models_dir: Path, data_dir: Path):
        self.root, self.models_dir, self.data_dir = root, models_dir, data_dir
        self.traces = root / "traces"
        self.db = root / "mlflow.db"
        self.uri = f"sqlite:///{self.db}"

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HYDRA_"))}
        env.update({"ARTIFACT_DATA_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1", **extra})
        return env

    def args(self, *overrides: str) -> list[str]:
        flags = [o for o in overrides if o.startswith("-")]  # e.g. -m: Hydra wants flags before overrides
        return [sys.executable, "-m", "artifact.run", *flags, f"traces_dir={self.traces}",
                f"models_dir={self.models_dir}", f"tracking.uri={self.uri}",
                *[o for o in overrides if not o.startswith("-")]]

    def run(self, *overrides: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(self.args(*overrides), cwd=self.root, env=env or self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def records(self, study: str = "default") -> list[Path]:
        d = self.traces / study
        return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.is_dir() else []

    def mlflow_runs(self, study: str = "default"):
        from mlflow.tracking import MlflowClient
        client = MlflowClient(tracking_uri=self.uri)
        exp = client.get_experiment_by_name(study)
        return [] if exp is None else client.search_runs([exp.experiment_id])


@pytest.fixture
def cli(tmp_path, models_dir, data_dir) -> Cli:
    return Cli(tmp_path, models_dir, data_dir)


# Under pytest-xdist each worker's torch (and every cell it starts) gets its share of the cores, not all of them:
# two workers' thread pools on the same 2 cores slowed each other's cells (a LongBench int8 cell took 98 s alone,
# 387 s beside another worker, 109 s beside it with one thread each).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


# The test files, slowest first (--durations=0 on 2 cores, 2026-12-07: about 645, 510, 440, 220, 155, 125, 75, 65, 45,
# 45, 30 and 15 s): pytest-xdist (`--dist loadfile --no-loadscope-reorder`, the Makefile's XDIST) hands a worker the
# next file of this order whenever it runs dry, so the long files start first and the workers end together. A file
# not listed runs after these.
SLOWEST_FIRST = ["test_run_cli.py", "test_pipeline.py", "test_scaleout.py", "test_reproduce.py", "test_bad_input.py",
                 "test_power.py", "test_identity.py", "test_rounds_cli.py", "test_fit_and_disk.py", "test_quantize.py",
                 "test_units.py", "test_bnbcheck.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept
