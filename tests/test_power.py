"""Meters, sampler, energy and power modes, against FAKE Jetson hardware (tests/fakes.py says what each
fake copies) and analytic power curves."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from artifact.config import load_group
from artifact.power import Sampler, idle_power, summarize
from artifact.power.energy import CoverageError, check_coverage, integrate, window
from artifact.power.ina3221 import Ina3221Meter
from artifact.power.meters import Meter, MeterError, Reading, make_meter
from artifact.power.modes import PowerModeError, PowerModes
from artifact.power.rapl import RaplMeter
from conftest import FAST
from fakes import (
    AGX_ORIN_RAILS,
    WRITER_SCRIPT,
    HwmonWriter,
    install_fake_jtop,
    make_hwmon_tree,
    make_iio_tree,
    make_jetson,
    make_rapl_zone,
)

ORIN_TOTAL = list(AGX_ORIN_RAILS)


class RampMeter(Meter):
    """An analytic sensor: power base_w + slope_w_s x t, read `bias` times too high (1.0: exact), with an exact
    energy counter (the integral, unbiased); rails=True splits it into a constant rail a and a ramp b."""
    name, period_s, has_counter = "ramp", 0.01, True

    def __init__(self, base_w: float, slope_w_s: float, bias: float = 1.0, rails: bool = False):
        self.base_w, self.slope_w_s, self.bias, self.rails = base_w, slope_w_s, bias, rails
        self.t0 = time.perf_counter()

    def read(self):
        t = time.perf_counter()
        w = self.base_w + self.slope_w_s * (t - self.t0)
        split = {"a": 0.6 * self.base_w, "b": w - 0.6 * self.base_w} if self.rails else {}
        return Reading(t, self.bias * w, split)

    def counter_j(self):
        d = time.perf_counter() - self.t0
        return self.base_w * d + self.slope_w_s / 2 * d * d

    def describe(self):
        return {"meter": "ramp"}


# ------------------------------------------------------------------ energy, analytically

def test_constant_power_integrates_exactly():
    ts = [i * 0.1 for i in range(101)]
    assert integrate(ts, [50.0] * 101, 1.0, 9.0) == pytest.approx(400.0)


def test_ramp_power_integrates_exactly_between_samples():
    ts = [i * 0.1 for i in range(101)]
    ws = [10 + 2 * t for t in ts]  # trapezoids are exact on a line, also with window edges between samples
    assert integrate(ts, ws, 1.05, 8.95) == pytest.approx(10 * 7.9 + (8.95 ** 2 - 1.05 ** 2), rel=1e-12)


def test_coverage_failures_are_reported():
    ts = [0.0, 0.1, 0.2]
    with pytest.raises(CoverageError, match="3 power samples .* need >= 5"):
        check_coverage(ts, [1, 2, 3], 0, 0.2, 0.1, min_samples=5, max_gap_periods=5, stale_s=None)
    ts = [i * 0.1 for i in range(10)] + [3.0 + i * 0.1 for i in range(10)]
    with pytest.raises(CoverageError, match="gap"):
        check_coverage(ts, list(range(20)), 0, 3.9, 0.1, min_samples=5, max_gap_periods=5, stale_s=None)
    ts = [i * 0.1 for i in range(100)]
    with pytest.raises(CoverageError, match="stale"):
        check_coverage(ts, [7.5] * 100, 0, 9.9, 0.1, min_samples=5, max_gap_periods=5, stale_s=5)


def test_summary_of_a_window_with_counter_and_idle():
    mcfg = load_group("meter", "none")
    s = Sampler(RampMeter(100, 10, rails=True), 100).start()
    time.sleep(0.05)
    s.mark("timed_start", time.perf_counter())
    reps = []
    for _ in range(3):
        a = time.perf_counter()
        time.sleep(0.1)
        b = time.perf_counter()
        time.sleep(0.3)
        c = time.perf_counter()
        reps.append({"t_start": a, "t_first_token": b, "t_end": c})
    s.mark("end", time.perf_counter())
    time.sleep(0.05)
    s.stop()
    idle = {"status": "ok", "power_w": {"median": 50.0}}
    out = summarize(s, reps, idle, mcfg, {"batch_size": 2, "in_len": 4, "out_len": 4, "generated_per_rep": 8})
    assert out["status"] == "ok", out
    e = out["energy"]
    dur = reps[-1]["t_end"] - reps[0]["t_start"]
    assert e["timed_j"] == pytest.approx(out["timed"]["power_w"]["mean"] * dur, rel=0.02)
    assert e["prefill_j"] + e["decode_j"] == pytest.approx(sum(e["per_rep_j"]), rel=1e-6)
    a, b = s.samples[10].t + 1e-4, s.samples[11].t - 1e-4  # strictly between two samples: none inside
    short = window(s.samples, a, b)
    between = (s.samples[10].total_w + s.samples[11].total_w) / 2
    assert short["power_w"] is None and short["energy_j"] == pytest.approx((b - a) * between, rel=1e-3)
    assert e["net_j"] == pytest.approx(e["timed_j"] - 50 * dur)
    assert e["per_token_j"] == pytest.approx(e["timed_j"] / (3 * 16))
    assert abs(e["sampled_vs_counter_rel"]) < 0.02 and e["counter_interval_s"] >= dur
    assert out["timed"]["rails"]["a"]["median_w"] == 60.0
    assert sum(r["energy_j"] for r in out["timed"]["rails"].values()) == pytest.approx(e["sampled_timed_j"], rel=1e-9)
    # the counter is the number; the samples apportion it to the window
    assert e["source"] == "counter"
    scale = e["counter_j"] / e["sampled_over_counter_interval_j"]
    assert e["timed_j"] == pytest.approx(e["sampled_timed_j"] * scale, rel=1e-12)


def test_energy_follows_the_counter_when_the_samples_are_biased():
    """A sensor whose instantaneous readings run 8 % high (as a power field can against the energy counter):
    the cell's energy is the counter's, within 1 %; the trapezoid's 8 % stays in the record as the check."""
    meter_cfg = load_group("meter", "none")
    s = Sampler(RampMeter(200, 20, bias=1.08), 100).start()
    time.sleep(0.05)
    s.mark("timed_start", time.perf_counter())
    a = time.perf_counter()
    time.sleep(0.6)
    b = time.perf_counter()
    s.mark("end", time.perf_counter())
    time.sleep(0.05)
    s.stop()
    out = summarize(s, [{"t_start": a, "t_first_token": a + 0.1, "t_end": b}], {"status": "not measured"},
                    meter_cfg, {"batch_size": 1, "in_len": 1, "out_len": 1, "generated_per_rep": 1})
    e = out["energy"]
    def exact(t: float) -> float:
        return 200 * (t - s.meter.t0) + 10 * (t - s.meter.t0) ** 2

    truth = exact(b) - exact(a)
    assert e["source"] == "counter" and e["sampled_vs_counter_rel"] == pytest.approx(0.08, abs=0.01)
    assert e["timed_j"] == pytest.approx(truth, rel=0.01)
    assert e["sampled_timed_j"] == pytest.approx(1.08 * truth, rel=0.01)


# ------------------------------------------------------------------ meters on fakes

def test_ina3221_reads_rails_and_sums_the_module_total(tmp_path):
    chans = make_hwmon_tree(tmp_path)
    meter = Ina3221Meter(str(tmp_path), ORIN_TOTAL)
    r = meter.read()
    assert r.rails == {k: mv * ma / 1e6 for k, (mv, ma) in AGX_ORIN_RAILS.items()}
    assert r.total_w == pytest.approx(10 + 4 + 4.5 + 1.5)
    writer = HwmonWriter(chans["VDD_GPU_SOC"], 2000, 4000)  # +20 W/s on the GPU rail
    writer.start()
    s = Sampler(meter, 100).start()
    deadline = time.monotonic() + 10  # generous: a loaded CI machine may starve either thread for a while
    while time.monotonic() < deadline:
        time.sleep(0.1)
        gpu = [x.rails["VDD_GPU_SOC"] for x in s.samples]
        if len(gpu) >= 3 and gpu[-1] > gpu[0] + 5:
            break
    s.stop()
    writer.stop()
    assert len(gpu) >= 3 and gpu[-1] > gpu[0] + 5  # the sampler sees the changing rail


def test_ina3221_missing_rail_and_no_tree(tmp_path):
    with pytest.raises(MeterError, match="no INA3221 rails"):
        Ina3221Meter(str(tmp_path), ORIN_TOTAL)
    make_hwmon_tree(tmp_path)
    with pytest.raises(MeterError, match="VDD_SOC_MISSING, not found"):
        Ina3221Meter(str(tmp_path), ["VDD_GPU_SOC", "VDD_SOC_MISSING"])


def test_ina3221_old_iio_layout(tmp_path):
    make_iio_tree(tmp_path, {"GPU": 3000, "CPU": 1500})
    r = Ina3221Meter(str(tmp_path), []).read()
    assert r.rails == {"GPU": 3.0, "CPU": 1.5} and r.total_w == 4.5


def test_rapl_counter_wraps(tmp_path):
    zone = make_rapl_zone(tmp_path, start_uj=999_000_000, max_uj=1_000_000_000)
    meter = RaplMeter(str(tmp_path))
    assert list(meter.zones) == ["package-0@intel-rapl:0"]
    c0 = meter.counter_j()
    (zone / "energy_uj").write_text("999_500_000".replace("_", ""))
    assert meter.counter_j() - c0 == pytest.approx(0.5)
    (zone / "energy_uj").write_text("2000000\n")  # wrapped past max_energy_range_uj
    assert meter.counter_j() - c0 == pytest.approx(0.5 + 0.5 + 2.0)


def test_rapl_unreadable_is_a_clear_error(tmp_path):
    zone = make_rapl_zone(tmp_path, 0, 10)
    (zone / "energy_uj").unlink()
    with pytest.raises(MeterError, match="not readable"):
        RaplMeter(str(tmp_path))


def test_auto_detection_order_and_fallback(tmp_path):
    mcfg = load_group("meter", "auto")
    mcfg.sysfs_root = str(tmp_path)
    none = make_meter(mcfg, "cpu")
    assert none.name == "none" and "ina3221: no INA3221 rails" in none.reason
    assert "nvml: device is not CUDA" in none.reason
    make_rapl_zone(tmp_path, 0, 10**9)
    assert make_meter(mcfg, "cpu").name == "rapl"
    make_hwmon_tree(tmp_path)
    assert make_meter(mcfg, "cpu").name == "ina3221"  # first in the order


def test_jtop_through_a_fake_client(tmp_path, monkeypatch):
    install_fake_jtop(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from artifact.power.jtop_meter import JtopMeter
    meter = JtopMeter(0.1)
    assert meter.period_s == 0.5  # never below 0.5 s
    r = meter.read()
    assert set(r.rails) == {"VDD_GPU_SOC", "VDD_CPU_CV"} and 7.0 <= r.total_w <= 8.0
    monkeypatch.setenv("FAKE_JTOP_SERVICE", "down")
    with pytest.raises(MeterError, match="jtop.service"):
        JtopMeter(0.5)


def test_idle_window_and_invalid_coverage(tmp_path):
    make_hwmon_tree(tmp_path)
    mcfg = load_group("meter", "ina3221")
    mcfg.sysfs_root, mcfg.idle_seconds = str(tmp_path), 1.0
    meter = make_meter(mcfg, "cpu")
    measured: dict = {}  # the session's idle cache
    idle = idle_power(meter, mcfg, "fake-mode", measured=measured)
    assert idle["status"] == "ok" and idle["power_w"]["median"] == pytest.approx(20.0)
    assert idle["measured_in"] == "this cell"
    assert idle_power(meter, mcfg, "fake-mode", measured=measured)["measured_in"].startswith("an earlier cell")
    s = Sampler(meter, 10).start()
    a = time.perf_counter()
    time.sleep(0.15)
    b = time.perf_counter()
    s.stop()
    out = summarize(s, [{"t_start": a, "t_first_token": a, "t_end": b}], idle, mcfg,
                    {"batch_size": 1, "in_len": 1, "out_len": 1, "generated_per_rep": 1})
    assert out["status"] == "invalid" and "need >= 5" in out["reason"] and "energy" not in out


# ------------------------------------------------------------------ power modes on a fake Jetson

def power_cfg(name: str, root):
    p = load_group("power", name)
    p.root = str(root)
    return p


def test_mode_is_applied_by_name_read_back_and_restored(tmp_path, monkeypatch):
    log = make_jetson(tmp_path / "jetson", tmp_path / "bin", start_id=0)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    modes = PowerModes(power_cfg("30W", tmp_path / "jetson"))
    state = modes.apply(power_cfg("30W", tmp_path / "jetson"))
    assert state["mode"] == "MODE_30W" and state["mode_id"] == 2 and state["cpu_cores_online"] == 8
    assert state["previous_mode"] == "MAXN" and state["status"] == "set and verified"
    modes.apply(power_cfg("30W", tmp_path / "jetson"))  # already there: not switched again
    modes.restore()
    assert log.read_text().split("\n").count("-m 2") == 1
    assert log.read_text().strip().splitlines()[-1] == "-m 0"  # back to MAXN
    assert (tmp_path / "jetson/sys/devices/system/cpu/online").read_text().strip() == "0-11"


def test_mode_mismatch_is_refused(tmp_path, monkeypatch):
    make_jetson(tmp_path / "jetson", tmp_path / "bin", start_id=0, ignore_set=True)  # nvpmodel "fails silently"
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    modes = PowerModes(power_cfg("15W", tmp_path / "jetson"))
    with pytest.raises(PowerModeError, match="did not take effect: mode is MAXN; cpu_cores_online is 12, expected 4"):
        modes.apply(power_cfg("15W", tmp_path / "jetson"))
    modes.restore()


def test_unknown_mode_name_and_off_jetson(tmp_path, monkeypatch):
    make_jetson(tmp_path / "jetson", tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    with pytest.raises(PowerModeError, match="'PM_B' is not in .* --conf-block pm-b"):
        PowerModes(power_cfg("pm-b", tmp_path / "jetson")).resolve(power_cfg("pm-b", tmp_path / "jetson"))
    with pytest.raises(PowerModeError, match="needs a Jetson"):
        PowerModes(power_cfg("30W", tmp_path)).resolve(power_cfg("30W", tmp_path))


def test_no_nvpmodel_block_is_made_up_for_a_mode_whose_clocks_are_unknown():
    """The paper's custom modes have no known clocks: their conf block is refused in one line, a stock mode's
    known readback (its online cores) is printed."""
    cmd = [sys.executable, "-m", "artifact.power.modes", "--conf-block"]
    out = subprocess.run([*cmd, "pm-h"], capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == (
        "error: power=pm-h defines no clocks (clocks: unknown): its PM_H block cannot be written from what is "
        "known; write it from the paper's table and add the clocks under expect in conf/power/pm-h.yaml")
    block = subprocess.run([*cmd, "15W", "--id", "7"], capture_output=True, text=True, check=True).stdout
    assert block.splitlines()[0] == "< POWER_MODEL ID=7 NAME=MODE_15W >" and "CPU_ONLINE CORE_3 1" in block
    assert "MAX_FREQ" not in block


def test_previous_mode_is_restored_when_the_process_dies_of_an_exception(tmp_path):
    log = make_jetson(tmp_path / "jetson", tmp_path / "bin", start_id=3)
    script = ("from artifact.config import load_group\nfrom artifact.power.modes import PowerModes\n"
              f"p = load_group('power', '15W'); p.root = {str(tmp_path / 'jetson')!r}\n"
              "PowerModes(p).apply(p)\nraise RuntimeError('boom mid-sweep')\n")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "boom mid-sweep" in out.stderr
    assert log.read_text().split() == ["-q", "-m", "1", "-q", "-m", "3"]
    assert "power mode restored to MODE_50W" in out.stderr


def test_cell_on_a_fake_jetson_end_to_end(cli, tmp_path):
    """A real SmolLM2 cell with power=30W and meter=ina3221 on the fake Jetson: mode set, read back,
    restored; power sampled from a hwmon tree that another process keeps changing."""
    root = tmp_path / "jetson"
    chans = make_hwmon_tree(root)
    log = make_jetson(root, tmp_path / "bin", start_id=0)
    hw, n = chans["VDD_GPU_SOC"]
    writer = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(hw / f"curr{n}_input"), "120"])
    try:
        env = cli.env(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
        out = cli.run(*[a for a in FAST if a != "min_seconds=0"], "min_seconds=1.5", "power=30W", f"power.root={root}",
                      "meter=ina3221", f"meter.sysfs_root={root}", "meter.idle_seconds=1", env=env)
    finally:
        writer.kill()
    assert out.returncode == 0, out.stderr
    [rec] = cli.records()
    result = json.loads((rec / "result.json").read_text())
    assert result["power_mode"]["mode"] == "MODE_30W" and result["power_mode"]["cpu_cores_online"] == 8
    p = result["power"]
    assert p["status"] == "ok", p
    assert p["meter"]["meter"] == "ina3221" and p["samples_total"] > 0  # how many: timing, not pass/fail
    assert 15 < p["timed"]["power_w"]["median"] < 25  # 10 +- 2.5 W GPU + 10 W other rails
    assert p["idle"]["status"] == "ok" and p["energy"]["timed_j"] > 0 and "net_j" in p["energy"]
    trace = (rec / "power.csv").read_text().splitlines()
    assert trace[0] == "t,total_w," + ",".join(sorted(f"{r}_w" for r in AGX_ORIN_RAILS))
    assert len(trace) == p["samples_total"] + 1
    assert "timed_start" in (rec / "marks.csv").read_text()
    assert log.read_text().split() == ["-q", "-m", "2", "-q", "-m", "0"]  # restored to MAXN at the end


def test_dry_run_prints_the_plan_and_changes_nothing(cli, tmp_path):
    log = make_jetson(tmp_path / "jetson", tmp_path / "bin")
    out = cli.run(*FAST, "power=15W", "power.dry_run=true", f"power.root={tmp_path / 'jetson'}",
                  env=cli.env(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}"))
    assert out.returncode == 0, out.stderr
    assert "nvpmodel -m 1   (MODE_15W)" in out.stdout and "cpu_cores_online = 4" in out.stdout
    assert not log.exists() and cli.records() == []


def test_power_mode_off_a_jetson_is_one_line(cli):
    out = cli.run(*FAST, "power=30W")
    assert out.returncode == 2 and out.stderr.strip().startswith("error: power=30W needs a Jetson")
    assert len(out.stderr.strip().splitlines()) == 1


def test_meter_cli_on_fake_hwmon(tmp_path, data_dir):
    make_hwmon_tree(tmp_path)
    out = subprocess.run([sys.executable, "-m", "artifact.meter", "--meter", "ina3221", "--seconds", "1.2",
                          "--sysfs-root", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "median 20.00 W" in out.stdout and "total    20.00 W" in out.stdout


def test_nvml_meter_reads_the_gpu_the_cell_runs_on(monkeypatch):
    """NVML numbers GPUs physically and ignores CUDA_VISIBLE_DEVICES; torch numbers the visible ones. With
    CUDA_VISIBLE_DEVICES=1, a cell on cuda:0 runs on the host's second GPU: the meter must read that one
    (200 W on this FAKE NVML), not NVML's device 0 (100 W), and the record must say which by UUID."""
    import types

    import torch

    from artifact.power import nvml
    from fakes import FakeNvml
    uuids = ["GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-1111-1111-1111-111111111111"]
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml({uuids[0]: 100.0, uuids[1]: 200.0}))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    visible = [int(i) for i in os.environ["CUDA_VISIBLE_DEVICES"].split(",")]
    # torch's view: visible devices only, each with the UUID CUDA reports (without NVML's "GPU-" prefix) and CUDA's
    # own PCI ids of the device (the fake host puts physical GPU n on bus 0x18 + 0x10 n)
    def cuda_view(uuid_of=lambda physical: uuids[physical].removeprefix("GPU-"), bus_of=lambda p: 0x18 + 0x10 * p):
        return lambda i: types.SimpleNamespace(uuid=uuid_of(visible[i]), pci_domain_id=0,
                                               pci_bus_id=bus_of(visible[i]), pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", cuda_view())
    assert nvml.cuda_uuid("cuda:0") == nvml.cuda_uuid("cuda") == uuids[1]
    meter = make_meter(load_group("meter", "nvml"), "cuda:0")
    assert meter.read().total_w == 200.0
    info = meter.describe()
    assert info["gpu_uuid"] == uuids[1] and info["cuda_visible_devices"] == "1" and info["gpu"] == "Fake GPU 1"
    assert info["gpu_pci"] == info["gpu_pci_cuda"] == "00000000:28:00"  # both sides name the second GPU
    monkeypatch.setattr(torch.cuda, "get_device_properties", cuda_view(bus_of=lambda p: 0x18))
    with pytest.raises(MeterError, match="UUID GPU-bbbb.* is at PCI 00000000:28:00 but CUDA's device is at "
                                         "00000000:18:00: the meter would read another GPU"):
        make_meter(load_group("meter", "nvml"), "cuda:0")
    monkeypatch.setattr(torch.cuda, "get_device_properties",  # a torch that reports no PCI ids: not checked
                        lambda i: types.SimpleNamespace(uuid=uuids[visible[i]].removeprefix("GPU-")))
    info = make_meter(load_group("meter", "nvml"), "cuda:0").describe()
    assert info["gpu_pci"] == "00000000:28:00" and info["gpu_pci_cuda"] is None
    assert nvml.memory_used_bytes("cuda:0") == 2 * 2**30  # the second GPU's used memory, as nvidia-smi shows
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="cccc"))
    with pytest.raises(MeterError, match="NVML has no GPU with UUID GPU-cccc"):
        make_meter(load_group("meter", "nvml"), "cuda:0")


def test_a_host_wide_meter_refuses_a_second_cell_on_the_same_host(tmp_path):
    """Two processes, each opening RAPL on the FAKE powercap tree: the second stops with one line."""
    make_rapl_zone(tmp_path, start_uj=1_000, max_uj=1_000_000_000)
    hold = ("import sys, time; from artifact.power.rapl import RaplMeter; "
            "m = RaplMeter(sys.argv[1]); m.claim_host(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        meter = RaplMeter(str(tmp_path))
        with pytest.raises(MeterError, match=rf"meter=rapl reads the whole host and pid {holder.pid} .* one cell at a "
                                             r"time per host"):
            meter.claim_host()
    finally:
        holder.kill()
        holder.wait()
    meter = RaplMeter(str(tmp_path))
    meter.claim_host()  # the dead holder's lock went with its process
    meter.close()
