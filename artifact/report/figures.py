"""Figures from the results table, drawn the way a systems paper draws them: labelled axes with units,
one series per varying setting (never two designs or two GPU models in one series), error bars (rounds design: the
interval of the median over rounds; back-to-back records: one standard deviation of the repetitions), out-of-memory
cells marked, and a caption line naming the profile, the hardware, the date and what the error bars are. Every
figure has a CSV beside it with exactly the points drawn, so tests (and readers) can check the data, not the pixels."""
from __future__ import annotations

import csv
import statistics
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

LABELS = {
    "latency_median_s": "Latency per batch (s)",
    "throughput_median_tok_s": "Token throughput $T_P$ (tok/s)",
    "weights_mib": "Weight memory (MiB)",
    "mem_peak_mib": "Peak memory increase (MiB)",
    "power_median_w": "Median power (W)",
    "energy_per_token_j": "Energy per token (J)",
    "energy_j": "Energy per inference (J)",
    "decode_bw_fraction": "Decode: fraction of peak memory bandwidth",
    "batch_size": "Batch size",
    "seq_len": "Sequence length (input + output tokens)",
    "model": "Model", "quant": "Precision", "power_mode": "Power mode",
}
ERRORS = {"latency_median_s": "latency_std_s", "throughput_median_tok_s": "throughput_std_tok_s",
          "power_median_w": "power_std_w", "energy_per_token_j": "energy_per_token_std_j"}
INTERVALS = {"latency_median_s": ("latency_low_s", "latency_high_s"),
             "throughput_median_tok_s": ("throughput_low_tok_s", "throughput_high_tok_s"),
             "power_median_w": ("power_low_w", "power_high_w"),
             "energy_per_token_j": ("energy_per_token_low_j", "energy_per_token_high_j")}
SERIES_KEYS = ("model", "weights", "quant", "workload", "power_mode", "batch_size", "seq_len", "hardware", "design")
QUANT_ORDER = ["fp32", "fp16", "bf16", "int8", "int4", "int4-fp4", "gptq-int4"]
DATA_FIELDS = ["panel", "series", "x", "value", "error", "low", "high", "status", "record"]


def bounds(row: dict, panel: str) -> tuple[float, float] | None:
    """The error bar of a drawn value as (low, high): the interval of a rounds record, the median +- one std of a
    back-to-back one; None where neither was recorded."""
    value = row.get(panel)
    low_col, high_col = INTERVALS.get(panel, ("", ""))
    if row.get("design") == "rounds" and row.get(low_col) is not None:
        return row[low_col], row[high_col]
    std = row.get(ERRORS.get(panel, ""))
    return (value - std, value + std) if std is not None and value is not None else None


def _yerr(rows: list[dict], panel: str):
    """matplotlib's asymmetric yerr for these rows, or None for a panel without error bars."""
    if panel not in ERRORS and panel not in INTERVALS:
        return None
    spans = [bounds(r, panel) or (r[panel], r[panel]) for r in rows]
    return [[r[panel] - lo for r, (lo, _) in zip(rows, spans)], [hi - r[panel] for r, (_, hi) in zip(rows, spans)]]


def _point(panel: str, label: str, x, r: dict, value) -> dict:
    """One drawn point as a row of the figure's CSV."""
    span = bounds(r, panel) if value is not None else None
    return {"panel": panel, "series": label, "x": x, "value": value,
            "error": r.get(ERRORS.get(panel, "")) if value is not None and r.get("design") != "rounds" else None,
            "low": span[0] if span else None, "high": span[1] if span else None,
            "status": r["status"], "record": r["record"]}


def _key(name: str) -> str:
    return "power_mode" if name == "power" else name


def varying(rows: list[dict], exclude: tuple = ()) -> list[str]:
    return [k for k in SERIES_KEYS if k not in exclude and len({r.get(k) for r in rows}) > 1]


def series_label(row: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={row[k]}" if k in ("batch_size", "seq_len") else str(row[k]) for k in keys) or "all"


def order(values: list, key: str) -> list:
    if key == "quant":
        return sorted(values, key=lambda v: QUANT_ORDER.index(v) if v in QUANT_ORDER else len(QUANT_ORDER))
    return sorted(values, key=lambda v: (isinstance(v, str), v))


def _no_data(ax, panel: str, rows: list[dict]) -> None:
    if panel.endswith("_fraction"):
        text = "no device peaks for this hardware"
    elif panel.startswith(("power", "energy")):
        reasons = {r["power_status"] for r in rows if r["status"] == "ok"}
        text = "no power sensor on this host" if reasons <= {"no sensor"} else f"power: {', '.join(sorted(reasons))}"
    else:
        text = "no data"
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def lines(spec: dict, rows: list[dict], axes) -> list[dict]:
    x = _key(spec["x"])
    keys = varying(rows, exclude=(x,))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(series_label(r, keys), []).append(r)
    data = []
    for ax, panel in zip(axes, spec["panels"]):
        drawn = False
        for i, (label, rs) in enumerate(sorted(groups.items())):
            rs = sorted(rs, key=lambda r: r[x])
            ok = [r for r in rs if r["status"] == "ok" and r.get(panel) is not None]
            color = f"C{i % 10}"
            if ok:
                ax.errorbar([r[x] for r in ok], [r[panel] for r in ok], yerr=_yerr(ok, panel),
                            marker="o", ms=4, capsize=3, color=color, label=label)
                drawn = True
            for r in rs:
                if r["status"] == "oom":
                    ax.plot(r[x], 0.97, marker="x", ms=8, mew=2, color=color, transform=ax.get_xaxis_transform(),
                            clip_on=False, label=None)
                    ax.annotate("OOM", (r[x], 0.97), xycoords=("data", "axes fraction"), textcoords="offset points",
                                xytext=(0, -12), ha="center", fontsize=7, color=color)
            for r in rs:
                data.append(_point(panel, label, r[x], r, r.get(panel) if r["status"] == "ok" else None))
        if not drawn:
            _no_data(ax, panel, rows)
        if spec.get("log2_x"):
            ax.set_xscale("log", base=2)
            ticks = sorted({r[x] for r in rows})
            ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel(LABELS.get(x, x))
        ax.set_ylabel(LABELS.get(panel, panel))
        ax.grid(True, alpha=0.3)
    if keys and any(ax.get_legend_handles_labels()[0] for ax in axes):  # one series needs no legend
        axes[0].legend(fontsize=7, title=", ".join(keys), title_fontsize=7)
    return data


def bars(spec: dict, rows: list[dict], axes) -> list[dict]:
    x, series = _key(spec["x"]), _key(spec["series"])
    keys = varying(rows, exclude=(x, series))
    cats = order(list({r[x] for r in rows}), x)
    # a bar per series value, and per GPU model where the cells come from several: their bars never overlap
    per_hw = "hardware" in keys
    sers = [(s, hw) for s in order(list({r[series] for r in rows}), series)
            for hw in sorted({r["hardware"] for r in rows if r[series] == s} if per_hw else {None})]
    width = 0.8 / max(1, len(sers))
    data = []
    for ax, panel in zip(axes, spec["panels"]):
        drawn = False
        for j, (s, hw) in enumerate(sers):
            for i, c in enumerate(cats):
                rs = [r for r in rows if r[x] == c and r[series] == s and (hw is None or r["hardware"] == hw)]
                for r in rs:
                    label = series_label(r, [series] + keys)
                    pos = i - 0.4 + width * (j + 0.5)
                    value = r.get(panel) if r["status"] == "ok" else None
                    if value is not None:
                        ax.bar(pos, value, width, yerr=_yerr([r], panel), capsize=2, color=f"C{j % 10}")
                        drawn = True
                    elif r["status"] == "oom":
                        ax.text(pos, 0, "OOM", rotation=90, ha="center", va="bottom", fontsize=7, color=f"C{j % 10}")
                    data.append(_point(panel, label, c, r, value))
        if not drawn:
            _no_data(ax, panel, rows)
        ax.set_xticks(range(len(cats)), [str(c) for c in cats], rotation=20 if len(cats) > 3 else 0, fontsize=8)
        ax.set_xlabel(LABELS.get(x, x))
        ax.set_ylabel(LABELS.get(panel, panel))
        ax.grid(True, axis="y", alpha=0.3)
        if drawn and panel == spec["panels"][0]:  # every series named, also one with no bar in this panel
            handles = [Patch(color=f"C{j % 10}", label=str(s) if hw is None else f"{s}, {hw}")
                       for j, (s, hw) in enumerate(sers)]
            ax.legend(handles=handles, fontsize=7, title=LABELS.get(series, series), title_fontsize=7)
    return data


FIGURE_DRAWERS = {"lines": lines, "bars": bars}  # conf/experiment figure.kind


def draw(exp: dict, rows: list[dict], caption: str, out_dir: Path) -> list[Path]:
    """Draw one experiment's figure as PDF + PNG, with its data CSV. Returns the files written."""
    spec = exp["figure"]
    n = len(spec["panels"])
    cols = min(n, 3)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows + 0.5), squeeze=False)
    flat = list(axes.flat)
    data = FIGURE_DRAWERS[spec["kind"]](spec, rows, flat[:n])
    for ax in flat[n:]:
        ax.set_visible(False)
    fig.suptitle(exp["title"], fontsize=11)
    return _save(fig, caption, out_dir / exp["name"], (data, DATA_FIELDS))


DRIFT_FIELDS = ["panel", "series", "minutes", "value", "record", "round"]


def drift(exp: dict, measured: tuple[list[dict], list[dict], list[dict]], caption: str, out_dir: Path) -> list[Path]:
    """<name>_drift: against wall-clock minutes, each visit's latency over its cell's median (left) and each drift
    canary point over its load group's median (right), so a reader sees whether the host or device drifted while
    the rounds ran. `measured`: the experiment's results rows, its rounds.csv rows and its canary points."""
    rows, visits, points = measured
    by_record = {r["record"]: r for r in rows}
    start = min([v["started_at"] for v in visits] + [p["t_wall"] for p in points])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    data = []
    groups = sorted({f"{by_record[v['record']]['model']}/{by_record[v['record']]['quant']}" for v in visits})
    for i, group in enumerate(groups):
        xs, ys = [], []
        for record in sorted({v["record"] for v in visits}):
            row = by_record[record]
            if f"{row['model']}/{row['quant']}" != group or not row.get("latency_median_s"):
                continue
            for v in (v for v in visits if v["record"] == record):
                xs.append((v["started_at"] - start) / 60)
                ys.append(v["latency_s"] / row["latency_median_s"])
                data.append({"panel": "visit latency / cell median", "series": group, "minutes": xs[-1],
                             "value": ys[-1], "record": record, "round": v["round"]})
        left.plot(xs, ys, "o", ms=3, color=f"C{i % 10}", label=group)
    for i, (key, label, marker) in enumerate((("host_s", "host probe", "o"), ("device_s", "device probe", "s"))):
        for run in sorted({p["group_run"] for p in points}):
            ps = sorted((p for p in points if p["group_run"] == run), key=lambda p: p["t_wall"])
            median = statistics.median(p[key] for p in ps)
            xs, ys = [(p["t_wall"] - start) / 60 for p in ps], [p[key] / median for p in ps]
            right.plot(xs, ys, marker=marker, ms=3, color=f"C{i}", label=label if run == min(p["group_run"]
                                                                                           for p in points) else None)
            data += [{"panel": f"canary {label} / group median", "series": ps[0]["group"], "minutes": x, "value": y,
                      "record": run, "round": p["point"]} for x, y, p in zip(xs, ys, ps)]
    for ax, title in ((left, "Each visit: latency / its cell's median"), (right, "Drift canary / its group's median")):
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.set_xlabel("Wall-clock time (minutes from the first visit)")
        ax.set_ylabel("Relative to the median")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{exp['title']}: drift over the rounds", fontsize=11)
    return _save(fig, caption, out_dir / f"{exp['name']}_drift", (data, DRIFT_FIELDS))


def _save(fig, caption: str, base: Path, table: tuple[list[dict], list[str]]) -> list[Path]:
    """The figure as PDF + PNG (no timestamps: the same data give the same bytes), the caption wrapped below it,
    and the drawn points as CSV."""
    data, fields = table
    lines = textwrap.wrap(caption, width=int(fig.get_figwidth() * 18))  # 7 pt: about 18 characters an inch
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, color="0.3", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.035 * len(lines) / max(1.0, fig.get_figheight() / 4), 1, 1))
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in ("pdf", "png"):
        path = base.with_suffix(f".{ext}")
        fig.savefig(path, dpi=150, metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
        written.append(path)
    plt.close(fig)
    with open(base.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for d in data:
            w.writerow({k: "" if d[k] is None else (f"{d[k]:.6g}" if isinstance(d[k], float) else d[k])
                        for k in fields})
    written.append(base.with_suffix(".csv"))
    return written
