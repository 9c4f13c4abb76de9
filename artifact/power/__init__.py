"""Power and energy: meters (one module per sensor), the sampler, energy metrics, power modes.

Per process: one meter per meter config, one PowerModes (restores the first mode at exit), and one
idle measurement per power mode."""
from __future__ import annotations

import atexit
import json
import statistics
import time

from ..config import to_container
from .energy import CoverageError, check_coverage, window
from .meters import Meter, MeterError, NoMeter, make_meter
from .modes import PowerModes
from .sampler import Sampler

_METERS: dict[str, Meter] = {}
_IDLE: dict[tuple, dict] = {}
_MODES: PowerModes | None = None


def get_meter(mcfg, device: str) -> Meter:
    """One meter per meter config and device in a process, closed (NVML shut down, jtop client
    disconnected) at exit."""
    key = json.dumps([to_container(mcfg), device], sort_keys=True)
    if key not in _METERS:
        _METERS[key] = make_meter(mcfg, device)
        atexit.register(_METERS[key].close)
    return _METERS[key]


def get_modes(pcfg) -> PowerModes:
    global _MODES
    if _MODES is None:
        _MODES = PowerModes(pcfg)
    return _MODES


def idle_power(meter: Meter, mcfg, mode: str) -> dict:
    """Idle power of this power mode: the meter sampled for idle_seconds with nothing running. Measured
    before the first cell of each mode (after its model is loaded) and reused by later cells."""
    key = (meter.name, mode)
    if key in _IDLE:
        return {**_IDLE[key], "measured_in": "an earlier cell of this process (same power mode)"}
    if mcfg.idle_seconds <= 0:
        return {"status": "not measured", "reason": "meter.idle_seconds=0"}
    sampler = Sampler(meter, mcfg.rate_hz).start()
    t0 = time.perf_counter()
    time.sleep(mcfg.idle_seconds)
    t1 = time.perf_counter()
    sampler.stop()
    try:
        check_coverage([s.t for s in sampler.samples], [s.total_w for s in sampler.samples], t0, t1,
                       sampler.period_s, min_samples=mcfg.min_samples, max_gap_periods=mcfg.max_gap_periods,
                       stale_s=None)  # idle power may well be constant
    except CoverageError as e:
        return {"status": "invalid", "reason": str(e)}
    w = window(sampler.samples, t0, t1)
    _IDLE[key] = {"status": "ok", "power_w": w["power_w"], "seconds": w["seconds"], "energy_j": w["energy_j"]}
    return {**_IDLE[key], "measured_in": "this cell"}


def summarize(sampler: Sampler, reps: list[dict], idle: dict, mcfg, tokens: dict) -> dict:
    """The power section of a record: timed-window statistics, energy (trapezoid and counter), net of
    idle, per token, prefill vs decode, per rail. Invalid coverage gives a status and no numbers."""
    meter = sampler.meter
    out = {"meter": meter.describe(), "rate_hz_requested": mcfg.rate_hz, "rate_hz_achieved": sampler.achieved_rate_hz(),
           "samples_total": len(sampler.samples), "sampler_errors": sampler.errors, "idle": idle}
    if getattr(meter, "auto_tried", None) is not None:
        out["meter"]["auto_skipped"] = meter.auto_tried
    t0, t1 = reps[0]["t_start"], reps[-1]["t_end"]
    ts, ws = [s.t for s in sampler.samples], [s.total_w for s in sampler.samples]
    try:
        check_coverage(ts, ws, t0, t1, sampler.period_s, min_samples=mcfg.min_samples,
                       max_gap_periods=mcfg.max_gap_periods, stale_s=mcfg.stale_s)
    except CoverageError as e:
        return {**out, "status": "invalid", "reason": str(e)}
    timed = window(sampler.samples, t0, t1)
    out.update(status="ok", timed=timed)
    per_rep = [window(sampler.samples, r["t_start"], r["t_end"])["energy_j"] for r in reps]
    prefill = sum(window(sampler.samples, r["t_start"], r["t_first_token"])["energy_j"] for r in reps)
    decode = sum(window(sampler.samples, r["t_first_token"], r["t_end"])["energy_j"] for r in reps)
    n_reps = len(reps)
    all_tokens = tokens["batch_size"] * (tokens["in_len"] + tokens["out_len"]) * n_reps
    out["energy"] = {
        "timed_j": timed["energy_j"], "per_rep_j_median": statistics.median(per_rep),
        "per_rep_j": per_rep, "prefill_j": prefill, "decode_j": decode,
        "per_token_j": timed["energy_j"] / all_tokens,
        "per_generated_token_j": timed["energy_j"] / (tokens["generated_per_rep"] * n_reps)}
    if idle.get("status") == "ok":
        net = timed["energy_j"] - idle["power_w"]["median"] * timed["seconds"]
        out["energy"].update(net_j=net, net_per_token_j=net / all_tokens, idle_power_w=idle["power_w"]["median"])
    if "timed_start" in sampler.counters and "end" in sampler.counters:
        # the counter's own interval (its ticks just before and after the timed window), and the sampled
        # energy over exactly that interval
        (ca, ja), (cb, jb) = sampler.counters["timed_start"], sampler.counters["end"]
        counter, sampled = jb - ja, window(sampler.samples, ca, cb)["energy_j"]
        out["energy"].update(counter_j=counter, counter_interval_s=cb - ca, sampled_over_counter_interval_j=sampled,
                             sampled_vs_counter_rel=(sampled - counter) / counter if counter else None)
    return out


__all__ = ["CoverageError", "Meter", "MeterError", "NoMeter", "PowerModes", "Sampler", "get_meter", "get_modes",
           "idle_power", "summarize"]
