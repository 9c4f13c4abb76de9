"""`python -m artifact.quantize`: make the checkpoints under models/ that a profile's runs load (the DVC
`quantize` stage runs it, so the folder is versioned and shared): the embedded GGUF's conversion and GPTQ
quantizations. `python -m artifact.models` is the same command under its earlier name."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core.config import BadInput, compose
from .sweep import experiments
from .sweep.prepare import prepare, prepare_one


def main(argv: list[str], prog: str = "python -m artifact.quantize") -> int:
    ap = argparse.ArgumentParser(
        prog=prog,
        description="Make the checkpoints under models/ that runs load: GGUF conversion, GPTQ quantization.",
        epilog=f"examples:  {prog} --profile smoke\n"
               f"           {prog} model=phi2 quant=gptq-int4 model.weights=synthetic",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", help="every checkpoint this profile needs (auto: from the hardware)")
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of one run (model=..., quant=..., ...)")
    args = ap.parse_args(argv)
    if bool(args.profile) == bool(args.overrides):
        ap.error("give either --profile or overrides of one run")
    try:
        if args.profile:
            chosen, _ = experiments.resolve_profile(args.profile)
            return 1 if prepare(chosen, Path(args.models_dir)) else 0
        path = prepare_one(compose(args.overrides), Path(args.models_dir))
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{path}: ready" if path else "nothing to prepare: this run loads its weights from elsewhere")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
