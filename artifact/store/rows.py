"""A record read as one flat row: every metric with its unit in the column name (artifact.report.results.COLUMNS
says what each means). The results table is these rows; the MLflow run of a cell logs their key metrics."""
from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import yaml

from ..core import roofline
from ..core.schema import Result
from ..core.stats import P90_MIN_SAMPLES, describe_interval
from .timing import cell_parts

MIB = 2 ** 20


# The headline numbers, also logged as MLflow metrics under these names (units in the names).
KEY_METRICS = ("latency_median_s", "throughput_median_tok_s", "ttft_median_s", "decode_median_tok_s",
               "per_token_median_s", "mem_peak_mib", "weights_mib", "power_median_w", "energy_j",
               "energy_per_token_j", "net_energy_per_token_j", "perplexity", "decode_bw_fraction",
               "prefill_flops_fraction")


BACK_TO_BACK = "back-to-back repetitions"


def row_from_record(folder: Path) -> dict:
    """One results-table row from a record folder: its config.yaml and the named sections of its result.json
    (artifact.core.schema.Result). A section or value the record lacks is None: absent, never zero. The columns
    come in three parts, in the results table's order: the cell, its speed and memory, its power and provenance."""
    result: Result = json.loads((folder / "result.json").read_text())
    config = yaml.safe_load((folder / "config.yaml").read_text())
    stat = _stats(result.get("metrics", {}))
    prov, device = result.get("provenance", {}), str(result.get("device", ""))
    hardware = result.get("hardware") or (prov.get("gpu_name") if device.startswith("cuda") else None) \
        or prov.get("cpu_model")
    peaks = result.get("device_peaks") or roofline.table_peaks(hardware, prov.get("memory_total_bytes"),
                                                               config["power"]["name"])
    roof = roofline.fractions(config, result, peaks, {"per_token_s": stat("per_token_latency_s", "median"),
                                                      "ttft_s": stat("ttft_s", "median")})
    return {**_cell_columns(config, result, hardware, stat), **_speed_columns(result, stat),
            **_power_columns(folder, config, result, roof), "peaks": (peaks or {}).get("name") if peaks else None,
            **_provenance_columns(folder, result)}


def _stats(metrics: dict):
    """stat(metric, s): one statistic of a metric's summary; absent (None) where the record cannot give it."""
    def stat(metric: str, s: str):
        summary = metrics.get(metric) or {}
        if s == "std" and (summary.get("n") or 0) < 2:
            return None  # one repetition has no spread: absent, not zero
        if s == "p90" and (summary.get("n") or 0) < P90_MIN_SAMPLES:
            return None  # no 90th percentile from fewer than 64 samples
        if s in ("low", "high"):
            return (summary.get("interval") or {}).get(s)
        return summary.get(s)
    return stat


def _cell_columns(config: dict, result: dict, hardware: str | None, stat) -> dict:
    """What the cell is, where and when it ran, and its design."""
    prov, tokens, model = result.get("provenance", {}), result.get("tokens", {}), result.get("model", {})
    device = str(result.get("device", ""))
    return {
        "study": config["study"], "profile": config.get("profile", ""), "model": config["model"]["name"],
        # the config's count: packed 4-bit weights make the loaded count smaller
        "params": config["model"].get("params") or model.get("params"),
        "weights": config["model"]["weights"],
        "quant": config["quant"]["name"], "workload": config["workload"]["name"],
        "batch_size": config["batch_size"], "seq_len": config["seq_len"],
        "in_len": tokens.get("in_len"), "out_len": tokens.get("out_len"),
        "power_mode": config["power"]["name"], "meter": config["meter"]["name"], "device": result.get("device"),
        "host_kind": "jetson" if prov.get("l4t_release") else device.split(":")[0],
        "hardware": hardware,
        "date": result.get("started_at"), "status": result["status"], "message": result.get("message", ""),
        "reps": sum(v.get("reps", 0) for v in result.get("visits", [])) or stat("latency_s", "n"),
        **_design(result)}


def _speed_columns(result: dict, stat) -> dict:
    """Latency, throughput, time to first token, decode rate, memory and perplexity."""
    memory, model, ppl = result.get("memory", {}), result.get("model", {}), result.get("perplexity", {})
    mem, weights = memory.get("incremental_peak_bytes"), model.get("weight_bytes")
    return {
        "latency_median_s": stat("latency_s", "median"), "latency_mean_s": stat("latency_s", "mean"),
        "latency_std_s": stat("latency_s", "std"), "latency_p90_s": stat("latency_s", "p90"),
        "latency_min_s": stat("latency_s", "min"), "latency_max_s": stat("latency_s", "max"),
        "latency_low_s": stat("latency_s", "low"), "latency_high_s": stat("latency_s", "high"),
        "latency_within_visit_cv": ((result.get("within_visit") or {}).get("latency_s") or {}).get("cv"),
        "throughput_low_tok_s": stat("token_throughput_tps", "low"),
        "throughput_high_tok_s": stat("token_throughput_tps", "high"),
        "throughput_median_tok_s": stat("token_throughput_tps", "median"),
        "throughput_std_tok_s": stat("token_throughput_tps", "std"),
        "ttft_median_s": stat("ttft_s", "median"), "decode_median_tok_s": stat("decode_tps", "median"),
        "per_token_median_s": stat("per_token_latency_s", "median"),
        "mem_peak_mib": mem / MIB if mem is not None else None,
        "weights_mib": weights / MIB if weights is not None else None,
        "perplexity": ppl.get("perplexity"), "ppl_tokens": ppl.get("scored_tokens")}


def _power_columns(folder: Path, config: dict, result: dict, roof: dict) -> dict:
    """Power and energy (with their intervals and the sensor's own columns), and the roofline fractions."""
    power = result.get("power", {})
    energy = power.get("energy", {})
    timed_power = (power.get("timed") or {}).get("power_w") or {}
    idle_power = (power.get("idle") or {}).get("power_w") or {}
    return {
        "power_status": power.get("status", "no sensor"),
        "power_median_w": timed_power.get("median"), "power_mean_w": timed_power.get("mean"),
        "idle_power_w": idle_power.get("median"),
        "energy_j": energy.get("per_rep_j_median"), "energy_per_token_j": energy.get("per_token_j"),
        "net_energy_per_token_j": energy.get("net_per_token_j"), **_power_spread(folder, energy, config), **roof,
        **_sensor_columns(power),
        "power_low_w": (timed_power.get("interval") or {}).get("low"),
        "power_high_w": (timed_power.get("interval") or {}).get("high"),
        "energy_per_token_low_j": ((energy.get("per_token_j_rounds") or {}).get("interval") or {}).get("low"),
        "energy_per_token_high_j": ((energy.get("per_token_j_rounds") or {}).get("interval") or {}).get("high")}


def _provenance_columns(folder: Path, result: dict) -> dict:
    """Where the cell's record came from and where its time went: twins, parts of the cell's time, the GPU, the
    energy check, the commit, the record's folder."""
    parts, prov = cell_parts(result), result.get("provenance", {})
    power = result.get("power", {})
    meter, energy = power.get("meter") or {}, power.get("energy", {})
    return {
        "implied_by": result.get("implied_by"),
        "same_record_as": result.get("same_record_as"),
        "cell_s": result.get("cell_seconds"), "timed_s": parts["timed"], "warmup_s": parts["warmup"],
        "load_s": parts["load"], "build_s": parts["build"], "ppl_s": parts["perplexity"], "idle_s": parts["idle"],
        "canary_s": parts["canary"] or None,
        "gpu_uuid": meter.get("gpu_uuid") or result.get("gpu_uuid"),
        "gpu_uuids": " ".join((result.get("rounds") or {}).get("gpu_uuids") or []) or None,
        "gpu_pci": meter.get("gpu_pci"), "gpu_pci_cuda": meter.get("gpu_pci_cuda"),
        "cuda_visible_devices": result.get("cuda_visible_devices"),
        "energy_check_rel": energy.get("sampled_vs_counter_rel"),
        "git_sha": _git_sha(prov), "cell_hash": result["cell_hash"],
        "record": f"traces/{folder.parent.name}/{folder.name}",
    }


def _sensor_columns(power: dict) -> dict:
    """The energy bound of a meter with no counter, and jtop's `tot` figure on a Jetson."""
    energy, timed = power.get("energy") or {}, power.get("timed") or {}
    return {"energy_bound_rel": energy.get("bound_rel"),
            "power_median_jtop_tot_w": (timed.get("jtop_tot") or {}).get("median_w"),
            "energy_per_token_jtop_tot_j": energy.get("jtop_tot_per_token_j")}


def _design(result: dict) -> dict:
    """The design columns: rounds with their count and interval, or back-to-back repetitions (every record made
    before the rounds design, and the fit tests)."""
    if result.get("design") != "rounds":
        return {"design": BACK_TO_BACK, "rounds": None, "interval": None}
    iv = ((result.get("metrics") or {}).get("latency_s") or {}).get("interval") or {}
    rounds = result.get("rounds") or {}
    processes, gpus = len(rounds.get("group_runs") or []), len(rounds.get("gpu_uuids") or [])
    where = f" in {processes} process{'es' if processes > 1 else ''}" if processes else ""
    where += f" on {gpus} GPUs" if gpus > 1 else ""  # rounds resumed on another machine
    return {"design": "rounds", "rounds": rounds.get("done"),
            "interval": describe_interval(iv, where) if iv else None}


def _git_sha(prov: dict) -> str | None:
    sha = prov.get("git_sha")
    if not sha or sha == "unknown":
        return None
    return sha[:12] + ("+dirty" if prov.get("git_dirty") else "")


def _power_spread(folder: Path, energy: dict, config: dict) -> dict:
    """Spread over the repetitions of mean power and energy per token, from each repetition's energy
    (power.energy.per_rep_j) and latency (reps.csv); absent with fewer than two repetitions."""
    out = {"power_std_w": None, "energy_per_token_std_j": None}
    per_rep = energy.get("per_rep_j") or []
    reps = folder / "reps.csv"
    if len(per_rep) < 2 or not reps.is_file():
        return out
    with open(reps, newline="") as f:
        latencies = [float(r["latency_s"]) for r in csv.DictReader(f)]
    if len(latencies) != len(per_rep):
        return out
    tokens = config["batch_size"] * config["seq_len"]
    out["power_std_w"] = statistics.stdev(j / s for j, s in zip(per_rep, latencies))
    out["energy_per_token_std_j"] = statistics.stdev(j / tokens for j in per_rep)
    return out
