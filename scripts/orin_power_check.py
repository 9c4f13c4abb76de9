"""What a Jetson's power rails really do, in a minute: run on the board (`python scripts/orin_power_check.py`).

Prints each INA3221 chip (bus address, hwmon folder, rail labels, `samples`, `update_interval`), polls every rail
for --seconds (default 5) at 20 Hz and counts how often each value changed (JetPack 6 as documented: about one change
per 430 ms, 11-12 in 5 s), then sets the module total this package reports (conf/jetson_modules.yaml) beside jtop's
`tot` (the figure the paper read), with the DDR rail's share: what a comparison with the paper's power numbers
needs. jtop's own reading is added where jetson-stats is installed and its service answers. --root points at another
/ (the tests use a fake board)."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from artifact.power import boards
from artifact.power.ina3221 import Ina3221Meter
from artifact.power.meters import MeterError


def poll(meter: Ina3221Meter, seconds: float, hz: float = 20.0) -> list:
    readings, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        readings.append(meter.read())
        time.sleep(1 / hz)
    return readings


def jtop_line(seconds: float = 2.0) -> str:
    try:
        import jtop as jtop_module
        from jtop import jtop
    except ImportError:
        return "jtop: jetson-stats is not installed in this Python (pip install -e '.[jetson]')"
    try:
        with jtop() as jetson:
            values = []
            end = time.perf_counter() + seconds
            while jetson.ok() and time.perf_counter() < end:
                values.append(jetson.power["tot"]["power"] / 1e3)
            return (f"jtop {jtop_module.__version__} (service interval {jetson.interval} s): tot median "
                    f"{statistics.median(values):.2f} W over {len(values)} readings")
    except Exception as e:  # jtop raises its own JtopException (service down, version mismatch)
        return f"jtop: {' '.join(str(e).split())}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/", help="where / is (a fake board in tests)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--no-jtop", action="store_true", help="skip jtop")
    a = ap.parse_args(argv)
    try:
        meter = Ina3221Meter(a.root)
    except MeterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for chip, info in meter.chips.items():
        timing = (f"samples {info.get('samples', 'absent')}, update_interval "
                  f"{info.get('update_interval_ms', 'absent')} ms")
        print(f"{chip} ({info.get('hwmon') or info.get('iio')}): {', '.join(info['rails']) or 'no rails'}; {timing}")
    print(f"update interval used: {meter.update_s} s ({meter.update_source})")
    readings = poll(meter, a.seconds)
    expected = a.seconds / meter.update_s
    print(f"{len(readings)} polls in {a.seconds} s; a new reading every {meter.update_s} s gives about {expected:.1f}")
    for rail in meter.channels:
        values = [r.rails[rail] for r in readings]
        changes = sum(x != y for x, y in zip(values, values[1:]))
        print(f"  {rail:18s} changed {changes:3d} times, median {statistics.median(values):7.3f} W")
    total = statistics.median(r.total_w for r in readings)
    tot = statistics.median(r.jtop_tot_w for r in readings)
    print(f"module total ({' + '.join(meter.total['rails'])}): median {total:.2f} W  [{meter.total['is']}]")
    print(f"jtop's tot (the paper's figure): median {tot:.2f} W  ({tot - total:+.2f} W, {tot / total - 1:+.1%})")
    if "VDDQ_VDD2_1V8AO" in meter.channels:
        ddr = statistics.median(r.rails["VDDQ_VDD2_1V8AO"] for r in readings)
        print(f"VDDQ_VDD2_1V8AO (counted twice in jtop's tot): median {ddr:.2f} W, {ddr / tot:.1%} of jtop's tot")
    print(f"jtop rule from these rails: {boards.jtop_tot(readings[-1].rails):.2f} W (last poll)")
    if not a.no_jtop:
        print(jtop_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
