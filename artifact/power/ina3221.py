"""Jetson INA3221 power monitors, read directly from sysfs, at the pace the chips are programmed to.

Current kernels (JetPack 5/6) expose hwmon: /sys/bus/i2c/drivers/ina3221/<bus-addr>/hwmon/hwmonN/ (N changes between
boots) with inK_label, inK_input (mV), currK_input (mA) per channel, and per chip `samples` (the averaging count) and
`update_interval` (ms: samples x channels x conversion times). JetPack 6's boot script programs 512 samples and
430 ms, so a reading is a 0.43 s average that changes once per 0.43 s. Channels labelled NC are not connected.
Older kernels (JetPack 4) expose iio: .../ina3221x/*/iio:device*/rail_name_K, in_powerK_input (mW), with no timing
attribute. The root is a config value so tests point it at a fake tree. Which rails make the module's total:
artifact.power.boards."""
from __future__ import annotations

from pathlib import Path

from . import boards
from .meters import OVERSAMPLE, Meter, MeterError, Reading, now

# Where a kernel does not expose update_interval: JetPack 6's setting, the slowest known, so windows are long enough.
ASSUMED_UPDATE_S = 0.43


def _read_number(path: Path) -> float:
    return float(path.read_text().strip())


def chip_timing(hw: Path) -> dict:
    """One chip's `samples` and `update_interval` (ms) as hwmon gives them; absent keys where it does not."""
    out = {}
    for attr in ("samples", "update_interval"):
        if (hw / attr).is_file():
            out[attr if attr == "samples" else "update_interval_ms"] = int(_read_number(hw / attr))
    return out


def find_channels(root: Path) -> tuple[dict[str, tuple], dict[str, dict]]:
    """({rail label: channel}, {chip: {hwmon, samples, update_interval_ms, rails}}) of every INA3221 under root.
    A channel is ("hwmon", mV path, mA path) or ("iio", mW path). NC (not connected) channels are left out."""
    channels: dict[str, tuple] = {}
    chips: dict[str, dict] = {}
    for hw in sorted(root.glob("sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")):
        rails = []
        for label_file in sorted(hw.glob("in*_label")):
            label, n = label_file.read_text().strip(), label_file.name[2:-len("_label")]
            volt, curr = hw / f"in{n}_input", hw / f"curr{n}_input"
            if label != "NC" and volt.is_file() and curr.is_file():
                channels[label] = ("hwmon", volt, curr)
                rails.append(label)
        chips[hw.parent.parent.name] = {"hwmon": hw.name, **chip_timing(hw), "rails": rails}
    for dev in sorted(root.glob("sys/bus/i2c/drivers/ina3221x/*/iio:device*")):
        rails = []
        for label_file in sorted(dev.glob("rail_name_*")):
            label, power = label_file.read_text().strip(), dev / f"in_power{label_file.name.rsplit('_', 1)[1]}_input"
            if power.is_file():
                channels[label] = ("iio", power)
                rails.append(label)
        chips[dev.parent.name] = {"iio": dev.name, "rails": rails}
    return channels, chips


def update_interval(chips: dict[str, dict]) -> tuple[float, str]:
    """(seconds, how known): the slowest chip's update_interval, since the total changes only as fast as its slowest
    rail; ASSUMED_UPDATE_S where no chip exposes one."""
    known = {c: v["update_interval_ms"] for c, v in chips.items() if "update_interval_ms" in v and v["rails"]}
    if not known:
        return ASSUMED_UPDATE_S, (f"assumed {ASSUMED_UPDATE_S} s (this kernel exposes no update_interval: JetPack 6's "
                                  f"setting, 512 samples and 430 ms, the slowest known)")
    chip = max(known, key=known.get)
    return known[chip] / 1e3, f"hwmon update_interval of {chip} ({known[chip]} ms, the slowest chip)"


class Ina3221Meter(Meter):
    host_wide = True
    name = "ina3221"

    def __init__(self, sysfs_root: str = "/", total_rails: list[str] | None = None):
        root = Path(sysfs_root)
        self.channels, self.chips = find_channels(root)
        if not self.channels:
            raise MeterError(f"no INA3221 rails under {root / 'sys/bus/i2c/drivers'} (not a Jetson, or another layout)")
        self.total = boards.module_total(list(self.channels), total_rails)
        self.update_s, self.update_source = update_interval(self.chips)
        self.period_s = self.update_s / OVERSAMPLE
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
        return Reading(t, sum(rails[r] for r in self.total["rails"]), rails, boards.jtop_tot(rails))

    def describe(self) -> dict:
        return {**super().describe(), "rails": list(self.channels), "chips": self.chips,
                "total_rails": self.total["rails"], "module": self.total["module"], "total_is": self.total["is"],
                "jtop_tot_is": "jtop's `tot`: VDD_IN where the board has it, else the plain sum of every rail"}
