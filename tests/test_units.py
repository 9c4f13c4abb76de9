"""The pieces, in process, on the real embedded model and real corpora."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch

from artifact.cell.measure import TokenCountError, generate_once, generation_config, summary
from artifact.cell.perplexity import perplexity, stride_windows
from artifact.core.config import split_lengths
from artifact.models.architecture import build_synthetic, count_params
from artifact.store.record import CellStore, cell_hash
from artifact.workload.corpus import corpus_text
from artifact.workload.prompts import build_prompts, text_ids
from conftest import conf


@pytest.mark.parametrize("name", ["smollm2-135m", "phi2", "llama31-8b", "mistral-small-24b", "r1-qwen-32b"])
def test_model_architectures_give_the_published_parameter_counts(name):
    mcfg = conf("model", name)
    model = build_synthetic(mcfg, torch.float16, "meta", 0)  # shapes only, no memory
    assert count_params(model) == mcfg.params


def test_prompts_are_exact_consecutive_windows(smol, data_dir):
    wl = conf("workload", "wikitext2")
    prompts, info = build_prompts(smol.tokenizer, data_dir, wl, 3, 50)
    ids = text_ids(smol.tokenizer, corpus_text(data_dir, wl), wl.name)
    assert prompts.shape == (3, 50) and info["distinct_prompts"] == 3 and not info["bos_prepended"]
    assert prompts.flatten().tolist() == ids[:150]


def test_a_prefix_tokenizes_as_the_whole_text_does(smol, data_dir):
    """Prompts tokenize only the text they need: the tokens are the whole text's first ones, whatever the length."""
    wl = conf("workload", "wikitext2")
    text = corpus_text(data_dir, wl)
    whole = text_ids(smol.tokenizer, text, wl.name)
    cache: dict = {}
    for n in (1, 37, 1000, 5000, 60_000):
        assert text_ids(smol.tokenizer, text, wl.name, cache, n_tokens=n) == whole[:n]
        assert len(cache[(wl.name, smol.tokenizer.name_or_path, len(smol.tokenizer))][0]) < len(whole)
    assert text_ids(smol.tokenizer, text, wl.name, cache, n_tokens=10 ** 7) == whole  # more than there is: all


def test_longbench_prompts_are_truncated_items(smol, data_dir):
    prompts, info = build_prompts(smol.tokenizer, data_dir, conf("workload", "longbench"), 4, 100)
    assert prompts.shape == (4, 100) and info["distinct_prompts"] == 4


@pytest.mark.parametrize("seq_len,frac,expected", [(128, 0.5, (64, 64)), (1024, 0.25, (768, 256)), (5, 0.5, (2, 3))])
def test_split_lengths(seq_len, frac, expected):
    assert split_lengths(seq_len, frac) == expected


def test_generation_gives_exactly_the_tokens_asked_for(smol, data_dir):
    prompts, _ = build_prompts(smol.tokenizer, data_dir, conf("workload", "wikitext2"), 2, 8)
    gen = generate_once(smol.model, prompts, 5, generation_config(smol.model, smol.tokenizer, 5), "cpu")
    assert gen.new_tokens == 10 and gen.start < gen.first_token < gen.end
    short = generation_config(smol.model, smol.tokenizer, 4)  # asks the model for fewer than we check for
    with pytest.raises(TokenCountError):
        generate_once(smol.model, prompts, 5, short, "cpu")


@pytest.mark.parametrize("n,window,stride,bos", [(1000, 128, 128, False), (1000, 128, 64, False),
                                                  (1000, 128, 100, True), (77, 128, 32, False)])
def test_stride_windows_score_each_token_once(n, window, stride, bos):
    scored = []
    for begin, end, k in stride_windows(n, window, stride, bos):
        assert end - begin <= window and k <= end - begin - (0 if bos else 1)
        scored += range(end - k, end)
    assert len(scored) == len(set(scored))
    unscored = set(range(n)) - set(scored)
    starts = {b for b, _, _ in stride_windows(n, window, stride, bos)}
    assert unscored <= (starts if not bos else set())


@pytest.mark.parametrize("window,stride", [(128, 128), (128, 64)])
def test_perplexity_matches_an_independent_computation(smol, data_dir, window, stride):
    """Hugging Face's documented recipe (labels masked with -100, loss x target count) on the same slice."""
    ppl_cfg = conf("ppl", "stride")
    ppl_cfg.window, ppl_cfg.stride, ppl_cfg.max_tokens = window, stride, 600
    wl = conf("workload", "wikitext2")
    corpus_ids = text_ids(smol.tokenizer, corpus_text(data_dir, wl), wl.name)
    ours = perplexity(smol.model, smol.tokenizer, corpus_ids, ppl_cfg, "cpu")
    assert ours["corpus"] == "wikitext2" and ours["corpus_tokens"] == 600
    ids = torch.tensor([corpus_ids[:600]])
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, 600, stride):
        end = min(begin + window, 600)
        trg = end - prev_end
        x = ids[:, begin:end]
        labels = x.clone()
        labels[:, :-trg] = -100
        with torch.no_grad():
            loss = smol.model(x, labels=labels).loss.item()
        n_valid = int((labels[:, 1:] != -100).sum())
        nll, count, prev_end = nll + loss * n_valid, count + n_valid, end
        if end == 600:
            break
    assert ours["scored_tokens"] == count
    assert ours["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_summary_statistics():
    s = summary([3.0, 1.0, 2.0, 10.0])
    assert (s["median"], s["min"], s["max"], s["n"], s["p90"]) == (2.5, 1.0, 10.0, 4, None)  # no p90 below 64
    assert summary([float(i) for i in range(64)])["p90"] == 57.0
    assert s["std"] == pytest.approx((50 / 3) ** 0.5)  # sample std


def test_cell_hash_depends_on_what_changes_a_result():
    base = {"model": {"name": "m"}, "quant": {"name": "fp32"}, "power": {"name": "none", "dry_run": False},
            "batch_size": 1, "study": "a", "force": False, "tracking": {"uri": "x"}, "traces_dir": "t"}
    same = {**base, "study": "b", "force": True, "tracking": {"uri": "y"}, "traces_dir": "u",
            "power": {"name": "none", "dry_run": True}}
    assert cell_hash(base, "cpu", "X") == cell_hash(same, "cpu", "X") == cell_hash(base, "cpu", "X")
    assert cell_hash(base, "cpu", "X") != cell_hash({**base, "batch_size": 2}, "cpu", "X")
    assert cell_hash(base, "cpu", "X") != cell_hash(base, "cuda:0", "X")
    assert cell_hash(base, "cuda:0", "NVIDIA H100 80GB HBM3") != cell_hash(base, "cuda:0", "NVIDIA H200")


def test_record_write_is_atomic_and_replaces(tmp_path):
    store = CellStore(tmp_path, "s")
    store.write("abc", {"k": 1}, {"status": "error", "x": float("nan")}, [{"rep": 0, "latency_s": 1.0}])
    assert store.finished("abc") is None  # an error is not done: the next run retries it
    assert json.loads((store.path("abc") / "result.json").read_text())["x"] is None  # NaN -> null, never a number
    store.write("abc", {"k": 1}, {"status": "ok"}, [])
    assert store.finished("abc") == {"status": "ok"}
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["abc"]


@pytest.mark.parametrize("killed_at", ["between the renames", "before the old record is deleted"])
def test_a_record_replacement_killed_midway_is_finished_by_the_next_run(tmp_path, killed_at):
    """A process killed (os._exit, as SIGKILL would) while replacing a record: the next store of this study puts
    the old record back where the new one was not published, or deletes it where it was; no hidden folder stays."""
    store = CellStore(tmp_path, "s")
    store.write("abc", {"k": 1}, {"status": "error", "round": 1}, [])
    exit_on = ("import os; real = os.rename; calls = []\n"
               "def rename(a, b):\n    calls.append(1)\n    if len(calls) == 2: os._exit(9)\n    real(a, b)\n"
               "os.rename = rename\n") if killed_at == "between the renames" else (
              "import os, shutil; shutil.rmtree = lambda *a, **k: os._exit(9)\n")
    code = exit_on + ("from artifact.store.record import CellStore\n"
                      f"CellStore({str(tmp_path)!r}, 's').write('abc', {{'k': 1}}, {{'status': 'ok', 'round': 2}}, [])")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert [p.name for p in (tmp_path / "s").iterdir() if p.name.startswith(".trash-")]  # left by the killed process
    store = CellStore(tmp_path, "s")
    expected = {"status": "error", "round": 1} if killed_at == "between the renames" else {"status": "ok", "round": 2}
    assert store.recorded("abc") == expected
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["abc"]


def test_cell_lock_respects_live_owners_and_takes_over_dead_ones(tmp_path):
    store = CellStore(tmp_path, "s")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys; from artifact.store.record import CellStore; "
                               f"assert CellStore({str(tmp_path)!r}, 's').try_lock('c1'); print('ok', flush=True); "
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ok"
    assert not store.try_lock("c1")  # a live process holds it
    holder.kill()
    holder.wait()
    assert store.deaths("c1") == []
    assert store.try_lock("c1")  # its owner died: stale, taken over, and its death noted
    assert [d["pid"] for d in store.deaths("c1")] == [holder.pid]
    store.unlock("c1")
    assert not (tmp_path / "s" / ".c1.lock").exists()
    store.write("c1", {"k": 1}, {"status": "error"}, [])
    assert len(store.deaths("c1")) == 1  # an error is not finished: the death still stands
    store.write("c1", {"k": 1}, {"status": "ok"}, [])
    assert store.deaths("c1") == [] and sorted(p.name for p in (tmp_path / "s").iterdir()) == ["c1"]
    (tmp_path / "s" / ".c1.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
    assert store.try_lock("c1") and store.deaths("c1") == []  # died after its record: nothing to note


def test_unlock_leaves_a_lock_this_process_does_not_hold(tmp_path):
    store = CellStore(tmp_path, "s")
    lock = tmp_path / "s" / ".c1.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid(), "since": 0}))
    store.unlock("c1")
    assert lock.exists()


def test_settling_locks_turns_dead_owners_into_death_notes_and_leaves_the_rest(tmp_path):
    from artifact.store.record import settle_dead_locks
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owners = {"dead": {"host": socket.gethostname(), "pid": int(dead.stdout)},
              "live": {"host": socket.gethostname(), "pid": os.getppid()},
              "remote": {"host": "another-machine", "pid": 1}}
    for cell, owner in owners.items():
        (tmp_path / "s").mkdir(exist_ok=True)
        (tmp_path / "s" / f".{cell}.lock").write_text(json.dumps({**owner, "since": 0}))
    assert settle_dead_locks(tmp_path) == 1
    store = CellStore(tmp_path, "s")
    assert [d["pid"] for d in store.deaths("dead")] == [owners["dead"]["pid"]]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".dead.died", ".live.lock", ".remote.lock"]


def test_a_ray_driver_asks_for_token_auth_exactly_where_it_has_a_token(tmp_path, monkeypatch):
    """Ray 2.60's head turns token auth on only where a token exists; a driver given an address must ask for it
    itself. With no token it must not ask: it would fail against a head that has none."""
    from artifact.sweep.launch import driver_environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    monkeypatch.setattr(os, "environ", {**env, "HOME": str(tmp_path)})  # the driver writes it: this test's own copy
    driver_environment("ray")
    assert "RAY_AUTH_MODE" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("ab" * 32 + "\n")
    driver_environment("ray")
    assert os.environ["RAY_AUTH_MODE"] == "token"
    os.environ["RAY_AUTH_MODE"] = "disabled"  # set by the user: left as it is
    driver_environment("ray")
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


def test_sweeps_change_power_mode_then_model_then_precision_least_often():
    from artifact.sweep.preflight import sweep_order
    args = ["-m", "batch_size=1,2", "quant=fp16,int8", "seq_len=128", "power=maxn,30W", "model=phi2,llama31-8b"]
    assert sweep_order(args) == ["-m", "power=maxn,30W", "model=phi2,llama31-8b", "quant=fp16,int8",
                                 "batch_size=1,2", "seq_len=128"]


def test_a_dvc_composed_params_file_turns_back_into_the_overrides(tmp_path):
    """The DVC `cell` stage: params.yaml as `dvc exp run -S quant=gptq-int4 -S quant.gptq.group_size=64` composes
    it (Hydra) gives back exactly the overrides that differ from the conf files."""
    from omegaconf import OmegaConf

    from artifact.core.config import CONF_DIR, compose, overrides_from_params
    cfg = compose(["quant=gptq-int4", "quant.gptq.group_size=64", "batch_size=4"])
    params = tmp_path / "params.yaml"
    params.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    out = overrides_from_params(params)
    assert "quant=gptq-int4" in out and "quant.gptq.group_size=64" in out and "batch_size=4" in out
    assert not [o for o in out if o.startswith("quant.") and o != "quant.gptq.group_size=64"]
    committed = overrides_from_params(CONF_DIR.parent / "params.yaml")  # the repository's own: the default cell
    assert "quant=fp32" in committed and not [o for o in committed if o.startswith("quant.")]
