"""The report: per profile (paper/<profile>/) every figure and table of the experiments, the claims check, an
index and the archive of its raw records; and paper/index.md over the profiles. Built from the raw records (under
traces/, else the profile's archive, else its committed results table). It only reads: no model, no torch, never
a re-measurement."""
from __future__ import annotations

import csv
import itertools
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ..cell import canary
from ..core.config import CONF_DIR
from ..store import tracking
from ..store.rows import BACK_TO_BACK
from ..sweep import experiments
from . import archive, claims, figures, results, spread, tables

GENERATED = ("*.pdf", "*.png", "*.csv", "*.md", "*.tex")
CLAIMS = CONF_DIR / "claims.yaml"  # the paper's stated results, as checks (an input, not an output)


def caption(rows: list[dict], profile_skip: str | None = None) -> str:
    if not rows:
        return f"not measured{': ' + profile_skip if profile_skip else ''}"
    profiles = ", ".join(sorted({r["profile"] or "?" for r in rows}))
    hw = ", ".join(sorted({f"{r['hardware']} ({r['host_kind']})" for r in rows}))
    dates = sorted(r["date"][:10] for r in rows if r["date"])
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    bad = sum(r["status"] == "error" for r in rows)
    return f"profile {profiles}; {hw}; {span}; {len(rows)} cells" + (f", {bad} failed" if bad else "")


def machines(rows: list[dict]) -> str:
    """Where a figure's cells come from several GPUs of its one GPU model, which, per model (their NVML UUIDs' first
    block): two machines of one GPU model differed by more than one machine's error bars (issue 22's second runs),
    so two series measured on two machines differ by the machine as well as by the model."""
    ok = [r for r in rows if tables.gpus(r) and r["status"] == "ok"]
    uuids = sorted({u for r in ok for u in tables.gpus(r)})
    if len(uuids) < 2:
        return ""
    of_model = {m: sorted({tables.short_uuid(u) for r in ok if r["model"] == m for u in tables.gpus(r)})
                for m in sorted({r["model"] for r in ok})}
    per_model = "; ".join(f"{m}: {', '.join(short)}" for m, short in of_model.items())
    return (f" from {len(uuids)} GPUs ({per_model}; series from two machines differ by the machine too, "
            f"see the second-run table)")


def _clean(folder: Path) -> None:
    for pattern in GENERATED:
        for p in folder.glob(pattern):
            p.unlink()


PLAN_COLUMNS = {"model": "model", "quant": "quant", "batch_size": "batch_size", "seq_len": "seq_len",
                "workload": "workload", "power": "power_mode"}  # an experiment's swept keys -> results columns


def not_measured(plan: experiments.Plan, rows: list[dict]) -> list[str]:
    """The cells a plan declares that have no record among rows (model/quant/bs/sl names, in plan order); none
    where the plan sweeps a key the results table cannot match."""
    settings = {k: v if isinstance(v, list) else [v] for k, v in (plan.settings or {}).items()}
    if plan.skip or any(len(v) > 1 for k, v in settings.items() if k not in PLAN_COLUMNS):
        return []
    keys = [k for k in PLAN_COLUMNS if k in settings]
    have = {tuple(str(r[PLAN_COLUMNS[k]]) for k in keys) for r in rows}
    label = {"batch_size": "bs", "seq_len": "sl"}
    return ["/".join(f"{label.get(k, '')}{v}" for k, v in zip(keys, combo)
                     if k in ("model", "quant", "batch_size", "seq_len") or len(settings[k]) > 1)
            for combo in itertools.product(*(settings[k] for k in keys))
            if tuple(map(str, combo)) not in have]


def error_bars(rows: list[dict]) -> str:
    """What a figure's error bars are, per design among its rows."""
    parts = []
    rounds = sorted({r["interval"] for r in rows if r["design"] == "rounds" and r["status"] == "ok" and r["interval"]})
    if rounds:
        parts.append("rounds design: medians over rounds, error bars the interval of the median ("
                     + "; ".join(rounds) + ")")
    if any(r["design"] != "rounds" for r in rows):
        parts.append("back-to-back repetitions: medians, error bars one standard deviation of the repetitions inside "
                     "one visit (not the spread a re-run sees)")
    return "; ".join(parts)


def _slug(text) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def figure_parts(name: str, rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """One figure per GPU (or CPU) model and design: a figure never sets one design's error bars or one machine's
    numbers beside another's. Where the rows hold one of each the figure keeps the experiment's name; otherwise each
    is named <experiment>_<design>_<hardware>, e.g. batch_sweep_rounds_nvidia-h200."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["design"], r["hardware"]), []).append(r)
    if len(groups) == 1:
        return [(name, rows)]
    return [(f"{name}_{_slug(design.replace(' repetitions', ''))}_{_slug(hw)}", rs)
            for (design, hw), rs in sorted(groups.items(), key=lambda g: (g[0][0], str(g[0][1])))]


def with_canary(rows: list[dict], round_rows: list[dict], points: list[dict]) -> list[dict]:
    """Rows with the drift canary of the group runs that measured them (canary_host_s per generation,
    canary_device_s per product: the median over the runs' points), where the record was measured in rounds."""
    runs, by_record = canary.per_run(points), {}
    for v in round_rows:
        by_record.setdefault(v["record"], set()).add(v["group_run"])
    out = []
    for r in rows:
        got = [runs[g] for g in sorted(by_record.get(r["record"], ())) if g in runs]
        out.append({**r, **({f"canary_{probe}_s": statistics.median(x[probe] for x in got)
                             for probe in ("host", "device")} if got else {})})
    return out


def build_outputs(rows: list[dict], out: Path, rounds: tuple[list[dict], list[dict]] = ([], [])) -> list[str]:
    """Every figure and table, and for an experiment measured in rounds its drift figure (each visit and canary point
    against wall-clock time); returns index lines (what was built, or why not)."""
    round_rows, points = rounds
    fig_dir, tab_dir = out / "figures", out / "tables"
    for d in (fig_dir, tab_dir):
        d.mkdir(parents=True, exist_ok=True)
        _clean(d)
    index = []
    profiles = sorted({r["profile"] for r in rows if r["profile"] in experiments.PROFILES})
    for name in experiments.names():
        exp = experiments.load(name)
        rs = [r for r in rows if r["study"] == exp["study"]]
        plans = [experiments.plan(name, p) for p in profiles]
        skip = "; ".join(sorted({p.skip for p in plans if p.skip})) or None
        what = "figure" if "figure" in exp else "table"
        if not rs and exp.get("table", {}).get("kind") != "power_modes":  # that table lists the configured modes
            index.append(f"- {name} ({what}): not drawn, no records" + (f" ({skip})" if skip else ""))
            continue
        cap = caption(rs, skip)
        if what == "figure":
            files = [f for name, part in figure_parts(exp["name"], rs)
                     for f in figures.draw({**exp, "name": name}, part,
                                           f"{caption(part)}{machines(part)}; {error_bars(part)}",
                                           fig_dir)]
        else:
            compared = [r for r in rows if r["study"] == exp["table"].get("of")]  # a second run's first run
            files = tables.write(exp, with_canary(rs + compared, round_rows, points), cap, tab_dir)
        records = {r["record"] for r in rs}
        visits = [v for v in round_rows if v["record"] in records]
        if visits:
            runs = {v["group_run"] for v in visits}
            files += figures.drift(exp, (rs, visits, [p for p in points if p["group_run"] in runs]), cap, fig_dir)
        missing = [m for plan in plans for m in not_measured(plan, rs)]
        left = f"; not measured yet: {len(missing)} ({', '.join(missing)})" if missing else ""
        index.append(f"- {name} ({what}, {len(rs)} cells{left}): "
                     + ", ".join(f"[{p.name}]({p.relative_to(out)})" for p in files))
    return index


TIME_PARTS = [("timed_s", "timed"), ("warmup_s", "warm-up"), ("canary_s", "canary"), ("load_s", "loads"),
              ("build_s", "builds"), ("ppl_s", "perplexity"), ("idle_s", "idle power")]


def write_time(rows: list[dict], out: Path) -> Path:
    """time.md: per study, design and GPU (or CPU) model, the seconds its measured cells spent by part (the records'
    own clocks; process and DVC overhead are in `make reproduce`'s closing table), with the visits they made (rounds
    design: one a round; back-to-back: one a cell); then the cells measured in both designs on one hardware model,
    side by side. Cells measured in another study are not counted."""
    own = [r for r in rows if r.get("cell_s") is not None and not r.get("implied_by") and not r.get("same_record_as")]
    groups: dict[tuple, list[dict]] = {}
    for r in own:
        groups.setdefault((r["study"], r["design"], str(r["hardware"])), []).append(r)
    lines = ["# Where the time went", "", *_time_table(groups), "", "## The same cells in both designs", "",
        "Cells of a study measured in both designs on one hardware model (same model, precision, workload, batch, "
        "length, power mode and meter), each design's seconds over those cells alone.", ""]
    both = _both_designs(own)
    lines += _time_table(both, ratio=True) if both else ["No cell was measured in both designs on one hardware model."]
    (out / "time.md").write_text("\n".join(lines) + "\n")
    return out / "time.md"


SAME_CELL = ("model", "weights", "quant", "workload", "batch_size", "seq_len", "power_mode", "meter")


def _both_designs(own: list[dict]) -> dict[tuple, list[dict]]:
    """(study, design, hardware) -> the rows of the cells that study measured in both designs on that hardware."""
    by_cell: dict[tuple, dict[str, dict]] = {}
    for r in own:
        by_cell.setdefault((r["study"], str(r["hardware"]), *(r.get(k) for k in SAME_CELL)), {})[r["design"]] = r
    out: dict[tuple, list[dict]] = {}
    for (study, hardware, *_), designs in by_cell.items():
        if len(designs) > 1:
            for design, r in designs.items():
                out.setdefault((study, design, hardware), []).append(r)
    return out


def _time_table(groups: dict[tuple, list[dict]], ratio: bool = False) -> list[str]:
    """A table row per (study, design, hardware): cells, visits, seconds by part, cells / generation; with `ratio`,
    each design's cell seconds against the back-to-back design's in the same study and hardware."""
    head = ["study", "design", "hardware", "cells", "visits", "cells (s)", *[label + " (s)" for _, label in TIME_PARTS],
            "rest (s)", "cells / generation", *(["x back-to-back"] if ratio else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (study, design, hardware), rs in sorted(groups.items()):
        total = sum(r["cell_s"] for r in rs)
        parts = [sum(r.get(col) or 0.0 for r in rs) for col, _ in TIME_PARTS]
        generation = parts[0] + parts[1]
        visits = sum(r.get("rounds") or 1 for r in rs)
        cells = [study, design, hardware, str(len(rs)), str(visits), f"{total:.1f}", *(f"{p:.1f}" for p in parts),
                 f"{total - sum(parts):.1f}", f"{total / generation:.2f}x" if generation else "–"]
        if ratio:
            base = sum(r["cell_s"] for r in groups.get((study, BACK_TO_BACK, hardware), []))
            cells.append(f"{total / base:.2f}x" if base else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def log_report(out: Path, rows: list[dict], table: list[dict]) -> None:
    """An MLflow run `report <profile> <time>` in experiment `report`, holding the profile's outputs."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    mlflow = tracking.client(uri)
    exp_id = tracking.experiment_id(mlflow, uri, "report")
    run = mlflow.create_run(exp_id, run_name=f"report {out.name} {time.strftime('%Y-%m-%d %H:%M')}",
                            tags={"profile": out.name})
    for verdict in claims.VERDICTS:
        mlflow.log_metric(run.info.run_id, f"claims_{verdict.lower().replace(' ', '_')}",
                          sum(t["verdict"] == verdict for t in table))
    mlflow.log_metric(run.info.run_id, "cells", len(rows))
    for sub in ("figures", "tables"):
        mlflow.log_artifacts(run.info.run_id, str(out / sub), artifact_path=sub)
    for name in ("results.csv", "claims.md", "claims.csv", "index.md", "time.md"):
        mlflow.log_artifact(run.info.run_id, str(out / name))
    mlflow.set_terminated(run.info.run_id, "FINISHED")


def experiment_rows(rows: list[dict]) -> list[dict]:
    """The rows a profile's report shows: cells of the experiments (not single `cell` runs or studies of
    one-off investigations) measured under a named profile."""
    studies = {experiments.load(n)["study"] for n in experiments.names()}
    return [r for r in rows if r["study"] in studies and r["profile"] in experiments.PROFILES]


def profile_rows(profile: str, live: list[dict], traces_dir: Path, out: Path, tmp: Path) -> tuple[list[dict], str]:
    """A profile's rows: its records under traces/ when there are any, else the records in its archive, else its
    committed results table. Rows go through results.csv and are read back, so every source gives the report the
    same typed rows."""
    rows = [r for r in live if r["profile"] == profile]
    if rows:
        out.mkdir(parents=True, exist_ok=True)
        source, records = f"{len(rows)} records under {traces_dir}/", traces_dir
    elif (out / archive.NAME).is_file():
        records = archive.unpack(out / archive.NAME, tmp / profile)
        rows = experiment_rows(results.collect(records))
        source = f"{len(rows)} records in {out / archive.NAME}"
    elif (out / "results.csv").is_file():
        return results.read_csv(out / "results.csv"), f"{out / 'results.csv'} (no records)"
    else:
        raise FileNotFoundError(f"no records of profile {profile} under {traces_dir}/ and no {out / archive.NAME}: "
                                f"run `make reproduce PROFILE={profile}` (measures) or `dvc pull` (fetches them)")
    results.write_csv(rows, out / "results.csv")
    write_rounds(records, [r["record"] for r in rows], out)
    return results.read_csv(out / "results.csv"), source


def write_rounds(traces_dir: Path, records: list[str], out: Path) -> None:
    """rounds.csv (each rounds-design record's value per round) and canary.csv (the drift canary's points of the
    load groups that measured them), beside results.csv; neither where every record is back-to-back."""
    rounds = results.collect_rounds(traces_dir, records)
    for name in ("rounds.csv", "canary.csv"):
        (out / name).unlink(missing_ok=True)
    if not rounds:
        return
    results.write_rounds(rounds, out / "rounds.csv")
    runs = {r["group_run"] for r in rounds}
    studies = sorted({Path(rec).parent.name for rec in records})
    points = [p for study in studies for p in canary.read(traces_dir / study / canary.LOG) if p["group_run"] in runs]
    with open(out / "canary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CANARY_COLUMNS)
        w.writeheader()
        w.writerows({k: p.get(k) for k in CANARY_COLUMNS} for p in sorted(points, key=lambda p: p["t_wall"]))


CANARY_COLUMNS = ["group_run", "point", "group", "t_wall", "host_s", "device_s", "host_reps", "device_reps",
                  "hardware"]


def read_canary(out: Path) -> list[dict]:
    if not (out / "canary.csv").is_file():
        return []
    with open(out / "canary.csv", newline="") as f:
        return [{k: v if k in ("group_run", "group", "hardware") else float(v) for k, v in r.items()}
                for r in csv.DictReader(f)]


def canary_lines(points: list[dict]) -> list[str]:
    """The drift canary in index.md: its spread, and every round in which a probe moved more than DRIFT_FLAG."""
    if not points:
        return []
    lines = ["", "## Drift canary (rounds design)", "", canary.spread_line(points) + ".", ""]
    flagged = [m for m in canary.moves(points) if m["flagged"]]
    if flagged:
        lines += ["| load group | group run | round | host probe moved | device probe moved |", "|---|---|---|---|---|"]
        lines += [f"| {m['group']} | {m['group_run']} | {m['round']:.0f} | {m['host']:+.1%} | {m['device']:+.1%} |"
                  for m in flagged]
    return lines


ENERGY_AGREES = 0.01  # the sampled energy agrees with the GPU's own counter within 1 % (issue 13's evidence)


def placement(rows: list[dict]) -> list[str]:
    """Where the cells ran: one row per GPU (its NVML UUID) with the cells and studies it ran, when, how many of
    its cells had CUDA's PCI address of the cell's device equal NVML's of the GPU metered, and how its sampled
    energy agreed with its own counter. Empty where no record names a GPU (CPU and Jetson profiles). The meter
    opens NVML by the UUID torch reports for the cell's device, so the UUID is both at once; the PCI addresses
    come from each side independently."""
    gpus = sorted({u for r in rows for u in tables.gpus(r)})
    if not gpus:
        return []
    lines = ["", "## Where the cells ran", "",
             "| GPU (NVML UUID = torch's) | hardware | CUDA_VISIBLE_DEVICES | cells | studies | started | "
             "PCI address: NVML's = CUDA's | "
             f"sampled energy within {ENERGY_AGREES:.0%} of the counter |", "|---|---|---|---|---|---|---|---|"]
    for uuid in gpus:
        rs = [r for r in rows if uuid in tables.gpus(r)]
        own = [r for r in rs if r["gpu_uuid"] == uuid]  # the meter's readings are the last process's
        starts = sorted(r["date"] for r in rs if r["date"])
        checks = [r["energy_check_rel"] for r in own if r["energy_check_rel"] is not None]
        agree = sum(abs(c) <= ENERGY_AGREES for c in checks)
        energy = f"{agree} of {len(checks)}, worst {max(checks, key=abs):+.1%}" if checks else "none checked"
        visible = ", ".join(sorted({r["cuda_visible_devices"] or "unset" for r in rs}))
        studies = ", ".join(f"{s} ({sum(r['study'] == s for r in rs)})" for s in sorted({r["study"] for r in rs}))
        lines.append(f"| {uuid} | {rs[0]['hardware']} | {visible} | {len(rs)} | {studies} | "
                     f"{starts[0][:16]} to {starts[-1][:16]} | {_pci_agreement(own)} | {energy} |")
    shared = sum(len(tables.gpus(r)) > 1 for r in rows)
    if shared:
        cells = "1 cell had its rounds measured on several GPUs: it counts" if shared == 1 else \
            f"{shared} cells had their rounds measured on several GPUs: each counts"
        lines.append(f"\n{cells} under every one of them "
                     "(its PCI addresses and energy check count under its last process's GPU only).")
    lines.append(f"\nCells that name no GPU: {sum(1 for r in rows if not r['gpu_uuid'])} (not run: out of memory by "
                 "implication; or recorded before records named their GPU without a meter: fit tests, early OOMs).")
    return lines


def _pci_agreement(rows: list[dict]) -> str:
    """NVML's PCI address(es) of one GPU's cells and in how many CUDA's address of the cell's device was the same;
    records made before the meter read them say so."""
    known = [r for r in rows if r["gpu_pci"] and r["gpu_pci_cuda"]]
    if not known:
        return "not recorded"
    same = sum(r["gpu_pci"] == r["gpu_pci_cuda"] for r in known)
    addresses = ", ".join(sorted({r["gpu_pci"] for r in known}))
    unknown = len(rows) - len(known)
    return f"{addresses}: {same} of {len(known)}" + (f" ({unknown} not recorded)" if unknown else "")


def build_profile(rows: list[dict], out: Path, spec: list[dict], check_only: bool) -> list[dict]:
    """One profile's report in out/: results.csv (already written), claims, and unless check_only every figure
    and table, time.md and index.md. Returns the claims table."""
    round_rows, points = results.read_rounds(out / "rounds.csv"), read_canary(out)
    table = claims.evaluate(spec, rows, round_rows)
    cap = caption(rows)
    claims.write(table, out, cap)
    if check_only:
        return table
    index = build_outputs(rows, out, (round_rows, points))
    write_time(rows, out)
    archived = (f" Raw records: [{archive.NAME}]({archive.NAME}) (`make replay` rebuilds this folder from them)."
                if (out / archive.NAME).is_file() else "")
    (out / "index.md").write_text(f"# Profile {out.name}: figures and tables\n\n{cap}.\n\n" + "\n".join(index)
                                  + "\n\nClaims: [claims.md](claims.md). Every number: [results.csv](results.csv). "
                                  f"Where the time went: [time.md](time.md).{archived}\n"
                                  + "".join(line + "\n" for line in placement(rows) + spread.lines(rows, round_rows)
                                            + canary_lines(points)))
    return table


def write_index(root: Path) -> Path:
    """paper/index.md: every profile folder under root with its hardware, dates, cells by status, the commits
    that measured them and its claims verdicts (all read from the folder's own files)."""
    lines = ["# Results per profile", "",
             "Each folder is one profile's report, built from its raw records (`make replay` rebuilds them all).", "",
             "| profile | hardware | measured | cells recorded of those declared (records ok / oom / error) | "
             "git sha of the records | claims |",
             "|---|---|---|---|---|---|"]
    for folder in sorted(p.parent for p in root.glob("*/results.csv")):
        rows = results.read_csv(folder / "results.csv")
        status = [sum(r["status"] == s for r in rows) for s in ("ok", "oom", "error")]
        hardware = ", ".join(sorted({f"{r['hardware']} ({r['host_kind']})" for r in rows}))
        dates = sorted(r["date"][:10] for r in rows if r["date"])
        when = "" if not dates else dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
        shas = [r["git_sha"] or "unknown" for r in rows]
        commits = ", ".join(f"{s} ({shas.count(s)})" for s in sorted(set(shas)))
        verdicts = ""
        if (folder / "claims.csv").is_file():
            with open(folder / "claims.csv", newline="") as f:
                got = [t["verdict"] for t in csv.DictReader(f)]
            verdicts = ", ".join(f"{got.count(v)} {v}" for v in claims.VERDICTS if v in got)
        cells = f"{len(rows)} records"
        if folder.name in experiments.PROFILES:  # a declared cell measured on two GPU models is one cell, two records
            plans = [experiments.plan(n, folder.name) for n in experiments.names()]
            declared = sum(p.cells for p in plans)
            missing = sum(len(not_measured(p, [r for r in rows if r["study"] == p.study])) for p in plans)
            covered = declared - missing
            cells = f"{covered} of {declared}" + (f" in {len(rows)} records" if len(rows) != covered else "")
        lines.append(f"| [{folder.name}]({folder.name}/index.md) | {hardware} | {when} | {cells} "
                     f"({' / '.join(map(str, status))}) | {commits} | [{verdicts}]({folder.name}/claims.md) |")
    (root / "index.md").write_text("\n".join(lines) + "\n")
    return root / "index.md"


def report(traces_dir: Path, root: Path, *, profiles: list[str] | str | None = None, replay: bool = False,
           claims_file: Path | None = None, check_only: bool = False, log_mlflow: bool = True) -> int:
    """Build root/<profile>/ (see build_profile) for each of `profiles`: None, every profile with records under
    traces_dir or an archive or results table under root; "auto", those with records under traces_dir (else
    every one). Then root/index.md; each claims table is printed. With `replay`, traces_dir is not read: every
    profile is rebuilt from its archive. Returns the exit code: 0, or 2 with one line when a profile has nothing
    to report from."""
    spec = claims.load(claims_file or CLAIMS)
    live = [] if replay else experiment_rows(results.collect(traces_dir))
    measured = sorted({r["profile"] for r in live})
    shipped = {p.parent.name for pattern in (archive.NAME, "results.csv") for p in root.glob(f"*/{pattern}")}
    if profiles == "auto":
        profiles = measured or None
    wanted = profiles or sorted(set(measured) | shipped)
    if not wanted:
        print(f"error: no records under {traces_dir}/ and no profile under {root}/: run `make reproduce` "
              f"(measures) or `dvc pull` (fetches the records)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for profile in wanted:
            out = root / profile
            try:
                rows, source = profile_rows(profile, live, traces_dir, out, Path(tmp))
            except FileNotFoundError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            print(f"\nprofile {profile}: report from {source}: {len(rows)} cells", flush=True)
            if not check_only and any(r["profile"] == profile for r in live):  # the archive of the records used
                archive.write(traces_dir, [r["record"] for r in rows], out / archive.NAME)
            table = build_profile(rows, out, spec, check_only)
            print(f"claims ({out}/claims.md):\n" + claims.render(table), flush=True)
            counts = {v: sum(t["verdict"] == v for t in table) for v in claims.VERDICTS}
            print(", ".join(f"{n} {v}" for v, n in counts.items()), flush=True)
            if not check_only and log_mlflow and os.environ.get("ARTIFACT_TRACKING", "1") != "0":
                try:
                    log_report(out, rows, table)
                except Exception as e:  # the files stand; the UI just lacks this run
                    print(f"warning: MLflow report run not logged ({type(e).__name__}: {e})", file=sys.stderr)
    if not check_only:
        write_index(root)
    return 0
