"""Issue-10 behaviour a CPU can show: the batch ladder of fit tests (OOM by implication), the disk preflight and a
full disk while writing a record (on real, small tmpfs mounts: needs root, as CI and the dev machines run), a
checkpoint build that failed once not retried by later cells, and where the time goes."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from artifact.cell.session import Session
from artifact.store.record import CellStore, cell_hash
from artifact.sweep import cells
from conftest import FAST, cell


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs file systems (a real ENOSPC); unmounted after the test."""
    mounted = []

    def mount(name: str, size: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                             text=True)
        if out.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip()}): needs root")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


# ------------------------------------------------------------------ batch ladder (fit tests)

def test_a_larger_batch_than_one_that_ran_out_of_memory_is_oom_by_implication(tmp_path, models_dir):
    small = cell("batch_ladder=true", "batch_size=2", "ppl=off", f"traces_dir={tmp_path}", models_dir=models_dir)
    large = cell("batch_ladder=true", "batch_size=8", "ppl=off", f"traces_dir={tmp_path}", models_dir=models_dir)
    other = cell("batch_ladder=true", "batch_size=8", "seq_len=64", "ppl=off", f"traces_dir={tmp_path}",
                 models_dir=models_dir)
    store = CellStore(tmp_path, small.study)
    oom_hash = cell_hash(small.config, small.device, small.hardware)
    store.write(oom_hash, small.config, {"cell_hash": oom_hash, "status": "oom", "device": small.device,
                                         "hardware": small.hardware,
                                         "message": "OutOfMemoryError: CUDA out of memory"}, [])
    session = Session()
    status, measured = cells.run_cell(large, session)
    assert (status, measured) == ("oom", True) and session.loaded is None  # not run: no model was loaded
    result = store.finished(cell_hash(large.config, large.device, large.hardware))
    assert result["status"] == "oom" and result["implied_by"] == oom_hash
    assert result["message"].startswith("not run: batch_size=2 ran out of memory with the same settings")
    assert session.oom_below(store, other) is None  # another length is another ladder
    assert session.oom_below(store, small) is None  # the same batch is not implied by itself


def test_the_ladder_is_not_part_of_a_cells_identity(models_dir):
    on = cell("batch_ladder=true", "ppl=off", models_dir=models_dir)
    off = cell("batch_ladder=false", "ppl=off", models_dir=models_dir)
    assert cell_hash(on.config, on.device, on.hardware) == cell_hash(off.config, off.device, off.hardware)


# ------------------------------------------------------------------ disk

def test_too_little_disk_for_the_checkpoints_is_one_line_and_nothing_written(cli, tmpfs):
    small = tmpfs("models", "16m")  # the embedded GGUF converts to ~540 MB of fp32
    out = cli.run(*FAST, f"models_dir={small}")
    assert out.returncode == 2, out.stdout + out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: not enough disk space: this run (1 cell: 0.5 GiB of checkpoints and records) "
                           f"needs about 0.5 GiB under {small} (+1 GiB margin) and 0.0 GiB is free there")
    assert list(small.iterdir()) == [] and not cli.traces.exists()


def test_a_full_disk_while_writing_a_record_is_one_line_exit_1_and_the_finished_records_stand(tmpfs, capsys,
                                                                                                models_dir):
    traces = tmpfs("traces", "256k")
    c = cell("ppl=off", f"traces_dir={traces}", models_dir=models_dir)
    store = CellStore(traces, c.study)
    store.write("first", c.config, {"cell_hash": "first", "status": "ok"}, [{"rep": 0, "latency_s": 1.0}])
    fd = os.open(traces / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last block
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(SystemExit) as e:
        cells.write_record(store, "second", c, {"cell_hash": "second", "status": "ok", "pad": "y" * 100_000}, ([], {}))
    assert e.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: no space left on the device holding {traces / c.study / 'second'} while writing")
    assert sorted(p.name for p in (traces / c.study).iterdir()) == ["first"]  # nothing half-written
    assert store.finished("first")["status"] == "ok"


# ------------------------------------------------------------------ a failed build is not retried

def test_a_checkpoint_build_that_failed_is_not_retried_by_later_cells(cli, tmp_path):
    """A REAL broken package: a distribution named broken-gguf whose GGUF file is garbage, so the conversion
    under models/ fails; the sweep's second cell is recorded as an error naming the first failure."""
    site = tmp_path / "site"
    (site / "broken_gguf-0.0.1.dist-info").mkdir(parents=True)
    (site / "broken_gguf-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-gguf\n"
                                                                   "Version: 0.0.1\n")
    (site / "model.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    fresh = tmp_path / "fresh-models"
    out = subprocess.run(cli.args("-m", *FAST[1:], "batch_size=1,2", f"models_dir={fresh}",
                                  "model.gguf_package=broken-gguf", "model.gguf_file=model.gguf"),
                         cwd=cli.root, env=cli.env(PYTHONPATH=str(site)), capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.count("converting the embedded GGUF once") == 1
    results = [json.loads((r / "result.json").read_text()) for r in cli.records()]
    assert sorted(r["status"] for r in results) == ["error", "error"]
    later = next(r for r in results if "not retried" in r["message"])
    assert later["message"].startswith("LoadFailedBefore: not loaded: smollm2-135m/fp32 failed to load earlier")
    assert not fresh.exists() or not any(p for p in fresh.rglob("*") if not p.name.startswith("."))


# ------------------------------------------------------------------ time

def test_a_sweep_says_where_its_time_went(cli):
    out = cli.run("-m", *FAST[1:], "batch_size=1,2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("time: "))
    assert "for 2 measured cells; generation (timed + warm-up)" in lines[head]
    rows = {line[:54].strip(): float(line[54:63]) for line in lines[head + 2:head + 11]}
    assert set(rows) >= {"timed windows", "warm-ups", "model loads", "process overhead (start, imports, preflight)"}
    wall = float(lines[head].split("time: ")[1].split(" s wall")[0])
    assert sum(rows.values()) == pytest.approx(wall, abs=0.5)
    results = [json.loads((r / "result.json").read_text()) for r in cli.records()]
    assert rows["timed windows"] == pytest.approx(sum(r["timed_seconds"] for r in results), abs=0.1)
    sweeps = (cli.traces / ".sweeps.jsonl").read_text().splitlines()
    assert len(sweeps) == 1 and json.loads(sweeps[0])["cells"] == 2
