"""Statistics over rounds: a cell's value is the median over its rounds, with an interval honest for their number,
and two cells are compared by ratios paired within a round.

Intervals (for the median over rounds, or of paired ratios):
- 2 to 7 rounds: the min-max of the round values. For R independent values from a continuous distribution the
  population median lies between their min and max with probability 1 - 2 x 0.5^R (75 % at 3, 93.75 % at 5,
  98.4 % at 7), whatever the distribution: that is its stated coverage.
- from 8 rounds (BOOTSTRAP_FROM): a 95 % percentile bootstrap of the median over rounds (2,000 resamples, a fixed
  seed, so the same rounds give the same interval).
- 1 round: no interval.
The spread of the repetitions inside one visit is reported apart (`within_visit`): it is not what a re-run sees."""
from __future__ import annotations

import random
import statistics

BOOTSTRAP_FROM = 8
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_LEVEL = 0.95
P90_MIN_SAMPLES = 64  # MLPerf's minimum for a 90th percentile; fewer samples give none


def minmax_coverage(n: int) -> float:
    """The probability that the population median lies between the min and max of n independent values."""
    return 1.0 - 2.0 * 0.5 ** n


def interval(values: list[float]) -> dict:
    """{low, high, method, coverage, n} of the median of `values` (one value per round); low/high None for one."""
    v = sorted(values)
    n = len(v)
    if n < 2:
        return {"low": None, "high": None, "method": "none (one round)", "coverage": None, "n": n}
    if n < BOOTSTRAP_FROM:
        return {"low": v[0], "high": v[-1], "method": "min-max over rounds", "coverage": minmax_coverage(n), "n": n}
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(v, k=n)) for _ in range(BOOTSTRAP_RESAMPLES))
    tail = (1 - BOOTSTRAP_LEVEL) / 2
    low = medians[int(tail * BOOTSTRAP_RESAMPLES)]
    high = medians[min(BOOTSTRAP_RESAMPLES - 1, int((1 - tail) * BOOTSTRAP_RESAMPLES))]
    return {"low": low, "high": high, "method": f"bootstrap of the median over rounds ({BOOTSTRAP_RESAMPLES} "
                                               f"resamples)", "coverage": BOOTSTRAP_LEVEL, "n": n}


def describe_interval(iv: dict, where: str = "") -> str:
    """'min-max over 5 rounds in 1 process, 94 % coverage of the median' (for captions and claims); `where` says
    how many processes measured the rounds (a one-process interval holds no spread between processes)."""
    if iv.get("low") is None:
        return iv.get("method", "no interval")
    return (f"{iv['method'].replace('rounds', str(iv['n']) + ' rounds' + where, 1)}, {iv['coverage']:.0%} coverage "
            f"of the median")


def p90(values: list[float]) -> float | None:
    """The 90th percentile, only from P90_MIN_SAMPLES samples or more (None below)."""
    v = sorted(values)
    if len(v) < P90_MIN_SAMPLES:
        return None
    return v[min(len(v) - 1, max(0, int(round(0.9 * (len(v) - 1)))))]


def round_summary(values: list[float]) -> dict:
    """The Summary of a metric over rounds (one value per round: the median of its visit's repetitions): median,
    mean, std, min, max and n over rounds, p90 only from 64 rounds, and the interval of the median."""
    v = sorted(values)
    n = len(v)
    return {"median": statistics.median(v), "mean": statistics.fmean(v),
            "std": statistics.stdev(v) if n > 1 else None, "p90": p90(v), "min": v[0], "max": v[-1], "n": n,
            "interval": interval(v)}


def within_visit(groups: list[list[float]]) -> dict:
    """The spread of the repetitions inside each visit (several repetitions per visit), pooled over visits:
    {std, cv, visits}; std and cv None where no visit had two repetitions."""
    pooled = [(len(g) - 1, statistics.variance(g), statistics.fmean(g)) for g in groups if len(g) > 1]
    if not pooled:
        return {"std": None, "cv": None, "visits": len(groups)}
    dof = sum(d for d, _, _ in pooled)
    std = (sum(d * var for d, var, _ in pooled) / dof) ** 0.5
    mean = statistics.fmean(m for _, _, m in pooled)
    return {"std": std, "cv": std / mean if mean else None, "visits": len(groups)}


def paired_ratios(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a[r] / b[r] for every round r both cells have (round -> value)."""
    return [a[r] / b[r] for r in sorted(set(a) & set(b)) if b[r]]


def ratio_verdict(ratios: list[float], direction: str, threshold: float) -> tuple[str, dict]:
    """Judge 'a is greater than b' (direction 'greater') or 'a is less than b' ('less') from paired ratios a/b:
    PASS where the whole interval lies beyond 1 +- threshold on the claimed side, FAIL where it lies beyond
    1 -+ threshold on the other side, else INCONCLUSIVE. With one ratio there is no interval: INCONCLUSIVE.
    Returns the verdict and {median, low, high, agree (rounds on the claimed side), n, interval}."""
    iv = interval(ratios)
    claimed = [r > 1 if direction == "greater" else r < 1 for r in ratios]
    info = {"median": statistics.median(ratios) if ratios else None, "low": iv["low"], "high": iv["high"],
            "agree": sum(claimed), "n": len(ratios), "interval": iv}
    if iv["low"] is None:
        return "INCONCLUSIVE", info
    low, high = iv["low"], iv["high"]
    if direction == "greater":
        verdict = "PASS" if low > 1 + threshold else "FAIL" if high < 1 - threshold else "INCONCLUSIVE"
    else:
        verdict = "PASS" if high < 1 - threshold else "FAIL" if low > 1 + threshold else "INCONCLUSIVE"
    return verdict, info
