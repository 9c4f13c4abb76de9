"""The report: every figure and table of the experiments, the claims check, and an index, built from the raw
records (or the committed results table). It only reads: no model, no torch, never a re-measurement."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .. import experiments, tracking
from ..config import CONF_DIR
from . import claims, figures, results, tables

GENERATED = ("*.pdf", "*.png", "*.csv", "*.md", "*.tex")
CLAIMS = CONF_DIR / "claims.yaml"  # the paper's stated results, as checks (an input, not an output)


def load_rows(traces_dir: Path, results_csv: Path) -> tuple[list[dict], str]:
    """Rows from the raw records when there are any, else from the committed results table. Records are
    written to the table and read back, so both paths give the report exactly the same typed rows."""
    if any(traces_dir.glob("*/*/result.json")):
        results.write_csv(results.collect(traces_dir), results_csv)
        return results.read_csv(results_csv), f"records under {traces_dir}/"
    if results_csv.is_file():
        return results.read_csv(results_csv), f"{results_csv} (no records under {traces_dir}/)"
    raise FileNotFoundError(f"no records under {traces_dir}/ and no {results_csv}: run `make reproduce` "
                            f"(measures) or `dvc pull` (fetches the records)")


def caption(rows: list[dict], profile_skip: str | None = None) -> str:
    if not rows:
        return f"not measured{': ' + profile_skip if profile_skip else ''}"
    profiles = ", ".join(sorted({r["profile"] or "?" for r in rows}))
    hw = ", ".join(sorted({f"{r['hardware']} ({r['host_kind']})" for r in rows}))
    dates = sorted(r["date"][:10] for r in rows if r["date"])
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    bad = sum(r["status"] == "error" for r in rows)
    return f"profile {profiles}; {hw}; {span}; {len(rows)} cells" + (f", {bad} failed" if bad else "")


def _clean(folder: Path) -> None:
    for pattern in GENERATED:
        for p in folder.glob(pattern):
            p.unlink()


def build_outputs(rows: list[dict], out: Path) -> list[str]:
    """Every figure and table; returns index lines (what was built, or why not)."""
    fig_dir, tab_dir = out / "figures", out / "tables"
    for d in (fig_dir, tab_dir):
        d.mkdir(parents=True, exist_ok=True)
        _clean(d)
    index = []
    profiles = sorted({r["profile"] for r in rows if r["profile"] in experiments.PROFILES})
    for name in experiments.names():
        exp = experiments.load(name)
        rs = [r for r in rows if r["study"] == exp["study"]]
        skips = [experiments.plan(name, p).skip for p in profiles]
        skip = "; ".join(sorted({s for s in skips if s})) or None
        what = "figure" if "figure" in exp else "table"
        if not rs and exp.get("table", {}).get("kind") != "power_modes":  # that table lists the configured modes
            index.append(f"- {name} ({what}): not drawn, no records" + (f" ({skip})" if skip else ""))
            continue
        cap = caption(rs, skip)
        if what == "figure":
            cap += "; medians over repetitions, error bars one standard deviation"
            files = figures.draw(exp, rs, cap, fig_dir)
        else:
            files = tables.write(exp, rs, cap, tab_dir)
        index.append(f"- {name} ({what}, {len(rs)} cells): "
                     + ", ".join(f"[{p.name}]({p.relative_to(out)})" for p in files))
    return index


TIME_PARTS = [("timed_s", "timed"), ("warmup_s", "warm-up"), ("load_s", "loads"), ("build_s", "builds"),
              ("ppl_s", "perplexity"), ("idle_s", "idle power")]


def write_time(rows: list[dict], out: Path) -> Path:
    """time.md: per study, the seconds its measured cells spent by part (the records' own clocks; process and
    DVC overhead are in `make reproduce`'s closing table)."""
    head = ["study", "cells", "cells (s)", *[label + " (s)" for _, label in TIME_PARTS], "rest (s)",
            "cells / generation"]
    lines = ["# Where the time went", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for study in sorted({r["study"] for r in rows}):
        rs = [r for r in rows if r["study"] == study and r.get("cell_s") is not None and not r.get("implied_by")]
        if not rs:
            continue
        total = sum(r["cell_s"] for r in rs)
        parts = [sum(r.get(col) or 0.0 for r in rs) for col, _ in TIME_PARTS]
        generation = parts[0] + parts[1]
        ratio = f"{total / generation:.2f}x" if generation else "–"
        lines.append(f"| {study} | {len(rs)} | {total:.1f} | " + " | ".join(f"{p:.1f}" for p in parts)
                     + f" | {total - sum(parts):.1f} | {ratio} |")
    (out / "time.md").write_text("\n".join(lines) + "\n")
    return out / "time.md"


def log_report(out: Path, rows: list[dict], table: list[dict]) -> None:
    """An MLflow run `report` in experiment `report`, holding every output as an artifact."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    mlflow = tracking.client(uri)
    exp_id = tracking.experiment_id(mlflow, uri, "report")
    run = mlflow.create_run(exp_id, run_name=f"report {time.strftime('%Y-%m-%d %H:%M')}",
                            tags={"profiles": ",".join(sorted({str(r['profile']) for r in rows}))})
    for verdict in (claims.PASS, claims.FAIL, claims.NA):
        mlflow.log_metric(run.info.run_id, f"claims_{verdict.lower().replace(' ', '_')}",
                          sum(t["verdict"] == verdict for t in table))
    mlflow.log_metric(run.info.run_id, "cells", len(rows))
    for sub in ("figures", "tables"):
        mlflow.log_artifacts(run.info.run_id, str(out / sub), artifact_path=sub)
    for name in ("results.csv", "claims.md", "claims.csv", "index.md", "time.md"):
        mlflow.log_artifact(run.info.run_id, str(out / name))
    mlflow.set_terminated(run.info.run_id, "FINISHED")


def report(traces_dir: Path, out: Path, *, claims_file: Path | None = None, check_only: bool = False,
           log_mlflow: bool = True) -> int:
    """Build the report into `out` (results.csv, figures/, tables/, claims.md/.csv, index.md) and print the
    claims table. `claims_file`: default <out>/claims.yaml where one is there, else conf/claims.yaml.
    Returns the exit code: 0, or 2 with one line when there is nothing to report from."""
    try:
        rows, source = load_rows(traces_dir, out / "results.csv")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report from {source}: {len(rows)} cells", flush=True)
    claims_file = claims_file or (out / "claims.yaml" if (out / "claims.yaml").is_file() else CLAIMS)
    table = claims.evaluate(claims.load(claims_file), rows)
    cap = caption([r for r in rows if r["study"] in {experiments.load(n)["study"] for n in experiments.names()}])
    claims.write(table, out, cap)
    print("\nclaims (paper/claims.md):\n" + claims.render(table), flush=True)
    counts = {v: sum(t["verdict"] == v for t in table) for v in (claims.PASS, claims.FAIL, claims.NA)}
    print("\n" + ", ".join(f"{n} {v}" for v, n in counts.items()), flush=True)
    if check_only:
        return 0
    index = build_outputs(rows, out)
    write_time(rows, out)
    (out / "index.md").write_text("# Generated figures and tables\n\n" + f"Built from {source}; {cap}.\n\n"
                                  + "\n".join(index) + "\n\nClaims: [claims.md](claims.md). "
                                  "Every number: [results.csv](results.csv). "
                                  "Where the time went: [time.md](time.md).\n")
    print("\n" + "\n".join(index), flush=True)
    if log_mlflow and os.environ.get("ARTIFACT_TRACKING", "1") != "0":
        try:
            log_report(out, rows, table)
        except Exception as e:  # the files stand; the UI just lacks this run
            print(f"warning: MLflow report run not logged ({type(e).__name__}: {e})", file=sys.stderr)
    return 0
