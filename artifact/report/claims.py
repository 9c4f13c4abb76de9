"""The paper's claims (conf/claims.yaml) checked against the results table: PASS, FAIL, INCONCLUSIVE or NOT
APPLICABLE, with the measured value beside the paper's.

Cells of the rounds design are compared by ratios paired within a round (artifact.core.stats): both sides measured
minutes apart in the same round of one load group, so slow drift cancels. Cells of different load groups (another
model or precision) were measured in separate minutes: their rounds are paired by number, and the claim says so (the
profiles run such experiments in at least two passes, every second one in the reversed group order, so a linear
drift weighs on both sides alike: artifact.sweep.experiments.passes). A verdict is PASS or FAIL only where the
interval of the ratios lies wholly beyond the claim's practical threshold (`practical`, default PRACTICAL) on one
side; otherwise INCONCLUSIVE, with the interval.
Back-to-back records (before the rounds design) are judged as before, on medians and standard deviations.

Absolute Orin numbers are checked only on records taken on a
Jetson; trends are checked on any hardware that produced the cells they read.

Each claim's `check.kind` is one function of CLAIM_CHECKS (falls_with, change, greater, less, values,
oom_caps_batch), reading the rows of `check.study` that match `check.where`. Cells are compared only when
equal in every MATCH setting but the one the claim varies. A metric absent in the compared cells (no power
sensor, say) gives NOT APPLICABLE with the reason, never a verdict on zeros. Thresholds are the paper's
numbers and the tolerances declared in conf/claims.yaml, never tuned to a result."""
from __future__ import annotations

import csv
from pathlib import Path

import yaml

from ..core import stats

PASS, FAIL, NA, INCONCLUSIVE = "PASS", "FAIL", "NOT APPLICABLE", "INCONCLUSIVE"
VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE", "NOT APPLICABLE")
PRACTICAL = 0.02  # a difference of less than 2 % is no practical difference (claims.yaml `practical` overrides)
# results-table column -> rounds.csv column, for the metrics measured per round
ROUND_METRIC = {"latency_median_s": "latency_s", "throughput_median_tok_s": "throughput_tok_s",
                "power_median_w": "power_w", "energy_j": "energy_j", "energy_per_token_j": "energy_per_token_j"}
# Settings that must be equal for two cells to be compared (all but the one the claim varies).
MATCH = ("model", "weights", "quant", "workload", "power_mode", "batch_size", "seq_len", "profile", "host_kind",
         "hardware", "design")


def load(path: Path) -> list[dict]:
    return yaml.safe_load(Path(path).read_text())


def _where(rows: list[dict], study: str, where: dict | None) -> list[dict]:
    return [r for r in rows if r["study"] == study and all(r.get(k) == v for k, v in (where or {}).items())]


def _pairs(rows: list[dict], vary: str, a, b) -> list[tuple[dict, dict]]:
    """(row with vary=a, row with vary=b) for cells equal in everything else, both measured."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        if r["status"] == "ok" and r[vary] in (a, b):
            groups.setdefault(tuple(r[k] for k in MATCH if k != vary), {})[r[vary]] = r
    return [(g[a], g[b]) for g in groups.values() if a in g and b in g]


def _name(r: dict, *keys) -> str:
    return "/".join(str(r[k]) for k in keys)


def _on(r: dict, rows: list[dict]) -> str:
    """ on <hardware>, where the rows a claim reads come from more than one kind of processor."""
    return f" on {r['hardware']}" if len({x["hardware"] for x in rows}) > 1 else ""


def _missing(metric: str) -> str:
    if metric.startswith(("power", "energy")):
        return f"{metric} is absent: no power sensor (or invalid power coverage) on the host that ran these cells"
    return f"{metric} is absent in these cells"


class Rounds:
    """The per-round values of the rounds-design records (rounds.csv rows), paired for a claim."""

    def __init__(self, rows: list[dict] | None):
        self.by_record: dict[str, list[dict]] = {}
        for r in rows or []:
            self.by_record.setdefault(r["record"], []).append(r)

    def ratios(self, a: dict, b: dict, metric: str) -> tuple[list[float], str] | None:
        """a's metric / b's per round, and how they were paired; None where either cell has no rounds of it."""
        col = ROUND_METRIC.get(metric)
        if col is None or a.get("design") != "rounds" or b.get("design") != "rounds":
            return None
        ra, rb = self.by_record.get(a["record"], []), self.by_record.get(b["record"], [])

        def values(rs: list[dict], key) -> dict:
            return {key(r): r[col] for r in rs if r.get(col) is not None}
        slot = lambda r: (r["group_run"], r["group_round"])  # noqa: E731
        va, vb = values(ra, slot), values(rb, slot)
        if set(va) & set(vb):
            return stats.paired_ratios(va, vb), "paired within rounds"
        number = lambda r: r["round"]  # noqa: E731
        ratios = stats.paired_ratios(values(ra, number), values(rb, number))
        return (ratios, "across load groups: rounds paired by number, measured in separate minutes") if ratios else None


def _ratio_text(info: dict, how: str, side: str) -> str:
    iv = info["interval"]
    where = "" if info["low"] is None else f" [{info['low']:.3f}, {info['high']:.3f}] ({stats.describe_interval(iv)})"
    return f"ratio {info['median']:.3f}{where}, {info['agree']} of {info['n']} rounds {side}, {how}"


def _combine(verdicts: list[str]) -> str:
    """Every comparison must hold: a FAIL fails the claim, all PASS pass it, anything else is INCONCLUSIVE."""
    if FAIL in verdicts:
        return FAIL
    return PASS if verdicts and all(v == PASS for v in verdicts) else INCONCLUSIVE


def falls_with(c: dict, rows: list[dict], rounds: Rounds) -> tuple[str, str]:
    """`metric` falls as `x` grows: in every series of cells equal but for x (MATCH), from the smallest x to the
    largest. Rounds design: the ratio largest / smallest paired within rounds, judged on its interval against the
    practical threshold. Back-to-back records: a fall beyond one standard deviation of either end (medians alone
    where no spread was recorded). NOT APPLICABLE with no series of two x values."""
    x, metric = c["x"], c["metric"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok" and r.get(metric) is not None:
            groups.setdefault(tuple(r[k] for k in MATCH if k != x), []).append(r)
    out, verdicts = [], []
    for rs in groups.values():
        if len({r[x] for r in rs}) < 2:
            continue
        rs = sorted(rs, key=lambda r: r[x])
        first, last = rs[0], rs[-1]
        name = (f"{_name(first, 'model', 'quant', 'workload')} bs{first['batch_size']}{_on(first, rows)}: "
                f"{first[metric]:.4g} -> {last[metric]:.4g} ({x} {first[x]} -> {last[x]})")
        paired = rounds.ratios(last, first, metric)
        if paired:
            verdict, info = stats.ratio_verdict(paired[0], "less", c.get("practical", PRACTICAL))
            verdicts.append(verdict)
            out.append(f"{name}, {_ratio_text(info, paired[1], 'fall')}: {verdict}")
            continue
        spread = metric.replace("_median_", "_std_")

        def sd(r: dict, spread: str = spread) -> float:  # no spread recorded: medians alone decide
            return r.get(spread) or 0.0
        verdicts.append(PASS if last[metric] + sd(last) < first[metric] - sd(first) else FAIL)
        out.append(f"{_name(first, 'model', 'quant', 'workload')} bs{first['batch_size']}{_on(first, rows)}: "
                   f"{first[metric]:.4g} ± {sd(first):.2g} -> {last[metric]:.4g} ± {sd(last):.2g} "
                   f"({x} {first[x]} -> {last[x]}; back-to-back repetitions)")
    if not out:
        return NA, f"no series with two or more {x} values"
    return _combine(verdicts), "; ".join(out)


def change(c: dict, rows: list[dict], rounds: Rounds) -> tuple[str, str]:
    """The relative change of each `expect` metric from `vary`=b to `vary`=a (a / b - 1) is within `tolerance`
    of the paper's, for every pair of cells equal but for `vary`. Rounds design: PASS where the interval of the
    paired change lies within the tolerance, FAIL where it lies wholly outside, else INCONCLUSIVE."""
    pairs = _pairs(rows, c["vary"], c["a"], c["b"])
    if not pairs:
        return NA, f"no pair of cells {c['vary']}={c['a']} / {c['b']} measured alike"
    out, verdicts = [], []
    for ra, rb in pairs:
        for metric, expect in c["expect"].items():
            if ra.get(metric) is None or rb.get(metric) is None:
                return NA, _missing(metric)
            rel = ra[metric] / rb[metric] - 1
            low, high = expect - c["tolerance"], expect + c["tolerance"]
            paired = rounds.ratios(ra, rb, metric)
            if paired and len(paired[0]) > 1:
                iv = stats.interval([q - 1 for q in paired[0]])
                verdicts.append(PASS if low <= iv["low"] and iv["high"] <= high else
                                FAIL if iv["high"] < low or iv["low"] > high else INCONCLUSIVE)
                out.append(f"{ra['model']}{_on(ra, rows)} {metric} {rel:+.0%} [{iv['low']:+.0%}, {iv['high']:+.0%}] "
                           f"(paper {expect:+.0%}, {paired[1]})")
                continue
            verdicts.append(PASS if abs(rel - expect) <= c["tolerance"] else FAIL)
            out.append(f"{ra['model']}{_on(ra, rows)} {metric} {rel:+.0%} (paper {expect:+.0%})")
    return _combine(verdicts), "; ".join(out)


def _ordered(c: dict, rows: list[dict], rounds: Rounds, greater: bool) -> tuple[str, str]:
    metric = c["metric"]
    a_values = c["a"] if isinstance(c["a"], list) else [c["a"]]
    if c.get("models") == "smallest":
        sized = [r for r in rows if r.get("params")]
        if sized:
            smallest = min(sized, key=lambda r: r["params"])["model"]
            rows = [r for r in rows if r["model"] == smallest]
    out, verdicts = [], []
    for a in a_values:
        for ra, rb in _pairs(rows, c["vary"], a, c["b"]):
            if ra.get(metric) is None or rb.get(metric) is None:
                return NA, _missing(metric)
            name = (f"{ra['model']} bs{ra['batch_size']} sl{ra['seq_len']}{_on(ra, rows)}: {a} {ra[metric]:.4g} vs "
                    f"{c['b']} {rb[metric]:.4g} {metric}")
            paired = rounds.ratios(ra, rb, metric)
            if paired:
                direction = "greater" if greater else "less"
                verdict, info = stats.ratio_verdict(paired[0], direction, c.get("practical", PRACTICAL))
                verdicts.append(verdict)
                out.append(f"{name}, {_ratio_text(info, paired[1], 'agree')}: {verdict}")
                continue
            holds = ra[metric] > rb[metric] if greater else ra[metric] < rb[metric]
            verdicts.append(PASS if holds else FAIL)
            out.append(name)
    if not out:
        return NA, f"no pair of cells {c['vary']}={'/'.join(a_values)} vs {c['b']} measured alike"
    return _combine(verdicts), "; ".join(out)


def greater(c, rows, rounds):
    """`metric` is larger with `vary`=a (each of a list) than with `vary`=b, in every pair of cells equal but
    for `vary` (`models: smallest` keeps the smallest model only)."""
    return _ordered(c, rows, rounds, True)


def less(c, rows, rounds):
    """As `greater`, with `metric` smaller."""
    return _ordered(c, rows, rounds, False)


def values(c: dict, rows: list[dict], rounds: Rounds) -> tuple[str, str]:
    """Absolute values: each `expect` point (its MATCH keys select the cell) within `tolerance` (relative) of
    the paper's number. Meant for `applies_to: orin` claims, read only from Jetson records."""
    out, ok = [], True
    for point in c["expect"]:
        where = {k: v for k, v in point.items() if k in MATCH}
        match = [r for r in rows if r["status"] == "ok" and all(r[k] == v for k, v in where.items())]
        if not match:
            return NA, f"no measured cell with {where}"
        r = match[0]
        for metric, paper in point.items():
            if metric in MATCH:
                continue
            ok &= abs(r[metric] / paper - 1) <= c["tolerance"]
            out.append(f"{where}: {metric} {r[metric]:.4g} (paper {paper})")
    return (PASS if ok else FAIL), "; ".join(out)


def oom_caps_batch(c: dict, rows: list[dict], rounds: Rounds) -> tuple[str, str]:
    """Where a batch ran out of memory, no larger batch of the same model and precision fit."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in MATCH if k != "batch_size"), []).append(r)
    out, ok = [], True
    for rs in groups.values():
        oom = [r["batch_size"] for r in rs if r["status"] == "oom"]
        if not oom:
            continue
        fits = [r["batch_size"] for r in rs if r["status"] == "ok"]
        ok &= not any(b > min(oom) for b in fits)
        fit = f"fits up to bs {max(fits)}" if fits else "no batch fits"
        out.append(f"{_name(rs[0], 'model', 'quant')} sl{rs[0]['seq_len']}{_on(rs[0], rows)}: {fit}, "
                   f"OOM from bs {min(oom)}")
    if not out:
        tried = max((r["batch_size"] for r in rows), default=None)
        return NA, f"no cell ran out of memory (batches up to {tried} fit): memory never capped the batch on this host"
    return (PASS if ok else FAIL), "; ".join(out)


CLAIM_CHECKS = {"falls_with": falls_with, "change": change, "greater": greater, "less": less, "values": values,
         "oom_caps_batch": oom_caps_batch}


NEAR_ROOF = 0.5  # decode within 2x of the bandwidth floor: the roofline's usual "near the roof"; labels only


def regime(rows: list[dict]) -> str:
    """Which limit the cells' decode ran against, from their roofline fractions (artifact.core.roofline)."""
    fractions = sorted(r["decode_bw_fraction"] for r in rows
                       if r["status"] == "ok" and r.get("decode_bw_fraction") is not None)
    if not fractions:
        return "not known (no device peaks for these records)"
    low, high = f"{fractions[0]:.2f}", f"{fractions[-1]:.2f}"
    span = low if low == high else f"{low}-{high}"
    near = sum(f >= NEAR_ROOF for f in fractions)
    if near == len(fractions):
        return f"bandwidth-bound: decode at {span} of peak memory bandwidth"
    if near == 0:
        return (f"not bandwidth-bound: decode at {span} of peak memory bandwidth (per-step overheads or compute "
                f"bound it)")
    return f"mixed: decode at {span} of peak memory bandwidth ({near} of {len(fractions)} cells near the roof)"


def by_design(rows: list[dict]) -> tuple[list[dict], str]:
    """The rows a claim judges, and what it sets aside: where the rows hold records of the rounds design, those alone
    (their intervals cover the spread of a re-run); the back-to-back records of the same study are named, not judged,
    since their error bars are one visit's spread. Rows of one design are all judged."""
    rounds = [r for r in rows if r["design"] == "rounds"]
    if not rounds or len(rounds) == len(rows):
        return rows, ""
    rest = [r for r in rows if r["design"] != "rounds"]
    what = ", ".join(sorted({f"{r['model']} on {r['hardware']}" for r in rest}))
    return rounds, (f"; not judged: {len(rest)} back-to-back cells ({what}), whose error bars are one visit's "
                    f"spread, not a re-run's")


def evaluate(claims: list[dict], rows: list[dict], round_rows: list[dict] | None = None) -> list[dict]:
    """Each claim's verdict on the results rows, the rounds-design ones judged on their per-round values."""
    rounds = Rounds(round_rows)
    table = []
    for claim in claims:
        c = claim["check"]
        selected = _where(rows, c["study"], c.get("where"))
        hosts = sorted({r["host_kind"] for r in rows if r["study"] == c["study"]}) or ["no records"]
        if claim["applies_to"] == "orin":
            selected = [r for r in selected if r["host_kind"] == "jetson"]
        if not selected:
            verdict, measured = NA, (f"absolute Jetson Orin numbers; the {c['study']} records here come from: "
                                     f"{', '.join(hosts)} (no Jetson)" if claim["applies_to"] == "orin"
                                     else f"no records of study {c['study']} match {c.get('where') or 'it'}")
        else:
            selected, set_aside = by_design(selected)
            verdict, measured = CLAIM_CHECKS[c["kind"]](c, selected, rounds)
            measured += set_aside
        table.append({"id": claim["id"], "claim": claim["claim"], "applies_to": claim["applies_to"],
                      "verdict": verdict, "measured": measured, "paper": claim["paper"],
                      "regime": regime(selected) if selected else "", "implies": claim.get("implies", "")})
    return table


def write(table: list[dict], out_dir: Path, caption: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["id", "verdict", "claim", "paper", "measured", "applies_to", "regime", "implies"]
    with open(out_dir / "claims.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows({k: t[k] for k in fields} for t in table)
    md = ["# Claims check", "", f"*{caption}*", "",
          "| id | verdict | claim | paper | measured here | regime of these records | the claim presumes |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {t['id']} | **{t['verdict']}** | {t['claim']} | {t['paper']} | {t['measured']} | {t['regime']} | "
           f"{t['implies']} |" for t in table]
    (out_dir / "claims.md").write_text("\n".join(md) + "\n")
    return [out_dir / "claims.csv", out_dir / "claims.md"]


def render(table: list[dict]) -> str:
    return "\n".join(f"{t['id']:<4} {t['verdict']:<15} {t['claim']}\n{'':<20}measured: {t['measured']}\n"
                     f"{'':<20}paper:    {t['paper']}"
                     + (f"\n{'':<20}regime:   {t['regime']}" if t["regime"] else "")
                     + (f"\n{'':<20}presumes: {t['implies']}" if t["implies"] else "") for t in table)
