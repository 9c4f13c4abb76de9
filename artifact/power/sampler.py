"""Background sampling of a meter at a fixed rate, with phase marks and energy-counter reads at window
edges. The sampler only reads the sensor: it never touches the device being measured."""
from __future__ import annotations

import threading

from .meters import Meter, Reading, now


class Sampler:
    def __init__(self, meter: Meter, rate_hz: float):
        self.meter = meter
        self.period_s = max(1.0 / rate_hz, meter.period_s)  # no faster than the sensor updates
        self.samples: list[Reading] = []
        self.marks: list[tuple[str, float]] = []
        self.counters: dict[str, tuple[float, float]] = {}  # mark -> (t, joules)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Sampler":
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        due = now()
        while not self._stop.is_set():
            try:
                self.samples.append(self.meter.read())
            except Exception as e:  # recorded; the coverage check decides whether the window is valid
                if len(self.errors) < 20:
                    self.errors.append(f"{type(e).__name__}: {e}")
            due += self.period_s
            self._stop.wait(max(0.0, due - now()))

    def mark(self, name: str, t: float) -> None:
        self.marks.append((name, t))
        if name in ("timed_start", "end"):  # outside the timed repetitions: waiting for a tick is free
            edge = self.meter.counter_edge()
            if edge is not None:
                self.counters[name] = edge

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def achieved_rate_hz(self) -> float | None:
        if len(self.samples) < 2:
            return None
        return (len(self.samples) - 1) / (self.samples[-1].t - self.samples[0].t)

    def trace_rows(self) -> list[dict]:
        """power.csv: time, total, every rail and, on a Jetson, jtop's `tot` figure (jtop_tot_w)."""
        rails = sorted({r for s in self.samples for r in s.rails})
        jtop = any(s.jtop_tot_w is not None for s in self.samples)
        return [{"t": f"{s.t:.6f}", "total_w": f"{s.total_w:.4f}",
                 **{f"{r}_w": f"{s.rails.get(r, float('nan')):.4f}" for r in rails},
                 **({"jtop_tot_w": f"{s.jtop_tot_w:.4f}"} if jtop else {})} for s in self.samples]

    def mark_rows(self) -> list[dict]:
        return [{"phase": name, "t": f"{t:.6f}"} for name, t in self.marks]
