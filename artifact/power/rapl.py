"""CPU package energy through Linux powercap (RAPL): cumulative `energy_uj` counters that wrap at
`max_energy_range_uj`. Power is the counter's slope between two reads."""
from __future__ import annotations

from pathlib import Path

from .meters import Meter, MeterError, Reading, now


class RaplMeter(Meter):
    host_wide = True
    name = "rapl"
    period_s = 0.05  # counters update every ~1 ms, but slopes over shorter spans are noisy
    update_s = 0.05  # a reading is the counter's slope since the last poll: every poll is a new reading
    update_source = "RAPL counters move about every 1 ms; each reading is the slope since the previous poll"
    has_counter = True

    def __init__(self, sysfs_root: str = "/", domains: str = "package"):
        base = Path(sysfs_root) / "sys/class/powercap"
        # top-level zones only (intel-rapl:0, not intel-rapl:0:0) so nothing is counted twice
        zones = sorted(p for p in base.glob("*rapl:*") if p.name.count(":") == 1)
        if domains == "package":
            zones = [z for z in zones if (z / "name").is_file() and (z / "name").read_text().startswith("package")]
        if not zones:
            raise MeterError(f"no RAPL package zones under {base}")
        self.zones = {(z / "name").read_text().strip() + f"@{z.name}": z for z in zones}
        try:
            self.ranges = {n: int((z / "max_energy_range_uj").read_text()) for n, z in self.zones.items()}
            self.last = {n: int((z / "energy_uj").read_text()) for n, z in self.zones.items()}
        except (OSError, ValueError) as e:
            raise MeterError(f"RAPL counters are not readable ({e}); they are root-only on most kernels")
        self.total_uj = {n: 0 for n in self.zones}
        self.last_t = now()

    def _advance(self) -> float:
        """Read every counter, add the wrap-corrected increments; returns the read time."""
        t = now()
        for n, z in self.zones.items():
            value = int((z / "energy_uj").read_text())
            delta = value - self.last[n]
            if delta < 0:  # wrapped
                delta += self.ranges[n]
            self.total_uj[n] += delta
            self.last[n] = value
        return t

    def read(self) -> Reading:
        before = dict(self.total_uj)
        t0 = self.last_t
        t = self._advance()
        dt = max(t - t0, 1e-9)
        rails = {n: (self.total_uj[n] - before[n]) / 1e6 / dt for n in self.zones}
        self.last_t = t
        return Reading(t, sum(rails.values()), rails)

    def counter_j(self) -> float:
        self._advance()
        return sum(self.total_uj.values()) / 1e6

    def describe(self) -> dict:
        return {**super().describe(), "zones": list(self.zones), "total_is": "CPU package(s) only"}
