"""`python -m artifact.timing --since EPOCH`: where the time of everything measured since then went (make reproduce
prints it at the end), from the records and the sweeps' log (artifact.store.timing)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .store.timing import render, since


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artifact.timing", description=__doc__.split("\n\n")[0])
    ap.add_argument("--since", type=float, required=True, help="epoch seconds: when the run started")
    ap.add_argument("--traces-dir", default="traces")
    args = ap.parse_args(argv)
    print(render(since(Path(args.traces_dir), args.since)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
