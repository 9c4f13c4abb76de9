"""The rounds design end to end (`python -m artifact.run` on the real embedded model): drift injected by a fake is
drawn as an effect by back-to-back repetitions and cancels in rounds paired within a round; a sweep killed mid-round
resumes with only the missing visits; more rounds add to a finished cell."""
from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import subprocess
import time

import pytest

from artifact.core import stats
from artifact.core.config import compose, to_container
from artifact.core.hardware import hardware_class
from artifact.store.record import cell_hash
from artifact.sweep.rounds import round_seed, visit_order
from fakes import drifting_host_env

TINY = ["batch_size=1", "seq_len=16", "warmup=1", "min_reps=2", "min_seconds=0", "ppl=off", "tracking.enabled=false"]
STEP = 0.5  # the fake host's drift: from some generation on, every generation takes 50 % longer


def _records(cli, study: str) -> dict[str, tuple[dict, list[dict]]]:
    """cell hash -> (result, reps rows) of a study's records."""
    out = {}
    for rec in cli.records(study):
        with open(rec / "reps.csv", newline="") as f:
            out[rec.name] = (json.loads((rec / "result.json").read_text()), list(csv.DictReader(f)))
    return out


def _mixed_seed(rounds: int) -> int:
    """A seed whose rounds do not all visit the two cells in one order (an order held in every round would make
    position and workload the same thing); drawn as artifact.sweep.rounds draws it."""
    for seed in range(20):
        keys = [cell_hash(to_container(compose([f"workload={w}", *TINY, "design=rounds", f"rounds={rounds}",
                                                 f"seed={seed}", "study=rounds"])), "cpu", hardware_class("cpu"))
                for w in ("wikitext2", "longbench")]
        firsts = {visit_order(keys, round_seed(seed, keys, k), mode=lambda _: "none")[0] for k in range(1, rounds + 1)}
        if len(firsts) == 2:
            return seed
    raise AssertionError("no seed below 20 mixes the orders")


@pytest.mark.quiet_host
def test_injected_drift_is_an_effect_back_to_back_and_cancels_in_paired_rounds(cli, tmp_path):
    """Two cells of equal cost (the same shapes, prompts from two corpora) on a host that turns 50 % slower part of
    the way through. Back-to-back, the cell measured second is slower beyond both cells' spread: the drift drawn as
    an effect of the workload. In rounds, the ratios paired within a round stay near 1 but for the round in which
    the host changed: INCONCLUSIVE, no effect of the workload, which is the truth; and the canary shows the step."""
    b2b = cli.run("-m", "workload=wikitext2,longbench", *TINY, "design=back-to-back", "study=b2b",
                  env=cli.env(**drifting_host_env(tmp_path / "hook", after=3, step=STEP)))  # after the first cell
    assert b2b.returncode == 0, b2b.stderr
    by_start = sorted(_records(cli, "b2b").values(), key=lambda rr: float(rr[1][0]["t_start"]))
    (a, _), (b, _) = by_start
    la, lb = a["metrics"]["latency_s"], b["metrics"]["latency_s"]
    assert lb["median"] - la["median"] > la["std"] + lb["std"], (la, lb)  # an "effect" beyond the error bars

    seed = _mixed_seed(5)
    rounds = cli.run("-m", "workload=wikitext2,longbench", *TINY, "design=rounds", "rounds=5", f"seed={seed}",
                     "canary_seconds=0.2", "study=rounds",
                     env=cli.env(**drifting_host_env(tmp_path / "hook", after=20, step=STEP)))  # mid-rounds
    assert rounds.returncode == 0, rounds.stderr
    recs = list(_records(cli, "rounds").values())
    assert len(recs) == 2 and all(r["rounds"]["done"] == 5 for r, _ in recs)
    slot = lambda v: (v["group_run"], v["group_round"])  # noqa: E731
    values = [{slot(v): statistics.median(float(r["latency_s"]) for r in rows if int(r["round"]) == v["round"])
               for v in result["visits"]} for result, rows in recs]
    ratios = stats.paired_ratios(values[1], values[0])
    verdict, info = stats.ratio_verdict(ratios, "greater", 0.02)
    assert verdict == "INCONCLUSIVE" and 0.9 < info["median"] < 1.1, ratios
    points = [json.loads(line) for line in (cli.traces / "rounds" / "canary.jsonl").read_text().splitlines()]
    assert [p["point"] for p in points] == list(range(6))
    host = [p["host_s"] for p in points]  # the canary saw the host slow down (its first point may be a slow start)
    assert max(host) > 1.3 * min(host), host
    assert "canary:" in rounds.stdout and "rounds that moved more than 5%: 0" not in rounds.stdout


def test_a_sweep_killed_mid_round_resumes_with_only_the_missing_visits_and_more_rounds_add_to_it(cli):
    sweep = ["-m", "batch_size=1,2", "seq_len=16", "warmup=0", "min_reps=1", "min_seconds=0", "ppl=off",
             "rounds=3", "canary_seconds=0", "tracking.enabled=false", "study=killed"]

    def visits() -> dict[str, list[dict]]:
        out = {}
        for rec in cli.records("killed"):
            try:
                out[rec.name] = json.loads((rec / "result.json").read_text())["visits"]
            except (OSError, ValueError, KeyError):
                pass
        return out

    proc = subprocess.Popen(cli.args(*sweep), cwd=cli.root, env=cli.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and sum(map(len, visits().values())) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    before = visits()
    assert 3 <= sum(map(len, before.values())) < 6, before  # killed inside the second round
    out = cli.run(*sweep)
    assert out.returncode == 0, out.stdout + out.stderr
    after = visits()
    assert len(after) == 2
    for key, vs in after.items():
        assert sorted(v["round"] for v in vs) == [1, 2, 3]  # every round once: no visit twice, none missing
        assert vs[:len(before.get(key, []))] == before.get(key, [])  # the visits measured before the kill stand
        with open(cli.traces / "killed" / key / "reps.csv", newline="") as f:
            assert sorted(int(r["round"]) for r in csv.DictReader(f)) == [1, 2, 3]
    leftovers = [p.name for p in (cli.traces / "killed").iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers

    again = cli.run(*sweep)
    assert again.returncode == 0 and again.stdout.count("done already") == 2
    more = cli.run(*[s if s != "rounds=3" else "rounds=4" for s in sweep])
    assert more.returncode == 0, more.stderr
    assert "done already" not in more.stdout
    assert {k: [v["round"] for v in vs] for k, vs in visits().items()} == {k: [1, 2, 3, 4] for k in after}
