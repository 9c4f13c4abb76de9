"""`python -m artifact.meter --seconds 10`: live power from the detected (or named) sensor, a quick check
that the meter works before a long sweep."""
from __future__ import annotations

import argparse
import sys
import time

from .core.config import BadInput, load_group, resolve_device
from .power import Sampler, window
from .power.choose import make_meter
from .power.energy import independent_updates, update_s, updates_seen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--meter", default="auto", help="auto | ina3221 | jtop | nvml | rapl")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate-hz", type=float, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sysfs-root", default=None, help="where /sys is (a fake tree in tests)")
    a = ap.parse_args(argv)
    try:
        meter_cfg = load_group("meter", a.meter)
        if a.rate_hz:
            meter_cfg.rate_hz = a.rate_hz
        if a.sysfs_root:
            meter_cfg.sysfs_root = a.sysfs_root
        meter = make_meter(meter_cfg, resolve_device(a.device))
        meter.read()
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _show(meter, meter_cfg, a.seconds)
    finally:
        meter.close()


def _show(meter, meter_cfg, seconds: float) -> int:
    info = meter.describe()
    print(f"meter {info['meter']}: {', '.join(f'{k}={v}' for k, v in info.items() if k != 'meter')}")
    sampler = Sampler(meter, meter_cfg.rate_hz).start()
    t0 = time.perf_counter()
    c0 = meter.counter_j()
    shown = 0
    while time.perf_counter() - t0 < seconds:
        time.sleep(min(1.0, max(0.0, seconds - (time.perf_counter() - t0))))
        if len(sampler.samples) > shown:
            s = sampler.samples[-1]
            rails = "  ".join(f"{k} {v:.2f}" for k, v in s.rails.items())
            print(f"{s.t - t0:7.2f} s  total {s.total_w:8.2f} W   {rails}", flush=True)
            shown = len(sampler.samples)
    t1 = time.perf_counter()
    c1 = meter.counter_j()
    sampler.stop()
    if len(sampler.samples) < 2:
        print("error: fewer than 2 samples: the sensor did not answer", file=sys.stderr)
        return 1
    w = window(sampler.samples, t0, t1)
    line = (f"{len(sampler.samples)} samples at {sampler.achieved_rate_hz():.1f} Hz: "
            f"median {w['power_w']['median']:.2f} W, "
            f"mean {w['power_w']['mean']:.2f} W, p95 {w['power_w']['p95']:.2f} W, energy {w['energy_j']:.2f} J")
    if c0 is not None and c1 is not None:
        line += f" (energy counter {c1 - c0:.2f} J)"
    print(line)
    print(f"{independent_updates(sampler, t0, t1)} independent readings (one per {update_s(sampler):.3f} s: "
          f"{meter.update_source}); the total changed {updates_seen(sampler.samples, t0, t1)} times")
    if "jtop_tot" in w:
        print(f"module total ({', '.join(info['total_rails'])}): median {w['power_w']['median']:.2f} W; "
              f"jtop's tot (the paper's figure): median {w['jtop_tot']['median_w']:.2f} W")
    return 0


if __name__ == "__main__":
    sys.exit(main())
