"""Which meter a cell gets: the one conf/meter names, or for `auto` the first sensor that opens."""
from __future__ import annotations

from . import ina3221, jtop_meter, nvml, rapl
from .meters import Meter, MeterError, NoMeter


def make_meter(meter_cfg, device: str) -> Meter:
    """The meter named by conf/meter; `auto` tries ina3221 -> nvml -> rapl -> none."""
    builders = {"ina3221": lambda: ina3221.Ina3221Meter(meter_cfg.sysfs_root, list(meter_cfg.total_rails)),
                "jtop": lambda: jtop_meter.JtopMeter(meter_cfg.jtop_interval_s, meter_cfg.sysfs_root,
                                                     list(meter_cfg.total_rails)),
                "nvml": lambda: nvml.NvmlMeter(nvml.cuda_uuid(device), meter_cfg.nvml_field,
                                               nvml.cuda_pci_address(device)),
                "rapl": lambda: rapl.RaplMeter(meter_cfg.sysfs_root, meter_cfg.rapl_domains),
                "none": lambda: NoMeter()}
    if meter_cfg.name == "nvml" and not device.startswith("cuda"):
        raise MeterError(f"meter=nvml reads a CUDA GPU's power, but the cell runs on device={device} (no CUDA device "
                         f"here, or device=cpu); use meter=auto, rapl or none")
    if meter_cfg.name != "auto":
        return builders[meter_cfg.name]()
    tried = []
    for name in ("ina3221", "nvml", "rapl"):
        if name == "nvml" and not device.startswith("cuda"):
            tried.append("nvml: device is not CUDA")
            continue
        try:
            meter = builders[name]()
            meter.auto_tried = tried
            return meter
        except MeterError as e:
            tried.append(f"{name}: {e}")
    return NoMeter(reason="meter=auto found no readable sensor (" + "; ".join(tried) + ")")
