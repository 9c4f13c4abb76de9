"""NVIDIA GPUs through NVML: instantaneous board power where the field exists, else the driver's
(1 s averaged) power, and the total-energy counter read at window edges. The GPU is the cell's own, found by
UUID: NVML numbers every GPU of the host, CUDA only those CUDA_VISIBLE_DEVICES leaves visible."""
from __future__ import annotations

import os

from .meters import Meter, MeterError, Reading, now


def _cuda_properties(device: str):
    """CUDA's properties of the torch device `device` (cuda = the current device, or cuda:N)."""
    import torch
    return torch.cuda.get_device_properties(int(device.split(":")[1]) if ":" in device else torch.cuda.current_device())


def cuda_uuid(device: str) -> str:
    """NVML's UUID ("GPU-...") of the torch device `device`."""
    uuid = str(_cuda_properties(device).uuid)
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def pci_address(domain: int, bus: int, device: int) -> str:
    """domain:bus:device in hex, as NVML's busId begins (00000000:18:00)."""
    return f"{domain:08X}:{bus:02X}:{device:02X}"


def cuda_pci_address(device: str) -> str | None:
    """The PCI address of the torch device as CUDA sees it (None where this torch does not report it): a view of
    the device independent of NVML's, to check that the GPU NVML opened by UUID is the one the cell runs on."""
    props = _cuda_properties(device)
    ids = [getattr(props, f"pci_{part}_id", None) for part in ("domain", "bus", "device")]
    return None if None in ids else pci_address(*ids)


def memory_used_bytes(device: str) -> int | None:
    """What nvidia-smi shows as used memory on the cell's GPU (every process's), or None without NVML."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByUUID(cuda_uuid(device))).used)
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()


class NvmlMeter(Meter):
    name = "nvml"
    # Measured: on an H100 the power fields and the energy counter move about every 100 ms (scripts/nvml_probe.py,
    # issue 3); in the shipped records 97.7 % (H100) and 98.4 % (H200) of consecutive 10 Hz samples differ.
    update_s = 0.1
    update_source = "measured on H100 and H200: NVML's power and energy counter move about every 100 ms"
    period_s = 0.05

    def __init__(self, uuid: str, field: str = "auto", cuda_pci: str | None = None):
        try:
            import pynvml
        except ImportError as e:
            raise MeterError(f"meter=nvml needs nvidia-ml-py ({e})")
        self.nv = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise MeterError(f"NVML is not available here ({e})")
        try:
            self.handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            self.gpu = pynvml.nvmlDeviceGetName(self.handle)
        except pynvml.NVMLError as e:
            raise MeterError(f"NVML has no GPU with UUID {uuid} ({e})")
        self.uuid, self.cuda_pci, self.pci = uuid, cuda_pci, self._pci()
        if cuda_pci and self.pci and cuda_pci != self.pci:
            raise MeterError(f"NVML's GPU with UUID {uuid} is at PCI {self.pci} but CUDA's device is at {cuda_pci}: "
                             f"the meter would read another GPU than the cell's")
        fields = {"instant": pynvml.NVML_FI_DEV_POWER_INSTANT, "average": pynvml.NVML_FI_DEV_POWER_AVERAGE}
        if field == "auto":
            field = "instant" if self._field_ok(fields["instant"]) else "usage"
        if field in fields and not self._field_ok(fields[field]):
            raise MeterError(f"meter.nvml_field={field} is not supported by {self.gpu}; use auto or usage")
        self.field, self.field_id = field, fields.get(field)
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
            self.has_counter = True
        except pynvml.NVMLError:
            self.has_counter = False
        try:
            self.read()
        except pynvml.NVMLError as e:  # e.g. a Jetson: "Not Supported"
            raise MeterError(f"NVML cannot read power on {self.gpu} ({e})")

    def _pci(self) -> str | None:
        try:
            info = self.nv.nvmlDeviceGetPciInfo(self.handle)
        except self.nv.NVMLError:
            return None
        return pci_address(info.domain, info.bus, info.device)

    def _field_ok(self, field_id: int) -> bool:
        try:
            [v] = self.nv.nvmlDeviceGetFieldValues(self.handle, [field_id])
            return v.nvmlReturn == self.nv.NVML_SUCCESS
        except self.nv.NVMLError:
            return False

    def read(self) -> Reading:
        t = now()
        if self.field_id is None:
            mw = self.nv.nvmlDeviceGetPowerUsage(self.handle)
        else:
            [v] = self.nv.nvmlDeviceGetFieldValues(self.handle, [self.field_id])
            if v.nvmlReturn != self.nv.NVML_SUCCESS:
                raise self.nv.NVMLError(v.nvmlReturn)
            mw = v.value.uiVal
        return Reading(t, mw / 1e3, {"gpu": mw / 1e3})

    def counter_j(self) -> float | None:
        return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3 if self.has_counter else None

    def describe(self) -> dict:
        return {**super().describe(), "gpu": self.gpu, "gpu_uuid": self.uuid, "gpu_pci": self.pci,
                "gpu_pci_cuda": self.cuda_pci,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "field": self.field,
                "total_is": "GPU board power (not the host)"}

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError:
            pass
