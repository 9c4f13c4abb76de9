"""Records -> one results table: one row per cell, every metric with its unit in the column name.
Everything the figures, tables and claim checks show is a column of this table, so each number traces
back to a record (the `record` column) and the report never re-measures."""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

from ..store.rows import row_from_record

# (column, meaning). The unit is the name's suffix: _s seconds, _tok_s tokens per second, _mib MiB,
# _w watts, _j joules; perplexity has none.
COLUMNS = [
    ("study", "experiment study (traces/<study>/)"), ("profile", "paper | gpu | smoke"),
    ("model", "model config name"), ("params", "parameter count"), ("weights", "real | synthetic"),
    ("quant", "precision"), ("workload", "prompt corpus"), ("batch_size", "prompts per batch"),
    ("seq_len", "input + output tokens"), ("in_len", "input tokens"), ("out_len", "generated tokens"),
    ("power_mode", "power mode"), ("meter", "power meter"), ("device", "cpu | cuda"),
    ("host_kind", "jetson | cuda | cpu: which of the paper's numbers apply"), ("hardware", "CPU or GPU name"),
    ("date", "start of the cell"), ("status", "ok | oom | error"), ("message", "error text"),
    ("reps", "timed repetitions (all visits)"),
    ("design", "rounds (randomized interleaved rounds) | back-to-back repetitions"),
    ("rounds", "rounds recorded (rounds design)"),
    ("interval", "what the _low/_high columns are: the interval of the median, its method and coverage"),
    ("latency_median_s", ""), ("latency_mean_s", ""), ("latency_std_s", ""), ("latency_p90_s", ""),
    ("latency_min_s", ""), ("latency_max_s", ""),
    ("latency_low_s", "interval of the median latency (rounds design)"), ("latency_high_s", ""),
    ("latency_within_visit_cv", "std / mean of the repetitions inside a visit, pooled (not what a re-run sees)"),
    ("throughput_median_tok_s", "paper's T_P = batch x (in + out) / latency"), ("throughput_std_tok_s", ""),
    ("throughput_low_tok_s", "interval of the median throughput (rounds design)"), ("throughput_high_tok_s", ""),
    ("ttft_median_s", "time to first token (prefill)"), ("decode_median_tok_s", "generated tokens / decode time"),
    ("per_token_median_s", "decode time per generated step"),
    ("mem_peak_mib", "incremental peak memory over the pre-run baseline"),
    ("weights_mib", "weight footprint as loaded"),
    ("perplexity", "WikiText-2 test perplexity"), ("ppl_tokens", "tokens scored"),
    ("power_status", "ok | no sensor | invalid"), ("power_median_w", "median power in the timed window"),
    ("power_mean_w", ""), ("power_std_w", "std over repetitions of each repetition's mean power (energy / latency)"),
    ("power_low_w", "interval of the median power over rounds (rounds design)"), ("power_high_w", ""),
    ("idle_power_w", "median idle power before the cell's mode"),
    ("energy_j", "energy per inference (one batch), median over repetitions"),
    ("energy_per_token_j", "timed energy / (in + out tokens)"),
    ("energy_per_token_std_j", "std over repetitions of each repetition's energy / its (in + out) tokens"),
    ("energy_per_token_low_j", "interval of the median energy per token over rounds (rounds design)"),
    ("energy_per_token_high_j", ""),
    ("net_energy_per_token_j", "minus idle power"),
    ("energy_bound_rel", "no energy counter (a Jetson): how far the sampled energy may be off, from the sensor's "
                         "update interval, relative"),
    ("power_median_jtop_tot_w", "a Jetson: median of jtop's `tot` (the paper's figure: on an AGX Orin the plain sum "
                                "of the four rails, which counts the DDR rail twice)"),
    ("energy_per_token_jtop_tot_j", "a Jetson: energy per token by jtop's `tot`"),
    ("decode_bw_fraction", "decode: (weights + KV read per step) / step time / peak memory bandwidth (roofline.py)"),
    ("prefill_flops_fraction", "prefill: FLOPs / TTFT / peak dense FLOP/s at the compute dtype (roofline.py)"),
    ("peaks", "where the peaks came from: a conf/devices.yaml entry or a probe"),
    ("implied_by", "OOM by implication (batch_ladder): the record of the smaller batch that ran out of memory"),
    ("same_record_as", "the study that measured this cell: the same cell in two studies is measured once"),
    ("cell_s", "the whole cell"), ("timed_s", "timed repetitions"), ("warmup_s", "warm-up generations"),
    ("canary_s", "drift canary points (rounds design: carried by a load group's first cell)"),
    ("load_s", "model load in this cell"), ("build_s", "checkpoint builds in this cell"),
    ("ppl_s", "perplexity computed in this cell"), ("idle_s", "idle-power window in this cell"),
    ("gpu_uuid", "the GPU that ran the cell: the UUID torch gives the cell's device, by which NVML opens the GPU "
                 "it meters (older records name it only where metered)"),
    ("gpu_uuids", "every GPU that measured one of the cell's rounds, where more than one (space-separated); "
                  "gpu_uuid is then the last process's"),
    ("gpu_pci", "that GPU's PCI address as NVML reports it (domain:bus:device)"),
    ("gpu_pci_cuda", "the cell's torch device's PCI address as CUDA reports it (the meter refuses where they differ)"),
    ("cuda_visible_devices", "CUDA_VISIBLE_DEVICES of the cell's process"),
    ("energy_check_rel", "trapezoid of the sampled power / the energy counter - 1, over the same interval"),
    ("git_sha", "the commit that measured the cell (+dirty: with uncommitted changes)"),
    ("cell_hash", "cell identity"), ("record", "the record folder, traces/<study>/<cell_hash>"),
]
NAMES = [c for c, _ in COLUMNS]
INTEGER = ("params", "batch_size", "seq_len", "in_len", "out_len", "reps", "ppl_tokens", "rounds")
NUMERIC = {c for c in NAMES if c.endswith(("_s", "_mib", "_w", "_j", "_fraction", "_rel", "_cv"))
           or c in (*INTEGER, "perplexity")}
# rounds.csv: one row per record and round, what paired claims read (artifact.report.claims)
ROUND_COLUMNS = ["record", "round", "group_run", "group_round", "latency_s", "throughput_tok_s", "power_w", "energy_j",
                 "energy_per_token_j", "started_at", "seconds", "gpu_uuid"]
TEXT_ROUND_COLUMNS = ("record", "group_run", "gpu_uuid")


def round_rows(folder: Path) -> list[dict]:
    """rounds.csv's rows of one record of the rounds design: per round, the median of its visit's repetitions
    (latency, throughput), the visit's median power and energy, and when, how long and on which GPU it ran (no GPU
    on a CPU, nor for a visit recorded before 2026-12-05, when visits began to name it); [] for a back-to-back
    record."""
    result = json.loads((folder / "result.json").read_text())
    if result.get("design") != "rounds" or not (folder / "reps.csv").is_file():
        return []
    with open(folder / "reps.csv", newline="") as f:
        reps = list(csv.DictReader(f))
    tokens = (result.get("tokens") or {})
    per_batch = (tokens.get("batch_size") or 0) * ((tokens.get("in_len") or 0) + (tokens.get("out_len") or 0))
    out = []
    for visit in result.get("visits", []):
        rs = [r for r in reps if int(r["round"]) == visit["round"]]
        if not rs:
            continue
        power = visit.get("power") or {}
        joules = power.get("energy_per_rep_j") if power.get("status") == "ok" else None
        out.append({"record": f"traces/{folder.parent.name}/{folder.name}", "round": visit["round"],
                    "group_run": visit["group_run"], "group_round": visit["group_round"],
                    "latency_s": statistics.median(float(r["latency_s"]) for r in rs),
                    "throughput_tok_s": statistics.median(float(r["token_throughput_tps"]) for r in rs),
                    "power_w": power.get("median_w") if power.get("status") == "ok" else None,
                    "energy_j": joules, "energy_per_token_j": joules / per_batch if joules and per_batch else None,
                    "started_at": visit["started_at"], "seconds": visit.get("seconds"),
                    "gpu_uuid": visit.get("gpu_uuid")})
    return out


def collect_rounds(traces_dir: str | Path, records: list[str]) -> list[dict]:
    """rounds.csv's rows of the named records (traces/<study>/<hash>, as the results table names them)."""
    return [r for rec in records for r in round_rows(Path(traces_dir) / Path(rec).relative_to("traces"))]


def write_rounds(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=ROUND_COLUMNS)
        w.writeheader()
        w.writerows({k: f"{r[k]:.3f}" if k == "started_at" else _cell(r.get(k)) for k in ROUND_COLUMNS} for r in rows)


def read_rounds(path: Path) -> list[dict]:
    """rounds.csv back as typed rows ([] where there is none: every record back-to-back)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (None if v == "" else v if k in TEXT_ROUND_COLUMNS else float(v)) for k, v in r.items()}
            for r in rows]


def collect(traces_dir: str | Path) -> list[dict]:
    """One row per finished or failed record under traces/<study>/<hash>/, sorted for stable output."""
    rows = [row_from_record(r.parent) for r in sorted(Path(traces_dir).glob("*/*/result.json"))]
    return sorted(rows, key=lambda r: (r["study"], r["model"], r["quant"], r["power_mode"], r["workload"],
                                       r["batch_size"], r["seq_len"], r["date"] or ""))


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=NAMES)
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in NAMES})
    tmp.replace(path)


def read_csv(path: Path) -> list[dict]:
    """The results table back as typed rows (empty cells -> None: absent, never zero)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        typed = dict.fromkeys(NAMES)  # a table written before a column existed: the column is absent
        for k, v in r.items():
            if v == "":
                typed[k] = None
            elif k in NUMERIC:
                x = float(v)
                typed[k] = int(x) if k in INTEGER else x
            else:
                typed[k] = v
        out.append(typed)
    return out
