"""Power statistics and energy of time windows from timestamped samples (trapezoid rule), with the
coverage checks that decide whether a window's numbers can be trusted."""
from __future__ import annotations

import bisect
import statistics

from .meters import Reading

# The timed window of a cell with a power meter lasts at least this many sampler periods (50 at 10 Hz: 5 s),
# so that it holds that many samples and, on NVML (a counter tick each 100 ms), about as many counter ticks.
MIN_WINDOW_PERIODS = 50


class CoverageError(ValueError):
    """Too few samples, a gap, or a stale sensor: the window's power numbers are invalid."""


def _value_at(ts: list[float], ws: list[float], t: float) -> float:
    """Linear interpolation; held constant beyond the first/last sample."""
    i = bisect.bisect_left(ts, t)
    if i == 0:
        return ws[0]
    if i == len(ts):
        return ws[-1]
    t0, t1 = ts[i - 1], ts[i]
    return ws[i - 1] + (ws[i] - ws[i - 1]) * (t - t0) / (t1 - t0) if t1 > t0 else ws[i]


def integrate(ts: list[float], ws: list[float], t0: float, t1: float) -> float:
    """Energy in joules over [t0, t1] of the piecewise-linear power through the samples."""
    if t1 <= t0 or not ts:
        return 0.0
    inner = [(t, w) for t, w in zip(ts, ws) if t0 < t < t1]
    pts = [(t0, _value_at(ts, ws, t0)), *inner, (t1, _value_at(ts, ws, t1))]
    return sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:]))


def check_coverage(ts: list[float], ws: list[float], t0: float, t1: float, period_s: float, *,
                   min_samples: int, max_gap_periods: float, stale_s: float | None) -> None:
    """The rules that make a window's power numbers valid (else CoverageError, and the record says "invalid"
    with this reason instead of numbers):
    1. at least `min_samples` samples inside [t0, t1] (meter.min_samples);
    2. no gap longer than `max_gap_periods` sampling periods between the window's edges and its samples
       (a stalled sensor or sampler);
    3. for windows of `stale_s` seconds or more, not one identical value throughout (a stale sensor; idle
       windows pass stale_s=None, since idle power may well be constant)."""
    inside = [i for i, t in enumerate(ts) if t0 <= t <= t1]
    if len(inside) < min_samples:
        raise CoverageError(f"{len(inside)} power samples in a {t1 - t0:.2f} s window, need >= {min_samples} "
                            f"(sampling every {period_s:.3f} s): run longer (min_seconds) or sample faster")
    max_gap = max_gap_periods * period_s
    edges = [t0] + [ts[i] for i in inside] + [t1]
    gap = max(b - a for a, b in zip(edges, edges[1:]))
    if gap > max_gap:
        raise CoverageError(f"a {gap:.3f} s gap between power samples (allowed {max_gap:.3f} s): the sensor or "
                            f"the sampler stalled")
    if stale_s is not None and t1 - t0 >= stale_s and len({ws[i] for i in inside}) == 1:
        raise CoverageError(f"the sensor returned the same value ({ws[inside[0]]} W) for {t1 - t0:.1f} s: stale")


def power_stats(values: list[float]) -> dict:
    v = sorted(values)
    p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
    return {"median": statistics.median(v), "mean": statistics.fmean(v), "p95": p95,
            "min": v[0], "max": v[-1], "n": len(v)}


def window(samples: list[Reading], t0: float, t1: float) -> dict:
    """Power statistics, energy and per-rail breakdown of one window (coverage checked by the caller)."""
    ts = [s.t for s in samples]
    totals = [s.total_w for s in samples]
    inside = [s for s in samples if t0 <= s.t <= t1]
    rails = sorted({r for s in samples for r in s.rails})
    # a short window (a prefill) may hold no sample: its energy is still interpolated, its stats absent
    out = {"seconds": t1 - t0, "power_w": power_stats([s.total_w for s in inside]) if inside else None,
           "energy_j": integrate(ts, totals, t0, t1), "rails": {}}
    for r in rails:
        pts = [(s.t, s.rails[r]) for s in samples if r in s.rails]
        rts, rws = [p[0] for p in pts], [p[1] for p in pts]
        vals = [s.rails[r] for s in inside if r in s.rails]
        out["rails"][r] = {"median_w": statistics.median(vals) if vals else None,
                           "energy_j": integrate(rts, rws, t0, t1)}
    return out
