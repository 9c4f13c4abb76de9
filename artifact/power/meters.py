"""The meter interface: a sensor hidden behind `read()` (timestamped total and per-rail watts) and,
where the hardware has one, `counter_j()` (a cumulative energy counter in joules)."""
from __future__ import annotations

import fcntl
import os
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import BadInput


class MeterError(BadInput):
    """The requested sensor is not there or not readable: one line, no record."""


@dataclass
class Reading:
    t: float                                   # time.perf_counter() when read
    total_w: float
    rails: dict[str, float] = field(default_factory=dict)
    jtop_tot_w: float | None = None            # Jetson meters: the figure jtop shows as `tot` (artifact.power.boards)


# Polls per sensor update: twice sees every update within half an interval; faster only repeats values.
OVERSAMPLE = 2


class Meter(ABC):
    """Base class. `update_s` is how often the sensor gives a new, independent reading (`update_source` says how
    that is known); `period_s` the shortest sampling period worth using (update_s / OVERSAMPLE); `staleness_s` how far
    back the power behind a reading may lie (an averaging sensor's reading ends up to one update late and averages
    over one more). Window and coverage rules count independent updates, not polls."""

    name = "none"
    update_s = 0.0                              # 0: every poll is a new reading
    update_source = "every poll is a new reading (assumed)"
    period_s = 0.1
    has_counter = False
    host_wide = False   # reads the whole host or board (RAPL, INA3221, jtop): one cell at a time per host
    _host_claim = None

    @abstractmethod
    def read(self) -> Reading:
        """One reading of the sensor, timestamped."""

    def counter_j(self) -> float | None:
        return None

    def counter_edge(self, timeout_s: float = 0.3) -> tuple[float, float] | None:
        """(time, joules) at the moment the energy counter ticks. Counters that update in steps (NVML:
        every 100 ms on an H100) are read when they change, so that the interval between two edges
        is known to the polling precision and the sampled energy can be compared over exactly it."""
        first = self.counter_j()
        if first is None:
            return None
        deadline = now() + timeout_s
        while now() < deadline:
            value = self.counter_j()
            if value != first:
                return now(), value
        return now(), first  # a counter that never ticks: compared as read

    @property
    def staleness_s(self) -> float:
        return 2 * self.update_s

    def describe(self) -> dict:
        return {"meter": self.name, "period_s": self.period_s, "update_s": self.update_s,
                "update_source": self.update_source, "energy_counter": self.has_counter}

    def claim_host(self) -> None:
        """For a host-wide meter: hold this host's meter lock (an flock, freed when the process ends) or raise
        MeterError, since two cells measured at once on one host would each read the other's power."""
        if not self.host_wide or self._host_claim is not None:
            return
        f = open(HOST_LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "another process"
            f.close()
            raise MeterError(f"meter={self.name} reads the whole host and {owner} is measuring with a host-wide "
                             f"meter on it now ({HOST_LOCK}); host-wide meters take one cell at a time per host: "
                             f"use the basic launcher or one worker per host") from None
        f.truncate(0)
        f.write(f"pid {os.getpid()} ({socket.gethostname()})")
        f.flush()
        self._host_claim = f

    def close(self) -> None:
        if self._host_claim is not None:
            self._host_claim.close()
            self._host_claim = None


class NoMeter(Meter):
    """No sensor: nothing is sampled, and every power metric is recorded as absent with the reason."""

    name = "none"

    def __init__(self, reason: str = "meter=none: power and energy were not measured"):
        self.reason = reason

    def read(self) -> Reading:
        raise MeterError(f"no sensor: {self.reason}")


HOST_LOCK = Path(tempfile.gettempdir()) / "edge-llm-artifact-host-meter.lock"


def now() -> float:
    return time.perf_counter()
