"""Jetson power through jetson-stats' jtop client (optional extra, AGPL-3.0; needs jtop.service).

jtop reports each rail's instantaneous power and a running "avg" smoother; we use the instantaneous
value. Below 0.5 s intervals jtop is unstable, so its period is at least that."""
from __future__ import annotations

from .meters import Meter, MeterError, Reading, now


class JtopMeter(Meter):
    host_wide = True
    name = "jtop"

    def __init__(self, interval_s: float = 0.5):
        try:
            from jtop import JtopException, jtop
        except ImportError as e:
            raise MeterError(f"meter=jtop needs jetson-stats: pip install -e '.[jetson]' ({e})")
        self.period_s = max(0.5, interval_s)
        try:
            self.client = jtop(interval=self.period_s)
            self.client.start()
        except JtopException as e:
            raise MeterError(f"jtop cannot connect: {e} (is jtop.service running? `sudo systemctl start jtop`)")
        if not self.client.ok():
            raise MeterError("jtop connected but delivers no data (is jtop.service running?)")

    def read(self) -> Reading:
        power = self.client.power
        t = now()
        rails = {name: v["power"] / 1e3 for name, v in power.get("rail", {}).items() if v.get("online", True)}
        return Reading(t, power["tot"]["power"] / 1e3, rails)

    def describe(self) -> dict:
        return {**super().describe(), "total_is": "jtop 'tot' (module power as jetson-stats sums it)"}

    def close(self) -> None:
        self.client.close()
        super().close()
