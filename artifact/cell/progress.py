"""Progress over a sweep: cell i/N, elapsed, ETA before each cell, and on a terminal a status line with
the live power while a cell is measured. When stdout is not a terminal (CI, DVC logs, pipes) only the
per-cell lines are printed, no carriage returns."""
from __future__ import annotations

import sys
import threading
import time


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class SweepProgress:
    """One per process: Hydra runs the cells of a sweep one after another in the same process."""

    def __init__(self, total: int):
        self.total = max(1, total)
        self.started = time.monotonic()
        self.measured: list[float] = []  # durations of the cells measured so far (skipped ones are ~0)

    def header(self, index: int, name: str) -> str:
        elapsed = time.monotonic() - self.started
        eta = ""
        if self.measured:
            left = self.total - index
            eta = f", ETA <= {_clock(left * sum(self.measured) / len(self.measured))}"
        return f"[cell {index + 1}/{self.total}, {_clock(elapsed)} elapsed{eta}] {name}"

    def header_elapsed(self) -> str:
        return f"{_clock(time.monotonic() - self.started)} elapsed"

    def cell_done(self, seconds: float, measured: bool) -> None:
        if measured:
            self.measured.append(seconds)


class LiveLine:
    """While a cell is measured: `  measuring 12 s | 23.4 W` rewritten once a second (terminals only)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.enabled = self.stream.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sampler = None

    def start(self) -> "LiveLine":
        if self.enabled:
            self._t0 = time.monotonic()
            self._thread = threading.Thread(target=self._loop, name="live-line", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            line = f"  measuring {time.monotonic() - self._t0:.0f} s"
            samples = self.sampler.samples if self.sampler is not None else []
            if samples:
                line += f" | {samples[-1].total_w:.1f} W"
            self.stream.write(f"\r{line:<48}")
            self.stream.flush()

    def stop(self) -> None:
        if self._thread:
            self._stop.set()
            self._thread.join()
            self.stream.write("\r" + " " * 48 + "\r")
            self.stream.flush()
