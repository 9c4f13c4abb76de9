"""A record's power section: the idle power of a power mode, and the statistics and energy of a cell's timed
window from the sampler's samples and the meter's energy counter."""
from __future__ import annotations

import statistics
import time

from ..core.schema import Power, Rep, Tokens
from .energy import (
    CoverageError,
    check_coverage,
    independent_updates,
    sampled_energy_bound,
    update_s,
    updates_seen,
    window,
)
from .meters import Meter
from .sampler import Sampler


def idle_power(meter: Meter, meter_cfg, mode: str, *, measured: dict) -> dict:
    """Idle power of this power mode: the meter sampled for idle_seconds with nothing running. Measured
    before the first cell of each mode (after its model is loaded) and reused by later cells: `measured`
    (the session's) keeps it per (meter, mode)."""
    key = (meter.name, mode)
    if key in measured:
        return {**measured[key], "measured_in": "an earlier cell of this process (same power mode)"}
    if meter_cfg.idle_seconds <= 0:
        return {"status": "not measured", "reason": "meter.idle_seconds=0"}
    sampler = Sampler(meter, meter_cfg.rate_hz).start()
    t0 = time.perf_counter()
    time.sleep(meter_cfg.idle_seconds)
    t1 = time.perf_counter()
    sampler.stop()
    try:
        check_coverage([s.t for s in sampler.samples], [s.total_w for s in sampler.samples], t0, t1,
                       sampler.period_s, min_samples=meter_cfg.min_samples, max_gap_periods=meter_cfg.max_gap_periods,
                       stale_s=None, update_s=update_s(sampler))  # idle power may well be constant
    except CoverageError as e:
        return {"status": "invalid", "reason": str(e)}
    w = window(sampler.samples, t0, t1)
    measured[key] = {"status": "ok", "power_w": w["power_w"], "seconds": w["seconds"], "energy_j": w["energy_j"]}
    return {**measured[key], "measured_in": "this cell"}


def summarize(sampler: Sampler, reps: list[Rep], idle: dict, meter_cfg, tokens: Tokens) -> Power:
    """The power section of a record: timed-window statistics, energy, net of idle, per token, prefill vs decode,
    per rail. Invalid coverage gives a status and no numbers.

    Energy: where the meter has an energy counter (NVML, RAPL) the counter is the number. It is read at its own
    ticks just before and after the timed window, and the sampled power (trapezoid) apportions that energy to
    the window, each repetition, prefill and decode; `source` says "counter", and the raw trapezoid stays in
    the record as the check (sampled_timed_j, sampled_vs_counter_rel over exactly the counter's interval).
    Without a counter (INA3221, jtop) the trapezoid is the number (`source` "samples"), with the bound the sensor's
    timing puts on it (`bound_j`: artifact.power.energy.sampled_energy_bound). The window's independent sensor updates
    (`timed.updates`, from the update interval) and the changes the trace shows (`timed.updates_seen`) are kept."""
    meter = sampler.meter
    out: Power = {"meter": meter.describe(), "rate_hz_requested": meter_cfg.rate_hz,
                  "rate_hz_achieved": sampler.achieved_rate_hz(), "samples_total": len(sampler.samples),
                  "sampler_errors": sampler.errors, "idle": idle}
    if getattr(meter, "auto_tried", None) is not None:
        out["meter"]["auto_skipped"] = meter.auto_tried
    t0, t1 = reps[0]["t_start"], reps[-1]["t_end"]
    ts, ws = [s.t for s in sampler.samples], [s.total_w for s in sampler.samples]
    try:
        check_coverage(ts, ws, t0, t1, sampler.period_s, min_samples=meter_cfg.min_samples,
                       max_gap_periods=meter_cfg.max_gap_periods, stale_s=meter_cfg.stale_s, update_s=update_s(sampler))
    except CoverageError as e:
        return {**out, "status": "invalid", "reason": str(e)}
    timed_window = window(sampler.samples, t0, t1)
    timed_window.update(updates=independent_updates(sampler, t0, t1),
                        updates_seen=updates_seen(sampler.samples, t0, t1))
    out.update(status="ok", timed=timed_window)
    counter = _counter(sampler)
    scale = counter["counter_j"] / counter["sampled_over_counter_interval_j"] if counter else 1.0
    per_rep = [window(sampler.samples, r["t_start"], r["t_end"])["energy_j"] * scale for r in reps]
    prefill = sum(window(sampler.samples, r["t_start"], r["t_first_token"])["energy_j"] for r in reps) * scale
    decode = sum(window(sampler.samples, r["t_first_token"], r["t_end"])["energy_j"] for r in reps) * scale
    timed_j = timed_window["energy_j"] * scale
    n_reps = len(reps)
    all_tokens = tokens["batch_size"] * (tokens["in_len"] + tokens["out_len"]) * n_reps
    out["energy"] = {
        "source": "counter" if counter else "samples", "timed_j": timed_j,
        "per_rep_j_median": statistics.median(per_rep), "per_rep_j": per_rep, "prefill_j": prefill,
        "decode_j": decode, "per_token_j": timed_j / all_tokens,
        "per_generated_token_j": timed_j / (tokens["generated_per_rep"] * n_reps),
        "sampled_timed_j": timed_window["energy_j"]}
    if not counter:
        bound = sampled_energy_bound(sampler.samples, t0, t1, meter.staleness_s, sampler.period_s)
        out["energy"].update(bound, bound_rel=bound["bound_j"] / timed_j if bound["bound_j"] is not None else None)
    if "jtop_tot" in timed_window:
        out["energy"]["jtop_tot_per_token_j"] = timed_window["jtop_tot"]["energy_j"] / all_tokens
    if idle.get("status") == "ok":
        net = timed_j - idle["power_w"]["median"] * timed_window["seconds"]
        out["energy"].update(net_j=net, net_per_token_j=net / all_tokens, idle_power_w=idle["power_w"]["median"])
    if counter:
        out["energy"].update(counter)
    return out


def _counter(sampler: Sampler) -> dict | None:
    """The energy counter over its own interval (its ticks just before and after the timed window) and the
    sampled energy over exactly that interval; None without a counter, or when it did not move."""
    if "timed_start" not in sampler.counters or "end" not in sampler.counters:
        return None
    (ca, ja), (cb, jb) = sampler.counters["timed_start"], sampler.counters["end"]
    counter, sampled = jb - ja, window(sampler.samples, ca, cb)["energy_j"]
    if counter <= 0 or sampled <= 0:
        return None
    return {"counter_j": counter, "counter_interval_s": cb - ca, "sampled_over_counter_interval_j": sampled,
            "sampled_vs_counter_rel": (sampled - counter) / counter}
