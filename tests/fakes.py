"""FAKES, said plainly: stand-ins for Jetson hardware this machine does not have. Each copies the real
interface (file names, units, command-line behaviour) of what it replaces:
- the Jetson power sensors (INA3221 hwmon trees of an AGX Orin and an Orin NX, their averaging, jtop): in
  tests/fake_jetson_power.py;
- the older iio layout of INA3221 rails (JetPack 4: rail_name_N, in_powerN_input mW);
- a powercap RAPL zone whose energy_uj counter wraps at max_energy_range_uj;
- an `nvpmodel` executable on PATH that reads modes from an nvpmodel.conf fixture, answers -q like the
  real one ("NV Power Mode: NAME" then the id), records every call, and sets the online CPU cores;
- a cell that ends its process with no Python exception, as bitsandbytes' LLM.int8 did on an H100;
- a host that drifts: from its N-th generation on, every generation is slower (a sleep after generate);
- a Jetson's root filesystem: /etc/nv_tegra_release as L4T writes it and NVIDIA's torch wheel as pip leaves it
  (a dist-info folder in the board's system site-packages), for artifact.platform's plan;
- a bitsandbytes as PyPI's aarch64 wheel behaves on a Jetson Orin (issue #1930): it imports and loads its library,
  and its first 8-bit kernel fails with "Error named symbol not found at line 233 in file /src/csrc/ops.cu", raised
  as a RuntimeError or, as its C error check can, printed before the process exits with status 1."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def make_iio_tree(root: Path, rails: dict[str, float]) -> None:
    dev = root / "sys/bus/i2c/drivers/ina3221x/0-0040/iio:device0"
    dev.mkdir(parents=True)
    for n, (label, mw) in enumerate(rails.items()):
        (dev / f"rail_name_{n}").write_text(label + "\n")
        (dev / f"in_power{n}_input").write_text(f"{mw}\n")


def make_rapl_zone(root: Path, start_uj: int, max_uj: int) -> Path:
    zone = root / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{start_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (root / "sys/class/powercap/intel-rapl:0:0").mkdir()  # a subzone: must not be counted twice
    return zone


NVPMODEL_CONF = """# AGX Orin 64GB (abridged fixture)
< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=MODE_15W >
CPU_ONLINE CORE_4 0
< POWER_MODEL ID=2 NAME=MODE_30W >
CPU_ONLINE CORE_8 0
< POWER_MODEL ID=3 NAME=MODE_50W >
CPU_ONLINE CORE_0 1
< PM_CONFIG DEFAULT=2 >
"""
CORES = {0: 12, 1: 4, 2: 8, 3: 12}

FAKE_NVPMODEL = """#!{python}
# FAKE nvpmodel for tests: same command line and -q output as the real one.
import json, re, sys
root = {root!r}
state_path, log_path = root + "/fake_nvpmodel_state.json", root + "/fake_nvpmodel_calls.log"
open(log_path, "a").write(" ".join(sys.argv[1:]) + "\\n")
conf = open(root + "/etc/nvpmodel.conf").read()
modes = {{int(i): n for i, n in re.findall(r"<\\s*POWER_MODEL\\s+ID=(\\d+)\\s+NAME=([^\\s>]+)", conf)}}
state = json.load(open(state_path))
if sys.argv[1:2] == ["-q"]:
    print("NV Power Mode: " + modes[state["id"]])
    print(state["id"])
elif sys.argv[1:2] == ["-m"]:
    new = int(sys.argv[2])
    if new not in modes:
        print("NVPM ERROR: Invalid mode", file=sys.stderr); sys.exit(1)
    if not state.get("ignore_set"):
        state["id"] = new
        cores = {cores}[new]
        open(root + "/sys/devices/system/cpu/online", "w").write("0-%d\\n" % (cores - 1))
    json.dump(state, open(state_path, "w"))
"""


def make_jetson(root: Path, bin_dir: Path, start_id: int = 0, ignore_set: bool = False) -> Path:
    """A fake Jetson under `root` and a fake nvpmodel in `bin_dir` (put it first on PATH)."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 3.0 (FAKE for tests)\n")
    (root / "etc/nvpmodel.conf").write_text(NVPMODEL_CONF)
    (root / "sys/devices/system/cpu").mkdir(parents=True, exist_ok=True)
    (root / "sys/devices/system/cpu/online").write_text(f"0-{CORES[start_id] - 1}\n")
    (root / "fake_nvpmodel_state.json").write_text(json.dumps({"id": start_id, "ignore_set": ignore_set}))
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "nvpmodel"
    exe.write_text(FAKE_NVPMODEL.format(python=sys.executable, root=str(root), cores=CORES))
    exe.chmod(0o755)
    return root / "fake_nvpmodel_calls.log"


class FakeNvml:
    """A FAKE `pynvml` (nvidia-ml-py) module of a host with several GPUs, as NVML sees them: indexed
    physically (ignoring CUDA_VISIBLE_DEVICES), each with a UUID, a name, a PCI address, an instantaneous power
    field, the averaged power, a total-energy counter in mJ and memory info. Install it with
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml({...}))."""

    NVML_SUCCESS = 0
    NVML_FI_DEV_POWER_AVERAGE = 185
    NVML_FI_DEV_POWER_INSTANT = 186

    class NVMLError(Exception):
        pass

    def __init__(self, gpus: dict[str, float]):
        self.gpus = list(gpus.items())          # [(uuid, watts)] in physical order
        self.inits = 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.inits -= 1

    def nvmlDeviceGetHandleByIndex(self, index: int):
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid):
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for index, (known, _) in enumerate(self.gpus):
            if known == uuid:
                return index
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetName(self, handle):
        return f"Fake GPU {handle}"

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        class Value:
            pass
        out = []
        for _ in field_ids:
            v = Value()
            v.nvmlReturn, v.value = self.NVML_SUCCESS, Value()
            v.value.uiVal = int(self.gpus[handle][1] * 1000)
            out.append(v)
        return out

    def nvmlDeviceGetPowerUsage(self, handle):
        return int(self.gpus[handle][1] * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return int(time.perf_counter() * self.gpus[handle][1] * 1000)

    def nvmlDeviceGetPciInfo(self, handle):
        class PciInfo:  # nvmlPciInfo_t: each GPU on its own bus, as on an SXM board
            domain, bus, device = 0, 0x18 + 0x10 * handle, 0
            busId = f"00000000:{0x18 + 0x10 * handle:02X}:00.0"
        return PciInfo()

    def nvmlDeviceGetMemoryInfo(self, handle):
        class Memory:
            used = (handle + 1) * 2**30
        return Memory()


# A cell that kills its process with no Python exception to catch: on an H100, bitsandbytes' LLM.int8 printed
# "Error invalid argument at line 421 in file /src/csrc/ops.cu" and called exit(1) for Mistral-24B int8 at bs 128,
# sl 1024. Loaded as sitecustomize, it makes the timed run of each batch size in $FAKE_CRASH_BATCH (say "2,3") do the
# same.
FAKE_CRASH = """
import os, sys
if os.environ.get("FAKE_CRASH_BATCH"):
    import artifact.cell.measure as measure
    real = measure.run_timed
    def run_timed(model, tokenizer, prompts, *args, **kwargs):
        if str(prompts.shape[0]) in os.environ["FAKE_CRASH_BATCH"].split(","):
            sys.stderr.write("Error invalid argument at line 421 in file /src/csrc/ops.cu\\n")
            sys.stderr.flush()
            os._exit(1)
        return real(model, tokenizer, prompts, *args, **kwargs)
    measure.run_timed = run_timed
"""


def crashing_cell_env(hook_dir: Path, *batch_sizes: int) -> dict[str, str]:
    """The environment that makes every `python -m artifact.run` die in its cells of these batch sizes."""
    hook_dir.mkdir(parents=True, exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(FAKE_CRASH)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH")])),
            "FAKE_CRASH_BATCH": ",".join(map(str, batch_sizes))}


# A host that drifts: from its N-th generation on (timed, warm-up or the canary's), every generation takes STEP longer
# (0.5: 50 %), like the H100 host whose cells all ran 25 % faster after 15:49 (shared/MEASUREMENT.md). A fake, said
# plainly: a sleep in proportion to transformers' own generate, added after it; nothing else changed. Loaded as
# sitecustomize.
FAKE_DRIFT = """
import os, time
if os.environ.get("FAKE_DRIFT_AFTER"):
    from transformers.generation.utils import GenerationMixin
    real, calls = GenerationMixin.generate, []
    after, step = int(os.environ["FAKE_DRIFT_AFTER"]), float(os.environ["FAKE_DRIFT_STEP"])
    def generate(self, *args, **kwargs):
        calls.append(1)
        start = time.perf_counter()
        out = real(self, *args, **kwargs)
        if len(calls) > after:
            time.sleep(step * (time.perf_counter() - start))
        return out
    GenerationMixin.generate = generate
"""


def drifting_host_env(hook_dir: Path, after: int, step: float) -> dict[str, str]:
    """The environment that makes every `python -m artifact.run` slow down by `step` from its generation `after`+1."""
    hook_dir.mkdir(parents=True, exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(FAKE_DRIFT)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH")])),
            "FAKE_DRIFT_AFTER": str(after), "FAKE_DRIFT_STEP": str(step)}


ORIN_BNB_ERROR = "Error named symbol not found at line 233 in file /src/csrc/ops.cu"


def make_orin_bitsandbytes(root: Path, how: str = "raise") -> Path:
    """FAKE bitsandbytes 0.46.1 (aarch64 PyPI wheel) on a Jetson Orin: a package folder to put first on PYTHONPATH.
    how: "raise" (RuntimeError, as issue #1930 reports it) or "exit" (printed, then exit status 1, from C)."""
    pkg = root / "bitsandbytes"
    (pkg / "nn").mkdir(parents=True)
    fail = (f"raise RuntimeError({ORIN_BNB_ERROR!r})" if how == "raise"
            else f"print({ORIN_BNB_ERROR!r}, flush=True); import os; os._exit(1)")
    (pkg / "__init__.py").write_text('__version__ = "0.46.1"\nfrom . import cextension, functional, nn\n')
    (pkg / "cextension.py").write_text(
        "class _Lib:\n    _name = '/usr/local/lib/python3.10/dist-packages/bitsandbytes/libbitsandbytes_cuda126.so'\n"
        "lib = _Lib()\nBNB_BACKEND = 'CUDA'\n")
    (pkg / "functional.py").write_text(f"def quantize_4bit(*a, **k):\n    {fail}\n"
                                       f"def dequantize_4bit(*a, **k):\n    {fail}\n")
    (pkg / "nn" / "__init__.py").write_text(
        "class Linear8bitLt:\n    def __init__(self, *a, **k):\n        pass\n"
        "    def to(self, device):\n        return self\n"
        f"    def __call__(self, x):\n        {fail}\n")
    return root


# /etc/nv_tegra_release first lines as the L4T releases write them (public board reports), by JetPack release
TEGRA_RELEASES = {
    "6.0": "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, "
           "DATE: Mon May  6 17:34:21 UTC 2024",
    "6.2": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
           "DATE: Wed Jan  8 01:49:37 UTC 2025",
}


def make_tegra_root(root: Path, jetpack: str, torch: str | None) -> Path:
    """FAKE Jetson root: etc/nv_tegra_release of that JetPack and, where torch is given, NVIDIA's torch wheel installed
    by root's pip3 (usr/local/lib/python3.10/dist-packages/torch-<version>.dist-info/METADATA)."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/nv_tegra_release").write_text(TEGRA_RELEASES[jetpack] + "\nINSTALL_TYPE=\n")
    if torch:
        info = root / f"usr/local/lib/python3.10/dist-packages/torch-{torch}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {torch}\nSummary: Tensors and "
                                       "Dynamic neural networks in Python with strong GPU acceleration\n")
        (info / "INSTALLER").write_text("pip\n")
    return root
