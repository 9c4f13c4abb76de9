"""Power and energy: meters (one module per sensor), the sampler, energy of windows, the record's power
section, and Jetson power modes (artifact.power.modes, imported where used: it is also a command).
Per-process state (open meters, idle power, the mode to restore) is kept by artifact.cell.session."""
from .choose import make_meter
from .energy import CoverageError, check_coverage, window
from .meters import Meter, MeterError, NoMeter
from .sampler import Sampler
from .summary import idle_power, summarize

__all__ = ["CoverageError", "Meter", "MeterError", "NoMeter", "Sampler", "check_coverage",
           "idle_power", "make_meter", "summarize", "window"]
