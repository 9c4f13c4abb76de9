"""Jetson power through jetson-stats' jtop client (optional extra, AGPL-3.0; needs the root jtop.service).

What jtop is on JetPack 6 (jetson-stats' jtop/jtop.py and jtop/core/power.py):
- the client refuses a service whose major.minor version differs ("Mismatch version jtop service: [A] and client:
  [B]"); we say so in one line naming both;
- `jetson.interval` is the service's own period, which may differ from the one asked;
- `jetson.power` = {'rail': {label: {volt, curr, power (mW), avg, ...}}, 'tot': {...}}: `power` is the instantaneous
  value, `avg` a running halving ((power + avg) // 2), not a mean, so only `power` is used;
- `tot` is VDD_IN where the board has it (and VDD_IN then leaves the rail list), else the plain sum of every rail.
The module total is computed from the rails with the same definition as meter=ina3221 (artifact.power.boards), so
both report the same figure on one board; jtop's own `tot` is kept beside it."""
from __future__ import annotations

import re
from pathlib import Path

from . import boards, ina3221
from .meters import OVERSAMPLE, Meter, MeterError, Reading, now

MISMATCH = re.compile(r"Mismatch version jtop service: \[([^\]]*)\] and client: \[([^\]]*)\]")


def version_error(message: str) -> str | None:
    """One line for jtop's version refusal, naming both versions and the fix; None for other errors."""
    m = MISMATCH.search(message)
    if not m:
        return None
    service, client = m.groups()
    series = ".".join(service.split(".")[:2])
    return (f"meter=jtop: the board's jtop service is jetson-stats {service} and this venv's client is {client}; jtop "
            f"needs both at the same major.minor: pip install 'jetson-stats~={series}.0' in the venv, or upgrade the "
            f"service to {client} (sudo pip3 install 'jetson-stats=={client}' && sudo systemctl restart jtop.service)")


class JtopMeter(Meter):
    host_wide = True
    name = "jtop"

    def __init__(self, interval_s: float = 0.5, sysfs_root: str = "/", total_rails: list[str] | None = None):
        try:
            import jtop as jtop_module
            from jtop import JtopException, jtop
        except ImportError as e:
            raise MeterError(f"meter=jtop needs jetson-stats: pip install -e '.[jetson]' ({e})")
        self.client_version = getattr(jtop_module, "__version__", "unknown")
        try:
            self.client = jtop(interval=max(0.5, interval_s))  # jtop is unstable below 0.5 s
            self.client.start()
        except JtopException as e:
            raise MeterError(version_error(str(e)) or
                             f"jtop cannot connect: {' '.join(str(e).split())} (is jtop.service running? "
                             f"`sudo systemctl start jtop.service`)")
        if not self.client.ok():
            raise MeterError("jtop connected but delivers no data (is jtop.service running?)")
        self.interval_s = float(self.client.interval)
        sensor_s, sensor_source = ina3221.update_interval(ina3221.find_channels(Path(sysfs_root))[1])
        self.sensor_s = sensor_s
        self.update_s = max(self.interval_s, sensor_s)
        self.update_source = (f"jtop service interval {self.interval_s} s and INA3221 update {sensor_s} s "
                              f"({sensor_source}): the slower")
        self.period_s = self.update_s / OVERSAMPLE
        self.total = boards.module_total(list(self._rails(self.client.power)), total_rails)

    @property
    def staleness_s(self) -> float:
        return self.interval_s + 2 * self.sensor_s

    @staticmethod
    def _rails(power: dict) -> dict[str, float]:
        """Instantaneous watts per rail, VDD_IN included where jtop moved it into `tot`."""
        rails = {name: v["power"] / 1e3 for name, v in power.get("rail", {}).items() if v.get("online", True)}
        tot = power.get("tot", {})
        if tot.get("name"):
            rails[tot["name"]] = tot["power"] / 1e3
        return rails

    def read(self) -> Reading:
        power = self.client.power
        t = now()
        rails = self._rails(power)
        return Reading(t, sum(rails[r] for r in self.total["rails"]), rails, power["tot"]["power"] / 1e3)

    def describe(self) -> dict:
        return {**super().describe(), "jtop_client": self.client_version, "jtop_interval_s": self.interval_s,
                "total_rails": self.total["rails"], "module": self.total["module"], "total_is": self.total["is"],
                "jtop_tot_is": "jtop's own `tot`, as read"}

    def close(self) -> None:
        self.client.close()
        super().close()
