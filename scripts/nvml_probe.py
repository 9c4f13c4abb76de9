"""How fast NVML's power readings really change: poll each power source as fast as possible for a few
seconds and count distinct updates (instantaneous field, averaged field, nvmlDeviceGetPowerUsage, and
the total-energy counter). Run it under load (e.g. beside a generation) and idle."""
from __future__ import annotations

import argparse
import threading
import time

import pynvml


def probe(handle, read, seconds: float) -> dict:
    t_end = time.perf_counter() + seconds
    last, changes, polls = None, [], 0
    while time.perf_counter() < t_end:
        v = read(handle)
        polls += 1
        if v != last:
            changes.append(time.perf_counter())
            last = v
    gaps = [b - a for a, b in zip(changes, changes[1:])]
    return {"polls": polls, "updates": len(changes), "updates_per_s": (len(changes) - 1) / seconds,
            "median_gap_ms": 1e3 * sorted(gaps)[len(gaps) // 2] if gaps else None}


def field(fid):
    def read(h):
        [v] = pynvml.nvmlDeviceGetFieldValues(h, [fid])
        return v.value.uiVal if v.nvmlReturn == pynvml.NVML_SUCCESS else None
    return read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--load", action="store_true", help="run matrix products on the GPU meanwhile")
    a = ap.parse_args()
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    stop = threading.Event()
    if a.load:
        import torch
        x = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)

        def burn():
            while not stop.is_set():
                for _ in range(20):
                    x @ x
                torch.cuda.synchronize()
        burner = threading.Thread(target=burn, daemon=True)
        burner.start()
        time.sleep(1)
    sources = {"instant field": field(pynvml.NVML_FI_DEV_POWER_INSTANT),
               "average field": field(pynvml.NVML_FI_DEV_POWER_AVERAGE),
               "nvmlDeviceGetPowerUsage": pynvml.nvmlDeviceGetPowerUsage,
               "total energy counter": pynvml.nvmlDeviceGetTotalEnergyConsumption}
    print(f"{pynvml.nvmlDeviceGetName(h)}, driver {pynvml.nvmlSystemGetDriverVersion()}, load={a.load}")
    for name, read in sources.items():
        r = probe(h, read, a.seconds)
        print(f"{name:26s} {r['updates_per_s']:7.1f} updates/s  median gap {r['median_gap_ms']} ms  "
              f"({r['polls']} polls, last value {read(h)})")
    stop.set()
    if a.load:
        burner.join()


if __name__ == "__main__":
    main()
