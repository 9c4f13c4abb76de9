"""`python -m artifact.report`: rebuild every figure and table, and check the claims.

    python -m artifact.report            # from traces/ when records are there, else paper/results.csv
    python -m artifact.report --check    # the claims table only (make check)

Outputs under paper/: results.csv (one row per cell), figures/<experiment>.{pdf,png,csv},
tables/<experiment>.{md,tex,csv}, claims.{md,csv}, index.md; and an MLflow run `report` holding them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .build import report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artifact.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("--traces-dir", default="traces")
    ap.add_argument("--out", default="paper")
    ap.add_argument("--claims", default=None, help="default: <out>/claims.yaml, else the package's conf/claims.yaml")
    ap.add_argument("--check", action="store_true", help="only the claims table")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log the report run")
    args = ap.parse_args(argv)
    return report(Path(args.traces_dir), Path(args.out), claims_file=Path(args.claims) if args.claims else None,
                  check_only=args.check, log_mlflow=not args.no_mlflow)


if __name__ == "__main__":
    sys.exit(main())
