"""The state of the host and the GPU at a visit's edges, so a reader can see what drift a round went through: the
host's load average and CPU steal (a VM's vCPU waiting for its hypervisor), and on CUDA the GPU's SM clock and
temperature (NVML, by the UUID of the cell's device). Absent where not readable (None), never 0."""
from __future__ import annotations

import os
from pathlib import Path


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs since boot, from /proc/stat; None where there is no /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


def steal_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of CPU time stolen by the hypervisor between two cpu_times() reads."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


class HostState:
    """Reads at a visit's edges; opens NVML once (CUDA cells with nvidia-ml-py) and closes it with close()."""

    def __init__(self, device: str):
        self.nv, self.handle = None, None
        if device.startswith("cuda"):
            try:
                import pynvml

                from ..power.nvml import cuda_uuid
                pynvml.nvmlInit()
                self.nv, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByUUID(cuda_uuid(device))
            except Exception:  # no NVML here (a Jetson answers "not supported"): clocks and temperature absent
                self.nv = None

    def snapshot(self) -> dict:
        """{load1, cpu_times, gpu_sm_mhz, gpu_temp_c}."""
        out = {"load1": os.getloadavg()[0], "cpu_times": cpu_times(), "gpu_sm_mhz": None, "gpu_temp_c": None}
        if self.nv is not None:
            try:
                out["gpu_sm_mhz"] = self.nv.nvmlDeviceGetClockInfo(self.handle, self.nv.NVML_CLOCK_SM)
                out["gpu_temp_c"] = self.nv.nvmlDeviceGetTemperature(self.handle, self.nv.NVML_TEMPERATURE_GPU)
            except Exception:
                pass
        return out

    def close(self) -> None:
        if self.nv is not None:
            try:
                self.nv.nvmlShutdown()
            except Exception:
                pass
            self.nv = None


def visit_fields(start: dict, end: dict) -> dict:
    """The columns a visit's rows carry: clocks and temperature at start and end, load and steal over it."""
    return {"gpu_sm_mhz_start": start["gpu_sm_mhz"], "gpu_sm_mhz_end": end["gpu_sm_mhz"],
            "gpu_temp_c_start": start["gpu_temp_c"], "gpu_temp_c_end": end["gpu_temp_c"],
            "load1_start": round(start["load1"], 2), "load1_end": round(end["load1"], 2),
            "cpu_steal": steal_fraction(start["cpu_times"], end["cpu_times"])}
