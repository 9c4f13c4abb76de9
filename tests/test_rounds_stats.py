"""The statistics of the rounds design on crafted values (artifact.core.stats) and the claims judged on paired rounds
(artifact.report.claims): intervals honest for the number of rounds, ratios paired within a round, INCONCLUSIVE where
the interval does not exclude "no difference"."""
from __future__ import annotations

import statistics

import pytest

from artifact.core import stats
from artifact.report import claims


def test_minmax_interval_and_its_coverage_for_few_rounds():
    iv = stats.interval([5.0, 4.0, 6.0, 5.5, 4.5])
    assert (iv["low"], iv["high"], iv["n"]) == (4.0, 6.0, 5)
    assert iv["coverage"] == pytest.approx(0.9375) and iv["method"] == "min-max over rounds"
    assert stats.interval([2.0, 3.0, 1.0])["coverage"] == pytest.approx(0.75)
    assert stats.interval([1.0])["low"] is None  # one round: no interval, not a zero-width one
    assert "5 rounds, 94% coverage" in stats.describe_interval(iv)


def test_an_interval_says_how_many_processes_and_gpus_its_rounds_ran_in():
    """A record's interval names the processes (group runs) of its rounds, and the GPUs where a resumed record's
    rounds ran on more than one machine: one process's interval holds no spread between processes."""
    from artifact.store.rows import _design
    iv = stats.interval([5.0, 4.0, 6.0, 5.5, 4.5])
    result = {"design": "rounds", "metrics": {"latency_s": {"interval": iv}},
              "rounds": {"done": 5, "group_runs": ["a"]}}
    assert _design(result)["interval"] == "min-max over 5 rounds in 1 process, 94% coverage of the median"
    result["rounds"].update(group_runs=["a", "b", "c"], gpu_uuids=["GPU-1", "GPU-2"])
    assert _design(result)["interval"] == ("min-max over 5 rounds in 3 processes on 2 GPUs, 94% coverage of the "
                                           "median")


def test_bootstrap_interval_from_eight_rounds_is_reproducible_and_holds_the_median():
    values = [10.0, 10.4, 9.7, 10.1, 10.9, 9.9, 10.2, 10.05, 9.8, 10.3]
    iv = stats.interval(values)
    assert iv["method"].startswith("bootstrap") and iv["coverage"] == 0.95
    assert iv["low"] <= statistics.median(values) <= iv["high"]
    assert min(values) <= iv["low"] and iv["high"] <= max(values)  # narrower than the min-max
    assert stats.interval(values) == iv  # a fixed seed: the same rounds give the same interval


def test_a_round_summary_reports_the_median_over_rounds_and_no_p90_below_64():
    s = stats.round_summary([3.0, 1.0, 2.0])
    assert (s["median"], s["n"], s["p90"]) == (2.0, 3, None)
    assert (s["interval"]["low"], s["interval"]["high"]) == (1.0, 3.0)


def test_within_visit_spread_is_pooled_and_absent_with_one_repetition_per_visit():
    w = stats.within_visit([[1.0, 1.2], [2.0, 2.2]])
    assert w["std"] == pytest.approx(0.02 ** 0.5) and w["visits"] == 2
    assert stats.within_visit([[1.0], [2.0]])["std"] is None


@pytest.mark.parametrize("ratios,direction,verdict", [
    ([1.10, 1.12, 1.08, 1.15, 1.09], "greater", "PASS"),
    ([0.90, 0.88, 0.93, 0.91, 0.95], "greater", "FAIL"),
    ([0.97, 1.05, 1.01, 0.99, 1.03], "greater", "INCONCLUSIVE"),  # the interval holds 1: no difference shown
    ([1.01, 1.015, 1.012, 1.018, 1.011], "greater", "INCONCLUSIVE"),  # above 1, but within the practical 2 %
    ([0.80, 0.82, 0.79, 0.85, 0.81], "less", "PASS"),
    ([1.10], "greater", "INCONCLUSIVE"),  # one round has no interval
])
def test_paired_ratio_verdicts(ratios, direction, verdict):
    got, info = stats.ratio_verdict(ratios, direction, 0.02)
    assert got == verdict
    assert info["n"] == len(ratios) and info["agree"] == sum(r > 1 if direction == "greater" else r < 1
                                                             for r in ratios)


def _row(record: str, **kw) -> dict:
    base = {"study": "seqlen_sweep", "model": "m", "weights": "real", "quant": "fp32", "workload": "w",
            "power_mode": "none", "batch_size": 4, "seq_len": 64, "profile": "smoke", "host_kind": "cpu",
            "hardware": "cpu", "design": "rounds", "status": "ok", "record": record, "params": 1,
            "throughput_median_tok_s": 100.0, "throughput_std_tok_s": None, "decode_bw_fraction": None}
    return {**base, **kw}


def _rounds(record: str, run: str, values: list[float], column: str = "throughput_tok_s") -> list[dict]:
    return [{"record": record, "round": i + 1, "group_run": run, "group_round": i + 1, column: v}
            for i, v in enumerate(values)]


C1 = {"kind": "falls_with", "study": "seqlen_sweep", "x": "seq_len", "metric": "throughput_median_tok_s"}


def test_a_fall_paired_within_rounds_passes_even_where_drift_moves_every_round():
    """Both ends drift together (each round 10 % slower than the one before): the medians overlap across rounds,
    but within each round the long sequence is slower by 20 %: PASS."""
    drift = [1.0, 0.9, 0.81, 0.73, 0.66]
    rows = [_row("a", seq_len=64, throughput_median_tok_s=81.0), _row("b", seq_len=256, throughput_median_tok_s=65.0)]
    rounds = _rounds("a", "g", [100 * d for d in drift]) + _rounds("b", "g", [80 * d for d in drift])
    verdict, text = claims.falls_with(C1, rows, claims.Rounds(rounds))
    assert verdict == "PASS", text
    assert "ratio 0.800" in text and "5 of 5 rounds fall" in text and "paired within rounds" in text


def test_no_paired_difference_is_inconclusive_not_a_fail():
    rows = [_row("a", seq_len=64), _row("b", seq_len=256)]
    rounds = _rounds("a", "g", [100, 102, 99, 101, 100]) + _rounds("b", "g", [101, 100, 100, 102, 99])
    verdict, text = claims.falls_with(C1, rows, claims.Rounds(rounds))
    assert verdict == "INCONCLUSIVE", text


def test_cells_of_separate_load_groups_are_paired_by_round_number_and_say_so():
    c = {"kind": "greater", "study": "precision_sweep", "vary": "quant", "a": "int8", "b": "fp16",
         "metric": "latency_median_s"}
    rows = [_row("a", study="precision_sweep", quant="int8", latency_median_s=2.0),
            _row("b", study="precision_sweep", quant="fp16", latency_median_s=1.0)]
    rounds = (_rounds("a", "g1", [2.0, 2.1, 1.9], "latency_s") + _rounds("b", "g2", [1.0, 1.05, 0.95], "latency_s"))
    verdict, text = claims.greater(c, rows, claims.Rounds(rounds))
    assert verdict == "PASS" and "across load groups" in text, text


def test_back_to_back_rows_keep_the_earlier_judgement():
    rows = [_row("a", seq_len=64, design="back-to-back repetitions", throughput_std_tok_s=1.0),
            _row("b", seq_len=256, design="back-to-back repetitions", throughput_median_tok_s=90.0,
                 throughput_std_tok_s=1.0)]
    verdict, text = claims.falls_with(C1, rows, claims.Rounds([]))
    assert verdict == "PASS" and "back-to-back repetitions" in text


def test_where_a_study_has_rounds_records_its_back_to_back_records_are_named_not_judged():
    """A back-to-back fall (on another GPU) beside a rounds pair that shows none: the claim reads the rounds pair
    (INCONCLUSIVE) and names the back-to-back cells it set aside."""
    claim = {"id": "C1", "claim": "falls", "applies_to": "any", "paper": "", "check": C1}
    rows = [_row("a", seq_len=64), _row("b", seq_len=256),
            _row("c", seq_len=64, hardware="gpu-b", design="back-to-back repetitions", throughput_std_tok_s=1.0),
            _row("d", seq_len=256, hardware="gpu-b", design="back-to-back repetitions", throughput_median_tok_s=50.0,
                 throughput_std_tok_s=1.0)]
    rounds = _rounds("a", "g", [100, 102, 99, 101, 100]) + _rounds("b", "g", [101, 100, 100, 102, 99])
    [result] = claims.evaluate([claim], rows, rounds)
    assert result["verdict"] == "INCONCLUSIVE", result["measured"]
    assert "not judged: 2 back-to-back cells (m on gpu-b)" in result["measured"]
    [alone] = claims.evaluate([claim], rows[2:], [])  # one design: judged as before
    assert alone["verdict"] == "PASS" and "not judged" not in alone["measured"]
