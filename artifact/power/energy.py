"""Power statistics and energy of time windows from timestamped samples (trapezoid rule), with the
coverage checks that decide whether a window's numbers can be trusted."""
from __future__ import annotations

import bisect
import statistics

from .meters import Reading

# The timed window of a cell with a power meter lasts at least this many independent sensor updates (the slower of
# the sensor's update interval and the sampling period): 5 s on NVML (a new value and a counter tick each 100 ms),
# 21.5 s on a JetPack 6 INA3221 (430 ms). Without a counter the sampled energy may be off by up to about 3 updates
# of the power's swing (sampled_energy_bound), so 50 updates keep that within about 6 % of the swing over the window.
MIN_WINDOW_UPDATES = 50


def update_s(sampler) -> float:
    """The interval between independent readings in a sampler's trace: the sensor's update or the poll, the slower."""
    return max(sampler.period_s, sampler.meter.update_s)


def independent_updates(sampler, t0: float, t1: float) -> int:
    """How many independent readings the sampler's sensor gives in [t0, t1] (from its update interval)."""
    return int((t1 - t0) / update_s(sampler))


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
                   min_samples: int, max_gap_periods: float, stale_s: float | None, update_s: float = 0.0) -> None:
    """The rules that make a window's power numbers valid (else CoverageError, and the record says "invalid"
    with this reason instead of numbers):
    1. at least `min_samples` independent readings inside [t0, t1] (meter.min_samples): samples, and sensor updates
       (the window over `update_s`, the sensor's update interval), whichever are fewer;
    2. no gap longer than `max_gap_periods` sampling periods between the window's edges and its samples
       (a stalled sensor or sampler);
    3. for windows of `stale_s` seconds or more, not one identical value throughout (a stale sensor; idle
       windows pass stale_s=None, since idle power may well be constant)."""
    inside = [i for i, t in enumerate(ts) if t0 <= t <= t1]
    updates = int((t1 - t0) / update_s) if update_s > 0 else len(inside)
    if min(len(inside), updates) < min_samples:
        raise CoverageError(f"{len(inside)} power samples and {updates} sensor updates (one per {update_s:.3f} s) in "
                            f"a {t1 - t0:.2f} s window, need >= {min_samples} of each (sampling every "
                            f"{period_s:.3f} s): run longer (min_seconds) or sample faster")
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
    """Power statistics, energy and per-rail breakdown of one window (coverage checked by the caller), and on a
    Jetson the same for jtop's `tot` figure (`jtop_tot`)."""
    ts = [s.t for s in samples]
    totals = [s.total_w for s in samples]
    inside = [s for s in samples if t0 <= s.t <= t1]
    rails = sorted({r for s in samples for r in s.rails})
    # a short window (a prefill) may hold no sample: its energy is still interpolated, its stats absent
    out = {"seconds": t1 - t0, "power_w": power_stats([s.total_w for s in inside]) if inside else None,
           "energy_j": integrate(ts, totals, t0, t1), "rails": {}}
    jtop = [s for s in samples if s.jtop_tot_w is not None]
    if jtop:
        jtop_inside = [s.jtop_tot_w for s in jtop if t0 <= s.t <= t1]
        out["jtop_tot"] = {"median_w": statistics.median(jtop_inside) if jtop_inside else None,
                           "energy_j": integrate([s.t for s in jtop], [s.jtop_tot_w for s in jtop], t0, t1)}
    for r in rails:
        pts = [(s.t, s.rails[r]) for s in samples if r in s.rails]
        rts, rws = [p[0] for p in pts], [p[1] for p in pts]
        vals = [s.rails[r] for s in inside if r in s.rails]
        out["rails"][r] = {"median_w": statistics.median(vals) if vals else None,
                           "energy_j": integrate(rts, rws, t0, t1)}
    return out


def updates_seen(samples: list[Reading], t0: float, t1: float) -> int:
    """How many times the total changed inside [t0, t1]: the sensor updates the trace shows (a check on update_s)."""
    vals = [s.total_w for s in samples if t0 <= s.t <= t1]
    return sum(a != b for a, b in zip(vals, vals[1:]))


def sampled_energy_bound(samples: list[Reading], t0: float, t1: float, staleness_s: float, period_s: float) -> dict:
    """How far the sampled energy of [t0, t1] may be from the true energy, where no counter corrects it. A reading
    averages the power of a span that ends up to `staleness_s` before it is polled, and is polled up to one period
    late; so the sampled trace is the true power shifted by at most staleness_s + 2 periods, and a shift by d changes
    a window's energy by at most d x (highest - lowest power around it). The swing is taken from the readings, so a
    swing faster than the sensor averages is not seen (it is averaged out of the energy as well)."""
    shift = staleness_s + 2 * period_s
    near = [s.total_w for s in samples if t0 - shift <= s.t <= t1 + 2 * period_s]
    swing = max(near) - min(near) if near else None
    return {"bound_j": shift * swing if swing is not None else None, "shift_s": shift, "swing_w": swing,
            "bound_is": "sampled trace shifted by up to staleness + 2 sampling periods, times the power's swing"}
