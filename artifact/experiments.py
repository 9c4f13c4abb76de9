"""`python -m artifact.experiments --set-profile auto|paper|gpu|smoke`: point the DVC pipeline at a profile (the
`profile:` line of params.yaml; `make reproduce` runs it). The experiments themselves: artifact.sweep.experiments."""
from __future__ import annotations

import sys

from .core.config import BadInput
from .sweep.experiments import set_profile

if __name__ == "__main__":
    if sys.argv[1:2] != ["--set-profile"] or len(sys.argv) != 3:
        sys.exit("usage: python -m artifact.experiments --set-profile auto|paper|gpu|smoke")
    try:
        set_profile(sys.argv[2])
    except BadInput as e:
        sys.exit(f"error: {e}")
