"""Jetson INA3221 power monitors, read directly from sysfs (fast: 10 Hz and more, unlike jtop).

Current kernels (JetPack 5/6) expose hwmon: .../ina3221/*/hwmon/hwmon*/in{N}_label, in{N}_input (mV),
curr{N}_input (mA). Older ones (JetPack 4) expose iio: .../ina3221x/*/iio:device*/rail_name_{N},
in_power{N}_input (mW). The root is a config value so tests point it at a fake tree."""
from __future__ import annotations

from pathlib import Path

from .meters import Meter, MeterError, Reading, now


def _read_number(path: Path) -> float:
    return float(path.read_text().strip())


class Ina3221Meter(Meter):
    host_wide = True
    name = "ina3221"
    period_s = 0.01  # the chips convert every few ms; sysfs reads take ~0.1 ms each

    def __init__(self, sysfs_root: str = "/", total_rails: list[str] | None = None):
        root = Path(sysfs_root)
        self.channels: dict[str, tuple] = {}  # rail label -> ("hwmon", mV path, mA path) | ("iio", mW path)
        for hw in sorted(root.glob("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")):
            for label in sorted(hw.glob("in*_label")):
                n = label.name[2:-len("_label")]
                volt, curr = hw / f"in{n}_input", hw / f"curr{n}_input"
                if volt.is_file() and curr.is_file():
                    self.channels[label.read_text().strip()] = ("hwmon", volt, curr)
        for dev in sorted(root.glob("sys/bus/i2c/drivers/ina3221x/*/iio:device*")):
            for label in sorted(dev.glob("rail_name_*")):
                n = label.name.rsplit("_", 1)[1]
                power = dev / f"in_power{n}_input"
                if power.is_file():
                    self.channels[label.read_text().strip()] = ("iio", power)
        if not self.channels:
            raise MeterError(f"no INA3221 rails under {root / 'sys/bus/i2c/drivers'} (not a Jetson, or another layout)")
        self.total_rails = list(total_rails or self.channels)
        missing = [r for r in self.total_rails if r not in self.channels]
        if missing:
            raise MeterError(f"meter.total_rails names {', '.join(missing)}, not found; rails here: "
                             f"{', '.join(self.channels)}")
        try:
            self.read()
        except OSError as e:
            raise MeterError(f"INA3221 rails are not readable: {e}")

    def _watts(self, channel: tuple) -> float:
        if channel[0] == "hwmon":
            return _read_number(channel[1]) * _read_number(channel[2]) / 1e6  # mV * mA -> W
        return _read_number(channel[1]) / 1e3  # mW -> W

    def read(self) -> Reading:
        t = now()
        rails = {name: self._watts(ch) for name, ch in self.channels.items()}
        return Reading(t, sum(rails[r] for r in self.total_rails), rails)

    def describe(self) -> dict:
        return {**super().describe(), "rails": list(self.channels), "total_rails": self.total_rails,
                "total_is": "sum of total_rails (module power, not wall power)"}
