"""Tables from the results table, each written as Markdown, LaTeX and CSV."""
from __future__ import annotations

import csv
from pathlib import Path

from .figures import QUANT_ORDER, order


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"
    return str(v)


def models(spec: dict, rows: list[dict]) -> tuple[list[str], list[list]]:
    """Per model, precision and hardware: parameters, weight memory as loaded, and the largest batch that fits
    at the study's sequence length (bounded by the smallest batch that ran out of memory). A batch that failed
    otherwise (status error: neither fits nor OOM, its message in results.csv) is named apart. What fits is a
    property of the GPU's memory, so cells of two GPU models are never merged into one row."""
    head = ["model", "params (B)", "precision", "hardware", "weights (MiB)", "largest batch that fits",
            "smallest OOM batch", "failed (error)", "batches tried", "seq_len"]
    body = []
    keys = sorted({(r["model"], r["quant"], r["hardware"]) for r in rows},
                  key=lambda k: (k[0], QUANT_ORDER.index(k[1]) if k[1] in QUANT_ORDER else 99, k[2]))
    for model, quant, hardware in keys:
        rs = [r for r in rows if (r["model"], r["quant"], r["hardware"]) == (model, quant, hardware)]
        ok = [r for r in rs if r["status"] == "ok"]
        oom = [r["batch_size"] for r in rs if r["status"] == "oom"]
        failed = sorted(r["batch_size"] for r in rs if r["status"] == "error")
        weights = next((r["weights_mib"] for r in ok if r.get("weights_mib") is not None), None)
        params = next((r["params"] for r in rs if r.get("params")), None)
        fits = max((r["batch_size"] for r in ok), default=None)
        body.append([model, _fmt(params / 1e9 if params else None, 3), quant, hardware, _fmt(weights),
                     fits if fits is not None else "none", min(oom) if oom else "no OOM",
                     ",".join(str(b) for b in failed) or "none",
                     ",".join(str(b) for b in sorted({r["batch_size"] for r in rs})),
                     ",".join(str(s) for s in sorted({r["seq_len"] for r in rs}))])
    return head, body


def pivot(spec: dict, rows: list[dict]) -> tuple[list[str], list[list]]:
    rk, ck, vk = spec["rows"], spec["columns"], spec["value"]
    cols = order(list({r[ck] for r in rows}), ck)
    head = [rk] + [str(c) for c in cols]
    body = []
    for rv in sorted({r[rk] for r in rows}):
        line = [rv]
        for c in cols:
            vals = [r[vk] for r in rows if r[rk] == rv and r[ck] == c and r["status"] == "ok" and r.get(vk) is not None]
            oom = any(r["status"] == "oom" for r in rows if r[rk] == rv and r[ck] == c)
            line.append(_fmt(vals[0]) if vals else ("OOM" if oom else "–"))
        body.append(line)
    return head, body


def power_modes(spec: dict, rows: list[dict]) -> tuple[list[str], list[list]]:
    """The configured modes (conf/power, resolved into spec["mode_configs"] by experiments.load) and, where a
    Jetson ran them, what was measured there. `clocks`: stock (NVIDIA's mode: unlisted clocks are its own),
    given (a custom mode's clocks, as configured) or unknown (a custom mode whose clocks nobody has stated)."""
    head = ["mode", "nvpmodel name", "CPU cores", "CPU max (MHz)", "GPU max (MHz)", "EMC max (MHz)", "clocks",
            "idle power (W)", "median power under load (W)", "latency (s)"]
    body = []
    for name, mode in zip(spec["modes"], spec["mode_configs"]):
        e = mode.expect
        unset = "not known" if mode.clocks == "unknown" else "stock"
        measured = [r for r in rows if r["power_mode"] == name and r["status"] == "ok"]
        m = measured[0] if measured else {}
        body.append([name, mode.nvpmodel_name or "–", e.get("cpu_cores_online") or unset,
                     _mhz(e.get("cpu_max_khz"), 1e3, unset),
                     _mhz(e.get("gpu_max_hz"), 1e6, unset), _mhz(e.get("emc_max_hz"), 1e6, unset),
                     mode.clocks,
                     _fmt(m.get("idle_power_w")) if m else "not measured",
                     _fmt(m.get("power_median_w")) if m else "not measured",
                     _fmt(m.get("latency_median_s")) if m else "not measured"])
    return head, body


def _mhz(value, scale: float, unset: str) -> str:
    return _fmt(value / scale, 5) if value else unset


RERUN_KEYS = ("model", "quant", "workload", "batch_size", "seq_len", "hardware", "design")


def _bar(r: dict, metric: str, unit: str) -> str:
    low, high = r.get(f"{metric}_low_{unit}"), r.get(f"{metric}_high_{unit}")
    median = r[f"{metric}_median_{unit}"]
    return f"{_fmt(median)} [{_fmt(low)}, {_fmt(high)}]" if low is not None else _fmt(median)


def _agree(a: dict, b: dict, metric: str, unit: str) -> tuple[bool, bool] | None:
    """(the two intervals overlap, each holds the other's median); None where either has no interval."""
    la, ha, lb, hb = (r.get(f"{metric}_{s}_{unit}") for r in (a, b) for s in ("low", "high"))
    if None in (la, ha, lb, hb):
        return None
    ma, mb = a[f"{metric}_median_{unit}"], b[f"{metric}_median_{unit}"]
    return la <= hb and lb <= ha, la <= mb <= ha and lb <= ma <= hb


def rerun(spec: dict, rows: list[dict]) -> tuple[list[str], list[list]]:
    """A second run against the first (study spec["of"]), cell by cell: the same model, precision, workload, batch,
    sequence length, GPU model and design. Per metric of spec["metrics"] (latency_s, throughput_tok_s): each run's
    median [interval], whether the intervals overlap, whether each holds the other's median, and second / first.
    The GPUs column names each run's GPU (its NVML UUID's first block): another machine shows another UUID. Where
    the rows carry the drift canary of their group runs (report.build.with_canary), each run's probe times per
    repetition and their ratio follow: a host that was slower in one run shows there. The last row counts the cells
    that agree, of those with an interval in both runs (a cell of one round has none: "–", not a disagreement)."""
    second = [r for r in rows if r["study"] != spec["of"] and r["status"] == "ok"]
    first = {tuple(r[k] for k in RERUN_KEYS): r for r in rows if r["study"] == spec["of"] and r["status"] == "ok"}
    head = ["model", "batch", "seq_len", "hardware", "GPUs (first / second)"]
    for metric in spec["metrics"]:
        head += [f"{metric}: first", f"{metric}: second", "overlap", "each holds the other's median", "second / first"]
    probes = any("canary_host_s" in r for r in second)
    if probes:
        head += ["canary host probe, s per generation: first / second", "canary device probe, ms per product: "
                 "first / second"]
    body, agree = [], {m: [0, 0, 0] for m in spec["metrics"]}
    pairs = [(first[k], r) for r in second if (k := tuple(r[k] for k in RERUN_KEYS)) in first]
    for a, b in sorted(pairs, key=lambda p: (p[1]["model"], p[1]["batch_size"], p[1]["seq_len"])):
        line = [b["model"], b["batch_size"], b["seq_len"], b["hardware"],
                f"{short_uuid(a.get('gpu_uuid'))} / {short_uuid(b.get('gpu_uuid'))}"]
        for metric in spec["metrics"]:
            name, unit = metric.split("_", 1)  # latency_s: latency_median_s, latency_low_s, latency_high_s
            both = _agree(a, b, name, unit)
            counts = agree[metric]
            if both:
                counts[0] += 1
                counts[1] += both[0]
                counts[2] += both[1]
            ratio = b[f"{name}_median_{unit}"] / a[f"{name}_median_{unit}"]
            line += [_bar(a, name, unit), _bar(b, name, unit),
                     "–" if both is None else ("yes" if both[0] else "NO"),
                     "–" if both is None else ("yes" if both[1] else "no"), f"{ratio:.3f}"]
        if probes:
            line += [_pair(a, b, "canary_host_s", 1), _pair(a, b, "canary_device_s", 1e3)]
        body.append(line)
    if body:
        total = [f"{len(body)} cells in both runs", "", "", "", ""]
        for metric in spec["metrics"]:
            n, overlap, holds = agree[metric]
            unjudged = f" ({len(body) - n} without an interval)" if n < len(body) else ""
            total += ["", "", f"{overlap} of {n}{unjudged}", f"{holds} of {n}{unjudged}", ""]
        total += ["", ""] if probes else []
        body.append(total)
    return head, body


def _pair(a: dict, b: dict, key: str, scale: float) -> str:
    """first / second (second / first) of a column both rows may lack."""
    if a.get(key) is None or b.get(key) is None:
        return "–"
    return f"{a[key] * scale:.3f} / {b[key] * scale:.3f} ({b[key] / a[key]:.2f})"


def short_uuid(uuid: str | None) -> str:
    """A GPU's NVML UUID by its first block (GPU-df589dac-... -> df589dac), enough to tell two machines apart."""
    return uuid.split("-")[1] if uuid else "no uuid"


def gpus(row: dict) -> list[str]:
    """Every GPU that measured a cell: its rounds' GPUs where they ran on several (rounds resumed on another
    machine), else the one it names; none for a cell that names no GPU."""
    if row.get("gpu_uuids"):
        return row["gpu_uuids"].split()
    return [row["gpu_uuid"]] if row.get("gpu_uuid") else []


# conf/experiment table.kind
TABLE_BUILDERS = {"models": models, "pivot": pivot, "power_modes": power_modes, "rerun": rerun}


def _latex_escape(s: str) -> str:
    return str(s).replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&") \
        .replace("#", "\\#").replace("–", "--")


def write(exp: dict, rows: list[dict], caption: str, out_dir: Path) -> list[Path]:
    head, body = TABLE_BUILDERS[exp["table"]["kind"]](exp["table"], rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / exp["name"]
    md = [f"**{exp['title']}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(str(c) for c in line) + " |" for line in body]
    md += ["", f"*{caption}*", ""]
    base.with_suffix(".md").write_text("\n".join(md))
    tex = ["\\begin{table}[t]", "\\centering\\small", "\\begin{tabular}{" + "l" * len(head) + "}", "\\toprule",
           " & ".join(_latex_escape(h) for h in head) + " \\\\", "\\midrule"]
    tex += [" & ".join(_latex_escape(c) for c in line) + " \\\\" for line in body]
    tex += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{_latex_escape(exp['title'])}. {_latex_escape(caption)}}}",
            f"\\label{{tab:{exp['name']}}}", "\\end{table}", ""]
    base.with_suffix(".tex").write_text("\n".join(tex))
    with open(base.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(body)
    return [base.with_suffix(s) for s in (".md", ".tex", ".csv")]
