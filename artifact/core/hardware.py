"""The kind of processor a cell runs on: part of its identity (artifact.core.config resolves it, the record
keeps it)."""
from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_class(device: str) -> str:
    """The kind of processor a cell runs on, part of its identity: the GPU's name for a CUDA cell (of the
    cell's own device), the CPU's model name for a CPU cell. Equal names, interchangeable records."""
    if device.startswith("cuda"):
        import torch
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()
