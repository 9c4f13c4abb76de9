"""Jetson power modes through nvpmodel, by *name* (mode ids differ between SKUs): apply, read back,
refuse a mismatch, restore the previous mode when the run or sweep ends (also on error or Ctrl-C).

Stock modes (MAXN, 15W, 30W, 50W) and the paper's custom modes are both nvpmodel modes: a custom mode
is a POWER_MODEL block in /etc/nvpmodel.conf (`python -m artifact.power.modes --conf-block NAME` prints
one from conf/power/NAME.yaml). Its expected cores and clocks are checked on readback through sysfs.
nvpmodel is always called with an argument list, never through a shell, and only with an integer id
read from nvpmodel.conf."""
from __future__ import annotations

import atexit
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ..core.config import BadInput

MODE_LINE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)\s*>")


class PowerModeError(BadInput):
    pass


def is_jetson(root: Path) -> bool:
    return (root / "etc/nv_tegra_release").is_file()


def modes_in_conf(conf: Path) -> dict[str, int]:
    """{mode name: id} from an nvpmodel.conf."""
    return {m.group(2): int(m.group(1)) for m in MODE_LINE.finditer(conf.read_text())}


def _count_cpus(spec: str) -> int:
    n = 0
    for part in spec.strip().split(","):
        if part:
            a, _, b = part.partition("-")
            n += int(b or a) - int(a) + 1
    return n


class PowerModes:
    """One per process: remembers the mode found at the start and puts it back at the end."""

    def __init__(self, power_cfg):
        self.root = Path(power_cfg.root)
        self.conf = self.root / power_cfg.nvpmodel_conf.lstrip("/")
        self.nvpmodel = power_cfg.nvpmodel
        self.gpu_devfreq_glob = power_cfg.gpu_devfreq_glob
        self.emc_max_rate = power_cfg.emc_max_rate_path
        self.previous: tuple[str, int] | None = None
        self.current: str | None = None

    # ---------------------------------------------------------------- reading
    def _run(self, *args: str) -> str:
        exe = shutil.which(self.nvpmodel)
        if exe is None:
            raise PowerModeError(f"nvpmodel ({self.nvpmodel}) is not on PATH; power modes need a Jetson")
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise PowerModeError(f"nvpmodel {' '.join(args)} failed (exit {out.returncode}): "
                                 f"{(out.stderr or out.stdout).strip().splitlines()[-1:]}")
        return out.stdout

    def query(self) -> tuple[str, int]:
        """(name, id) of the active mode, from `nvpmodel -q`."""
        lines = [ln.strip() for ln in self._run("-q").splitlines() if ln.strip()]
        name = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("NV Power Mode"))
        return name, int(lines[-1])

    def _sysfs(self, rel: str) -> str | None:
        p = self.root / rel
        try:
            return p.read_text().strip()
        except OSError:
            return None

    def readback(self) -> dict:
        """What the hardware says now: mode, online cores, max clocks (None where unreadable)."""
        name, mode_id = self.query()
        online = self._sysfs("sys/devices/system/cpu/online")
        cpu_max = self._sysfs("sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq")
        gpu = sorted(self.root.glob(self.gpu_devfreq_glob))
        gpu_max = (gpu[0] / "max_freq").read_text().strip() if gpu and (gpu[0] / "max_freq").is_file() else None
        emc_max = self._sysfs(self.emc_max_rate)
        return {"mode": name, "mode_id": mode_id, "cpu_cores_online": _count_cpus(online) if online else None,
                "cpu_max_khz": int(cpu_max) if cpu_max else None, "gpu_max_hz": int(gpu_max) if gpu_max else None,
                "emc_max_hz": int(emc_max) if emc_max else None}

    # ---------------------------------------------------------------- planning
    def resolve(self, power_cfg) -> int:
        if not is_jetson(self.root):
            raise PowerModeError(f"power={power_cfg.name} needs a Jetson "
                                 f"({self.root / 'etc/nv_tegra_release'} not found); "
                                 f"use power=none here, or power.dry_run=true to see what would be done")
        if not self.conf.is_file():
            raise PowerModeError(f"{self.conf} not found; nvpmodel modes cannot be looked up by name")
        modes = modes_in_conf(self.conf)
        if power_cfg.nvpmodel_name not in modes:
            raise PowerModeError(f"power mode {power_cfg.nvpmodel_name!r} is not in {self.conf} (modes there: "
                                 f"{', '.join(modes)}); for a custom mode add its POWER_MODEL block (printed by "
                                 f"`python -m artifact.power.modes --conf-block {power_cfg.name}` where "
                                 f"conf/power/{power_cfg.name}.yaml gives its clocks)")
        return modes[power_cfg.nvpmodel_name]

    def plan(self, power_cfg) -> list[str]:
        """The exact commands and checks, for power.dry_run=true."""
        note = []
        try:
            mode_id = str(self.resolve(power_cfg))
        except PowerModeError as e:
            mode_id, note = f"<id of {power_cfg.nvpmodel_name} in {self.conf}>", [f"note: {e}"]
        steps = [f"read the current mode: {self.nvpmodel} -q   (restored when the run or sweep ends)",
                 f"apply: {self.nvpmodel} -m {mode_id}   ({power_cfg.nvpmodel_name})",
                 f"verify: {self.nvpmodel} -q reports {power_cfg.nvpmodel_name}"]
        for key, where in (("cpu_cores_online", "/sys/devices/system/cpu/online"),
                           ("cpu_max_khz", "/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq"),
                           ("gpu_max_hz", f"/{self.gpu_devfreq_glob}/max_freq"),
                           ("emc_max_hz", f"/{self.emc_max_rate}")):
            if power_cfg.expect.get(key) is not None:
                steps.append(f"verify: {where} gives {key} = {power_cfg.expect[key]}")
        return steps + ["restore the mode read in step 1 when the run or sweep ends (also on error or Ctrl-C)"] + note

    # ---------------------------------------------------------------- applying
    def apply(self, power_cfg) -> dict:
        """Switch to the mode (if not already in it), read it back, refuse a mismatch."""
        mode_id = self.resolve(power_cfg)
        if self.previous is None:
            self.previous = self.query()
            _restore_on_exit(self)
        if self.current != power_cfg.name:
            self._run("-m", str(mode_id))
            self.current = power_cfg.name
        state = self.readback()
        problems = [] if state["mode"] == power_cfg.nvpmodel_name else [f"mode is {state['mode']}"]
        unverified = []
        for key, want in power_cfg.expect.items():
            if want is None:
                continue
            if state.get(key) is None:
                unverified.append(key)
            elif state[key] != want:
                problems.append(f"{key} is {state[key]}, expected {want}")
        if problems:
            raise PowerModeError(f"power mode {power_cfg.name} did not take effect: {'; '.join(problems)}")
        return {**state, "name": power_cfg.name, "status": "set and verified", "unverified": unverified,
                "previous_mode": self.previous[0]}

    def restore(self) -> None:
        if self.previous is not None and self.current is not None:
            name, mode_id = self.previous
            self._run("-m", str(mode_id))
            print(f"power mode restored to {name}", file=sys.stderr)
            self.current = None


def _restore_on_exit(modes: PowerModes) -> None:
    """Put the previous mode back at exit, after Ctrl-C, and on SIGTERM."""
    def restore() -> None:
        try:
            modes.restore()
        except (PowerModeError, OSError, subprocess.SubprocessError) as e:
            print(f"warning: could not restore the power mode {modes.previous}: {e}", file=sys.stderr)
    atexit.register(restore)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def conf_block(power_cfg, mode_id: int) -> str:
    """An nvpmodel.conf POWER_MODEL block for a custom mode (AGX Orin 64GB names; check them against
    your L4T release's /etc/nvpmodel.conf before adding it)."""
    e = power_cfg.expect
    if not any(v is not None for v in e.values()):
        raise PowerModeError(f"power={power_cfg.name} defines no clocks (clocks: {power_cfg.clocks}): its "
                             f"{power_cfg.nvpmodel_name} block cannot be written from what is known; write it from "
                             f"the paper's table and add the clocks under expect in conf/power/{power_cfg.name}.yaml")
    lines = [f"< POWER_MODEL ID={mode_id} NAME={power_cfg.nvpmodel_name} >"]
    cores = e.get("cpu_cores_online")
    if cores is not None:
        lines += [f"CPU_ONLINE CORE_{i} {1 if i < cores else 0}" for i in range(12)]
    if e.get("cpu_max_khz") is not None:
        lines += [f"CPU_A78_{c} MAX_FREQ {e['cpu_max_khz']}" for c in range(3)]
    if e.get("gpu_max_hz") is not None:
        lines += ["GPU_POWER_CONTROL_ENABLE GPU_PWR_CNTL_EN on", f"GPU MAX_FREQ {e['gpu_max_hz']}",
                  "GPU_POWER_CONTROL_DISABLE GPU_PWR_CNTL_DIS auto"]
    if e.get("emc_max_hz") is not None:
        lines.append(f"EMC MAX_FREQ {e['emc_max_hz']}")
    return "\n".join(lines)


def main() -> None:
    import argparse

    from ..core.config import load_group
    ap = argparse.ArgumentParser(description="Print an nvpmodel.conf block for a custom power mode.")
    ap.add_argument("--conf-block", required=True, metavar="NAME", help="a conf/power/NAME.yaml")
    ap.add_argument("--id", type=int, default=100, help="a mode id not used in your nvpmodel.conf")
    a = ap.parse_args()
    try:
        print(conf_block(load_group("power", a.conf_block), a.id))
    except PowerModeError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
