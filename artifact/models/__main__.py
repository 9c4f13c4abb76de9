"""`python -m artifact.models`: the earlier name of `python -m artifact.quantize` (kept as an alias)."""
import sys

from ..quantize import main

sys.exit(main(sys.argv[1:], prog="python -m artifact.models"))
