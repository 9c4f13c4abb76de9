"""`python -m artifact.report`: rebuild every profile's figures and tables, and check the claims.

    python -m artifact.report                  # every profile: from traces/ when it has the profile's records,
                                               # else from paper/<profile>/records.tar.xz
    python -m artifact.report --profile gpu    # one profile (make figures PROFILE=gpu)
    python -m artifact.report --replay         # every shipped profile from its archive alone (make replay)
    python -m artifact.report --check          # the claims tables only (make check)

Outputs per profile under paper/<profile>/: results.csv (one row per cell), figures/<experiment>.{pdf,png,csv},
tables/<experiment>.{md,tex,csv}, claims.{md,csv}, index.md, time.md and records.tar.xz (the raw records);
paper/index.md over the profiles; and an MLflow run `report <profile>` holding each profile's outputs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..sweep import experiments
from .build import report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artifact.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces-dir", default="traces")
    ap.add_argument("--out", default="paper", help="the folder holding one folder per profile (default paper/)")
    ap.add_argument("--profile", default="all",
                    help=f"all | auto (those with records under traces/) | {' | '.join(experiments.PROFILES)}")
    ap.add_argument("--replay", action="store_true", help="rebuild from the archived records only (not traces/)")
    ap.add_argument("--claims", default=None, help="default: the package's conf/claims.yaml")
    ap.add_argument("--check", action="store_true", help="only the claims tables")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log the report runs")
    args = ap.parse_args(argv)
    if args.profile not in ("all", "auto", *experiments.PROFILES):
        print(f"error: --profile {args.profile!r} is not allowed; use all, auto or one of: "
              f"{', '.join(experiments.PROFILES)}", file=sys.stderr)
        return 2
    profiles = None if args.profile == "all" else args.profile if args.profile == "auto" else [args.profile]
    return report(Path(args.traces_dir), Path(args.out), profiles=profiles, replay=args.replay,
                  claims_file=Path(args.claims) if args.claims else None, check_only=args.check,
                  log_mlflow=not args.no_mlflow)


if __name__ == "__main__":
    sys.exit(main())
