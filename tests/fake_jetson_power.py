"""FAKE Jetson power sensors, said plainly: stand-ins for boards this machine does not have, built from public
evidence (../shared/JETSON.md; the Linux ina3221 hwmon driver and its documentation; jetson-stats' jtop/jtop.py and
jtop/core/power.py), not from what our meters assume.

- `make_board(root, board)`: the INA3221 hwmon sysfs of a board under JetPack 6.2 as the kernel lays it out:
  /sys/bus/i2c/devices/<bus-addr>/ (name "ina3221", hwmon/hwmonN/) with /sys/bus/i2c/drivers/ina3221/<bus-addr> a link
  to it; hwmonN numbers that are not 0, 1, ... in chip order (they change between boots); per channel inK_label,
  inK_input (bus mV), currK_input (mA), inK_enable, the shunt voltages in4-6_input and the sum channel in7_input and
  curr4_input; per chip `samples` 512 and `update_interval` 430 (ms), as NVIDIA's boot script programs them. AGX Orin
  64GB: 1-0040 (VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0) and 1-0041 (NC, VDDQ_VDD2_1V8AO, NC). Orin NX 16GB: 1-0040
  (VDD_IN, VDD_CPU_GPU_CV, VDD_SOC).
- the writer (`python tests/fake_jetson_power.py write ROOT BOARD SECONDS`, or `start_writer`): the chip's
  averaging, as the real one behaves: every update_interval it writes each rail's current averaged over the last
  interval, so values change only once per 430 ms. The load is a known function of time (LOADS: a base plus slow
  sines; on the AGX Orin VDDQ_VDD2_1V8AO is a part of VIN_SYS_5V0, on the Orin NX VDD_IN is the sum of its parts plus
  the rest of the module), so `true_energy` gives the exact integral a meter should find. The power values are
  plausible, not a board's measurements.
- `install_fake_jtop(site, root)`: a `jtop` package with the client's shape: jtop(interval).start/ok/power/interval/
  close and `with jtop() as jetson`, JtopException, __version__. Its "service" reads the same fake sysfs every
  interval, as jtop.service does: rail power = int(mV * mA / 1000) mW, `avg` the running halving, NC channels and
  in7 skipped, and `tot` VDD_IN (moved out of the rails) where the board has it, else the plain sum of the rails.
  start() refuses a service of another major.minor with jtop's own message (FAKE_JTOP_SERVICE_VERSION), or a stopped
  service (FAKE_JTOP_SERVICE=down)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

SAMPLES, UPDATE_INTERVAL_MS = 512, 430
SHUNT_MOHM = 5
# board -> chip -> (hwmonN, channel labels in order)
BOARDS = {
    "agx-orin-64gb": {"1-0040": ("hwmon3", ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]),
                      "1-0041": ("hwmon1", ["NC", "VDDQ_VDD2_1V8AO", "NC"])},
    "orin-nx-16gb": {"1-0040": ("hwmon2", ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"])},
}
# rail -> (bus mV, base mA, [(amplitude mA, period s, phase)]): current = base + sum of amp sin(2 pi t / period + ph)
_GPU = [(800, 3.0, 0.0)]
_CPU = [(200, 2.2, 1.0)]
_DDR = [(60, 1.7, 2.0)]
LOADS = {
    "agx-orin-64gb": {"VDD_GPU_SOC": (5000, 2000, _GPU), "VDD_CPU_CV": (5000, 600, _CPU),
                      "VIN_SYS_5V0": (5000, 900, [(100, 4.1, 0.5)] + _DDR), "VDDQ_VDD2_1V8AO": (5000, 300, _DDR)},
    "orin-nx-16gb": {"VDD_CPU_GPU_CV": (5000, 1200, _GPU), "VDD_SOC": (5000, 600, _CPU),
                     "VDD_IN": (5000, 1200 + 600 + 700, _GPU + _CPU)},
}
# what the module's power is, per NVIDIA's rail meanings (conf/jetson_modules.yaml must agree; a test checks)
MODULE_RAILS = {"agx-orin-64gb": ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"], "orin-nx-16gb": ["VDD_IN"]}


def current_ma(board: str, rail: str, t: float) -> float:
    _, base, terms = LOADS[board][rail]
    return base + sum(a * math.sin(2 * math.pi * t / p + ph) for a, p, ph in terms)


def charge_mas(board: str, rail: str, t0: float, t1: float) -> float:
    """The integral of the rail's current over [t0, t1], mA s (exact)."""
    _, base, terms = LOADS[board][rail]
    return base * (t1 - t0) + sum(
        a * p / (2 * math.pi) * (math.cos(2 * math.pi * t0 / p + ph) - math.cos(2 * math.pi * t1 / p + ph))
        for a, p, ph in terms)


def true_energy(board: str, rails: list[str], t0: float, t1: float) -> float:
    """The exact energy in joules of these rails over [t0, t1] (times on time.perf_counter's clock)."""
    return sum(LOADS[board][r][0] / 1e3 * charge_mas(board, r, t0, t1) / 1e3 for r in rails)


def _write(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)  # a reader sees the old or the new value, never half of one


def _hwmon_dirs(root: Path, board: str) -> dict[str, Path]:
    return {chip: root / f"sys/bus/i2c/devices/{chip}/hwmon/{hwmon}" for chip, (hwmon, _) in BOARDS[board].items()}


def write_averages(root: Path, board: str, t: float) -> None:
    """One conversion cycle's results: every connected channel's current averaged over the interval ending at t."""
    interval = UPDATE_INTERVAL_MS / 1e3
    for chip, hw in _hwmon_dirs(root, board).items():
        for n, label in enumerate(BOARDS[board][chip][1], start=1):
            if label == "NC":
                continue
            ma = round(charge_mas(board, label, t - interval, t) / interval)
            _write(hw / f"curr{n}_input", ma)
            _write(hw / f"in{n + 3}_input", round(ma * SHUNT_MOHM / 1000))  # shunt voltage, mV


def make_board(root: Path, board: str = "agx-orin-64gb") -> Path:
    """The board's INA3221 sysfs under root (see the module docstring), holding the averages of the last interval."""
    for chip, (hwmon, labels) in BOARDS[board].items():
        dev = root / f"sys/bus/i2c/devices/{chip}"
        hw = dev / "hwmon" / hwmon
        hw.mkdir(parents=True)
        (dev / "name").write_text("ina3221\n")
        (hw / "name").write_text("ina3221\n")
        (hw / "samples").write_text(f"{SAMPLES}\n")
        (hw / "update_interval").write_text(f"{UPDATE_INTERVAL_MS}\n")
        for n, label in enumerate(labels, start=1):
            (hw / f"in{n}_label").write_text(label + "\n")
            (hw / f"in{n}_enable").write_text("0\n" if label == "NC" else "1\n")
            mv = 0 if label == "NC" else LOADS[board][label][0]
            (hw / f"in{n}_input").write_text(f"{mv}\n")
            (hw / f"curr{n}_input").write_text("0\n")
            (hw / f"in{n + 3}_input").write_text("0\n")
            (hw / f"shunt{n}_resistor").write_text(f"{SHUNT_MOHM * 1000}\n")  # micro-ohm
        (hw / "in7_input").write_text("0\n")    # sum of the shunt voltages: no label, not a rail
        (hw / "curr4_input").write_text("0\n")  # sum of the currents: not a rail
        drivers = root / "sys/bus/i2c/drivers/ina3221"
        drivers.mkdir(parents=True, exist_ok=True)
        (drivers / chip).symlink_to(Path("../../devices") / chip)
    write_averages(root, board, time.perf_counter())
    return root


def write_loop(root: Path, board: str, seconds: float) -> None:
    """Update every channel once per update_interval for `seconds`, as the chips in continuous averaging mode do."""
    interval = UPDATE_INTERVAL_MS / 1e3
    end = time.perf_counter() + seconds
    tick = time.perf_counter()
    while tick < end:
        tick += interval
        time.sleep(max(0.0, tick - time.perf_counter()))
        write_averages(root, board, tick)


def start_writer(root: Path, board: str, seconds: float = 300) -> subprocess.Popen:
    """The writer in its own process (kill it when done). time.perf_counter is CLOCK_MONOTONIC, shared by processes."""
    return subprocess.Popen([sys.executable, __file__, "write", str(root), board, str(seconds)])


FAKE_JTOP = '''"""FAKE jetson-stats client for tests (tests/fake_jetson_power.py says what it copies)."""
import os, threading, time
from pathlib import Path

__version__ = os.environ.get("FAKE_JTOP_CLIENT_VERSION", "4.3.2")
ROOT = Path({root!r})


class JtopException(Exception):
    pass


def _rails():
    rails = {{}}
    for dev in sorted((ROOT / "sys/bus/i2c/devices").iterdir()):
        if not (dev / "name").is_file() or "ina3221" not in (dev / "name").read_text():
            continue
        for hw in (dev / "hwmon").iterdir():
            for label in hw.glob("in*_label"):
                name, n = label.read_text().strip(), int(label.name.split("_")[0][2:])
                if "NC" in name or n == 7:
                    continue
                volt, curr = int((hw / f"in{{n}}_input").read_text()), int((hw / f"curr{{n}}_input").read_text())
                rails[name] = {{"online": True, "volt": volt, "curr": curr, "power": int(volt * (float(curr) / 1000))}}
    return dict(sorted(rails.items()))


class jtop:
    def __init__(self, interval=1.0):
        self._interval = interval
        self._avg, self._power, self._stop = {{}}, None, threading.Event()

    def start(self):
        if os.environ.get("FAKE_JTOP_SERVICE") == "down":
            raise JtopException("The jtop.service is not active. Please run:\\nsudo systemctl restart jtop.service")
        service = os.environ.get("FAKE_JTOP_SERVICE_VERSION", __version__)
        if service.split(".")[:2] != __version__.split(".")[:2]:
            raise JtopException("Mismatch version jtop service: [%s] and client: [%s]. Please run:\\n\\n"
                                "sudo systemctl restart jtop.service" % (service, __version__))
        self._tick()
        threading.Thread(target=self._serve, daemon=True).start()

    def _tick(self):
        rails = _rails()
        for name, v in rails.items():  # jtop's running "avg": a halving, not a mean
            v["avg"] = (v["power"] + self._avg[name]) // 2 if name in self._avg else v["power"]
            self._avg[name] = v["avg"]
        total_name = next((n for n in ("POM_5V_IN", "VDD_IN") if n in rails), "")
        if total_name:
            tot = dict(rails.pop(total_name), name=total_name)
        else:
            tot = {{"power": sum(v["power"] for v in rails.values()), "avg": sum(v["avg"] for v in rails.values())}}
        self._power = {{"rail": rails, "tot": tot}}

    def _serve(self):
        while not self._stop.wait(self.interval):
            self._tick()

    @property
    def interval(self):
        return float(os.environ.get("FAKE_JTOP_INTERVAL", self._interval))

    def ok(self):
        return self._power is not None

    @property
    def power(self):
        return self._power

    def close(self):
        self._stop.set()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False
'''


def install_fake_jtop(site: Path, root: Path) -> None:
    """The FAKE jtop package in `site` (put it on sys.path), its service reading the fake sysfs under `root`."""
    (site / "jtop").mkdir(parents=True)
    (site / "jtop" / "__init__.py").write_text(FAKE_JTOP.format(root=str(root)))


if __name__ == "__main__" and sys.argv[1] == "write":
    write_loop(Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
