"""`make setup`'s plan (artifact.platform) against FAKE Jetson roots (tests/fakes.py): JetPack 6.0 with its torch
2.3.0, JetPack 6.2 with NVIDIA's torch 2.5.0a0 and with Jetson AI Lab's 2.8.0, a board with no torch, and hosts that
are not Jetsons. The plan runs as `make setup` runs it: the board's python3 with the standard library only."""
from __future__ import annotations

import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from artifact import platform
from tests.fakes import make_tegra_root


def run_plan(root, *args):
    return subprocess.run([sys.executable, "-m", "artifact.platform", "--plan", "--root", str(root),
                           "--python", "3.10.12", *args], capture_output=True, text=True)


def test_jetpack62_with_nvidia_torch_says_what_to_install(tmp_path):
    out = run_plan(make_tegra_root(tmp_path, "6.2", "2.5.0a0+872d972e41.nv24.08"))
    assert out.returncode == 2
    assert "host: Jetson, L4T R36.4.3 (JetPack 6.2); Python 3.10.12" in out.stdout
    assert "venv: --system-site-packages over the board's Python" in out.stdout
    assert "torch: 2.5.0a0+872d972e41.nv24.08 (" in out.stdout
    assert "stack: jetpack6 (constraints/jetpack6.txt" in out.stdout
    error = out.stderr.strip()
    assert "\n" not in error and error.startswith("error: torch 2.5.0a0+872d972e41.nv24.08 is below 2.6")
    assert f"pip3 install {platform.JP6_TORCH} --index-url {platform.JP6_INDEX}" in error


def test_jetpack62_with_jetson_ai_lab_torch_goes_on(tmp_path):
    out = run_plan(make_tegra_root(tmp_path, "6.2", "2.8.0"))
    assert out.returncode == 0, out.stderr
    assert "torch: 2.8.0 (" in out.stdout and "make bnb-jetson" in out.stdout
    make = subprocess.run([sys.executable, "-m", "artifact.platform", "--make", "--root", str(tmp_path),
                           "--python", "3.10.12"], capture_output=True, text=True).stdout.splitlines()
    assert {"STACK=jetpack6", "VENV_FLAGS=--system-site-packages", "TORCH_SPEC=", "TEGRA=1",
            "TORCH_FOUND=2.8.0"} <= set(make)


def test_jetpack60_torch_230_is_too_old(tmp_path):
    out = run_plan(make_tegra_root(tmp_path, "6.0", "2.3.0"))
    assert out.returncode == 2
    assert "L4T R36.3.0 (JetPack 6.0)" in out.stdout
    error = out.stderr.strip()
    assert "\n" not in error and error.startswith("error: torch 2.3.0 is below 2.6")
    assert "JetPack 6.0 (CUDA 12.2) has no NVIDIA torch >= 2.6" in error and "JetPack 6.2" in error


def test_board_without_torch_says_how_to_get_it(tmp_path):
    out = run_plan(make_tegra_root(tmp_path, "6.2", None))
    assert out.returncode == 2
    assert "torch: none found" in out.stdout
    error = out.stderr.strip()
    assert "\n" not in error and error.startswith("error: no torch is installed in the board's Python 3.10")
    assert platform.JP6_INDEX in error


@pytest.mark.parametrize("python,stack,torch", [("3.11.7", "default", "torch==2.13.0"),
                                                ("3.10.13", "jetpack6", "torch==2.13.0")])
def test_not_a_jetson(tmp_path, python, stack, torch):
    p = platform.plan(tmp_path, python)
    assert (p.tegra, p.stack, p.torch_spec, p.venv_flags, p.todo) == (None, stack, torch, "", [])


def test_torch_floor_as_transformers_compares():
    assert platform.below_floor("2.5.0a0+872d972e41.nv24.08") and platform.below_floor("2.3.0")
    assert platform.below_floor("2.6.0a0+gitabc") and not platform.below_floor("2.6.0")
    assert not platform.below_floor("2.8.0") and not platform.below_floor("2.13.0+cpu")


def test_pypi_bitsandbytes_is_never_asked_for_on_a_jetson():
    """pyproject's marker: a Jetson's kernel release ends in -tegra (uname -r), so pip leaves bitsandbytes to
    make bnb-jetson; on any other host (aarch64 servers too) it installs PyPI's."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    deps = tomllib.load(open(platform.REPO / "pyproject.toml", "rb"))["project"]["dependencies"]
    bnb = next(Requirement(d) for d in deps if d.startswith("bitsandbytes"))
    assert not bnb.marker.evaluate({"platform_release": "5.15.148-tegra"})
    assert bnb.marker.evaluate({"platform_release": "6.8.0-1013-nvidia-64k"})
    assert bnb.marker.evaluate({"platform_release": "6.1.0-28-amd64"})


def test_constraints_never_name_torch():
    for stack in platform.STACKS.values():
        names = [line.split("==")[0].lower() for line in (platform.REPO / stack).read_text().splitlines()
                 if line and not line.startswith("#")]
        assert names and "torch" not in names and not any(n.startswith("nvidia-") for n in names), stack
