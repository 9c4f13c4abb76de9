"""edge-llm-artifact: re-run the measurements of Arya & Simmhan, PAISE 2025 (arXiv 2506.09554)."""
import logging
import os as _os

__version__ = "0.1.0"

# bitsandbytes 0.50 warns at import, on a CPU with AVX512-BF16, for every cell (fp32 too), that it could not load an
# optional 4-bit CPU kernel from the Hugging Face hub ("Failed to load CPU gemm_4bit_forward from
# kernels-community"). It then uses its own built-in CPU kernel, which is what every record here measured; fetching
# kernels from a hub at run time is what this package never does. The warning is therefore silenced.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# torch 2.6 with Triton installed (the Python 3.10 stack's) starts a pool of compile worker processes when
# torch._inductor.async_compile is imported (its "warm pool"). This package never compiles, so the pool is only
# extra processes beside every cell; when a cell process exits early they print a BrokenPipeError traceback after
# our one-line error. Set before torch is imported; a user's own TORCH_WARM_POOL wins.
_os.environ.setdefault("TORCH_WARM_POOL", "0")
