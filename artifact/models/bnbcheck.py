"""bitsandbytes checked on the cell's device before a sweep, not in it: one real 8-bit matmul (a Linear8bitLt layer
quantized on the device, as architecture.quantize_in_memory builds them) and one 4-bit nf4 quantize/dequantize.

Run in a child process: a bitsandbytes built for another platform can import and then fail at its first kernel, and
its CUDA error check can end the process from C. On a Jetson Orin, PyPI's aarch64 wheel (built for server ARM) fails
with "Error named symbol not found at line 233 in file /src/csrc/ops.cu" (bitsandbytes issue #1930). A failure is one
line naming the device, the bitsandbytes version and the library it loaded, the error, and the command that fixes it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..core.config import BadInput

TEGRA_RELEASE = "/etc/nv_tegra_release"

# the child: prints what it loaded first (a C-level exit leaves that line), then runs both ops and prints "ok"
PROBE = r"""
import json, sys
device = sys.argv[1]
import torch, bitsandbytes as bnb, bitsandbytes.functional as F
from bitsandbytes import cextension
library = getattr(cextension.lib, "_name", None) or getattr(getattr(cextension.lib, "lib", None), "_name", None)
print(json.dumps({"version": bnb.__version__, "library": str(library or "none"),
                  "backend": str(getattr(cextension, "BNB_BACKEND", "?"))}), flush=True)
torch.manual_seed(0)
dtype = torch.float16 if device.startswith("cuda") else torch.float32
layer = bnb.nn.Linear8bitLt(64, 32, bias=False, has_fp16_weights=False, threshold=6.0).to(device)
y = layer(torch.randn(4, 64, device=device, dtype=dtype))
assert tuple(y.shape) == (4, 32) and bool(torch.isfinite(y).all()), f"8-bit matmul gave {tuple(y.shape)}"
w = torch.randn(64, 64, device=device, dtype=dtype)
q, state = F.quantize_4bit(w, quant_type="nf4")
back = F.dequantize_4bit(q, state)
err = float((back.float() - w.float()).abs().mean() / w.float().abs().mean())
assert err < 0.2, f"4-bit nf4 round trip off by {err:.0%}"
if device.startswith("cuda"):
    torch.cuda.synchronize(device)
print("ok", flush=True)
"""


def device_name(device: str) -> str:
    """'NVIDIA H200 (compute capability 9.0)' for a CUDA device; the device string otherwise."""
    if not device.startswith("cuda"):
        return device
    import torch
    try:
        index = torch.device(device).index or 0
        major, minor = torch.cuda.get_device_capability(index)
        return f"{torch.cuda.get_device_name(index)} (compute capability {major}.{minor})"
    except Exception:  # no CUDA in this process: the device as asked
        return device


def fix_command() -> str:
    if Path(TEGRA_RELEASE).is_file():
        return ("make bnb-jetson (builds bitsandbytes on this board for compute capability 8.7) or make bnb-jetson "
                "BNB_WHEEL=<a Jetson wheel, e.g. from Jetson AI Lab's jp6/cu126 index>")
    return "make setup (reinstalls the pinned bitsandbytes), or use quant=fp16"


def check(device: str) -> None:
    """Run the probe on `device` in a child process; BadInput on any failure (artifact.sweep.preflight.check_inputs
    asks once per process, precision and device)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    try:
        out = subprocess.run([sys.executable, "-c", PROBE, device], capture_output=True, text=True, env=env,
                             timeout=600)
    except subprocess.TimeoutExpired:
        raise BadInput(f"bitsandbytes' 8-bit/4-bit probe on {device_name(device)} did not end in 600 s; "
                       f"fix: {fix_command()}") from None
    lines = out.stdout.splitlines()
    if out.returncode == 0 and lines and lines[-1] == "ok":
        return
    loaded = next((json.loads(line) for line in lines if line.startswith("{")), None)
    what = (f"bitsandbytes {loaded['version']} (library {Path(loaded['library']).name}, backend {loaded['backend']})"
            if loaded else "bitsandbytes (did not import)")
    error = _last_error(out.stderr + "\n" + out.stdout) or f"exit status {out.returncode}"
    raise BadInput(f"{what} fails its 8-bit/4-bit probe on {device_name(device)}: {error}; fix: {fix_command()}")


def _last_error(text: str) -> str:
    """The line that says what went wrong: the exception line of a traceback, or a C library's 'Error ...' line."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and line.strip() != "ok"]
    for line in reversed(lines):
        if line.startswith("Error ") or "Error:" in line or "error:" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else ""
