"""`python -m artifact.reproduce`: run the experiments of a profile, then build every table and figure
and check the paper's claims. `make reproduce` and the DVC stages call it.

    python -m artifact.reproduce                      # profile from the hardware, every experiment, report
    python -m artifact.reproduce --profile gpu        # a chosen profile
    python -m artifact.reproduce --no-report batch_sweep   # one experiment (what a DVC stage runs)
    python -m artifact.reproduce --list               # what each experiment would run, nothing measured
    python -m artifact.reproduce -- min_seconds=1     # key=value after -- replaces an experiment's setting

Each experiment is one `python -m artifact.run -m ...` sweep in a subprocess, so a finished cell is on disk
before the next starts: Ctrl-C or a crash loses nothing, and running the same command again resumes. A sweep
whose process a cell ended (a library calling exit(), a segfault, the kernel's OOM killer) is run again at once."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .core.config import BadInput
from .sweep import experiments


def _passes_note(p: experiments.Plan) -> str:
    """How the command runs where it is more than one sweep: its passes and the rounds each asks."""
    sweeps = experiments.passes(p)
    if len(sweeps) < 2:
        return ""
    reversed_note = " (every second pass with the load groups in reversed order)" if any(s.reverse for s in sweeps) \
        else ""
    return (f"; in {len(sweeps)} passes, each a fresh process per load group, asking rounds="
            f"{', '.join(str(s.rounds) for s in sweeps)}{reversed_note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artifact.reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("experiments", nargs="*", help=f"default: all ({', '.join(experiments.names())})")
    ap.add_argument("--profile", default="auto", help="auto (from the hardware) | paper | gpu | smoke")
    ap.add_argument("--no-report", action="store_true", help="run the experiments only")
    ap.add_argument("--list", action="store_true", help="print each experiment's command; run nothing")
    ap.add_argument("--traces-dir", default="traces", help="traces (default: the shipped records of every profile are "
                    "restored into it first) or another folder, which starts empty (a second run kept apart)")
    ap.add_argument("--out", default="paper", help="where the report writes (default paper/<profile>/)")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    extra += [a for a in args.experiments if "=" in a]  # key=value without the -- works too
    launcher = os.environ.get("ARTIFACT_LAUNCHER", "basic")  # make reproduce LAUNCHER=ray (not a cell's identity)
    if launcher != "basic" and not any(a.startswith("hydra/launcher=") for a in extra):
        extra.append(f"hydra/launcher={launcher}")
    try:
        profile, why = experiments.resolve_profile(args.profile)
        names = [a for a in args.experiments if "=" not in a] or experiments.names()
        plans = [experiments.plan(n, profile, extra) for n in names]
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"profile {profile}: {why}; {experiments.profile_settings(profile)['description']}", flush=True)
    if args.list:
        for p in plans:
            command = f"python -m artifact.run -m {' '.join(p.overrides)}"
            what = f"skipped: {p.skip}" if p.skip else f"{p.cells} cells: {command}{_passes_note(p)}"
            print(f"{p.name}: {what}")
        return 0
    started = time.monotonic()
    if args.traces_dir == "traces":  # a second run kept apart (--traces-dir traces-NAME) starts empty
        from .report import archive
        restored = archive.restore(Path(args.out), Path(args.traces_dir))
        if restored:
            print(f"{restored} shipped records restored into traces/ from {args.out}/*/{archive.NAME} (measured: "
                  f"not measured again)", flush=True)
    failed = []
    try:
        for i, p in enumerate(plans):
            print(f"\n[experiment {i + 1}/{len(plans)}] {p.name} (study {p.study}, {p.cells} cells)", flush=True)
            rc = experiments.run_experiment(p, Path(args.traces_dir))
            if rc:
                failed.append(f"{p.name} (exit {rc})")
    except KeyboardInterrupt:
        print("\ninterrupted: finished cells are kept; the same command resumes", file=sys.stderr)
        return 130
    minutes = (time.monotonic() - started) / 60
    print(f"\nexperiments done in {minutes:.1f} min" + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    if not args.no_report:
        from .report.build import report
        failed += ["report"] if report(Path(args.traces_dir), Path(args.out), profiles=[profile]) else []
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
