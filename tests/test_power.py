"""Meters, sampler, energy and power modes, against FAKE Jetson hardware (tests/fakes.py says what each
fake copies) and analytic power curves."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest

import fake_jetson_power as fjp
from artifact.core.config import load_group
from artifact.power import Sampler, idle_power, summarize
from artifact.power.choose import make_meter
from artifact.power.energy import CoverageError, check_coverage, integrate, window
from artifact.power.ina3221 import Ina3221Meter
from artifact.power.jtop_meter import JtopMeter
from artifact.power.meters import Meter, MeterError, Reading
from artifact.power.modes import PowerModeError, PowerModes
from artifact.power.rapl import RaplMeter
from artifact.report import results
from conftest import FAST
from fake_jetson_power import install_fake_jtop, make_board, start_writer
from fakes import make_iio_tree, make_jetson, make_rapl_zone


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

def test_agx_orin_fake_reads_as_the_board_is_programmed(tmp_path):
    """JetPack 6.2 on an AGX Orin 64GB (FAKE): two chips, NC channels left out, each chip's samples and
    update_interval in the record, polled twice per 430 ms update, the module total counting the DDR rail once
    and jtop's `tot` (the plain sum of the four) beside it."""
    make_board(tmp_path, "agx-orin-64gb")
    meter = Ina3221Meter(str(tmp_path))
    assert sorted(meter.channels) == sorted(fjp.LOADS["agx-orin-64gb"])  # NC channels and in7 are not rails
    info = meter.describe()
    assert info["chips"] == {"1-0040": {"hwmon": "hwmon3", "samples": 512, "update_interval_ms": 430,
                                        "rails": ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]},
                             "1-0041": {"hwmon": "hwmon1", "samples": 512, "update_interval_ms": 430,
                                        "rails": ["VDDQ_VDD2_1V8AO"]}}
    assert meter.update_s == 0.43 and meter.period_s == pytest.approx(0.215) and "430 ms" in meter.update_source
    assert info["module"] == "agx-orin" and info["total_rails"] == fjp.MODULE_RAILS["agx-orin-64gb"]
    assert "includes VDDQ_VDD2_1V8AO" in info["total_is"] and "not wall power" in info["total_is"]
    r = meter.read()
    assert r.total_w == pytest.approx(sum(r.rails[k] for k in fjp.MODULE_RAILS["agx-orin-64gb"]))
    assert r.jtop_tot_w == pytest.approx(sum(r.rails.values())) and r.jtop_tot_w > r.total_w
    assert Sampler(meter, 10).period_s == pytest.approx(0.215)  # rate_hz=10 asks faster than is worth it


def test_orin_nx_fake_total_is_vdd_in(tmp_path):
    make_board(tmp_path, "orin-nx-16gb")
    meter = Ina3221Meter(str(tmp_path))
    r = meter.read()
    assert meter.describe()["module"] == "orin-nx-nano" and meter.total["rails"] == ["VDD_IN"]
    assert r.total_w == r.rails["VDD_IN"] == r.jtop_tot_w  # jtop's tot is VDD_IN on this module too
    assert r.total_w > r.rails["VDD_CPU_GPU_CV"] + r.rails["VDD_SOC"]


def test_a_five_second_window_on_the_agx_orin_holds_about_12_readings(tmp_path):
    """50 polls at 10 Hz used to pass for 50 readings; the sensor gives one per 430 ms, and the meter counts those."""
    make_board(tmp_path, "agx-orin-64gb")
    writer = start_writer(tmp_path, "agx-orin-64gb", seconds=30)
    try:
        meter = Ina3221Meter(str(tmp_path))
        s = Sampler(meter, 10).start()
        time.sleep(0.3)
        a = time.perf_counter()
        time.sleep(5.0)
        b = time.perf_counter()
        time.sleep(0.3)
        s.stop()
    finally:
        writer.kill()
    tokens = {"batch_size": 1, "in_len": 1, "out_len": 1, "generated_per_rep": 1}
    rep = [{"t_start": a, "t_first_token": a, "t_end": b}]
    out = summarize(s, rep, {"status": "not measured"}, load_group("meter", "ina3221"), tokens)
    assert out["status"] == "ok" and out["timed"]["updates"] == 11  # 5 s / 0.43 s
    seen = out["timed"]["updates_seen"]  # what the trace shows, polled twice per update: never the 50 polls
    assert 1 <= seen <= 12
    polls = [r.t for r in s.samples if a <= r.t <= b]
    if max(y - x for x, y in zip(polls, polls[1:])) < 0.2:  # every update polled (a loaded host can skip polls)
        assert seen >= 10, (seen, len(polls))
    assert out["energy"]["source"] == "samples" and out["energy"]["bound_j"] > 0
    strict = load_group("meter", "ina3221")
    strict.min_samples = 12
    out = summarize(s, rep, {"status": "not measured"}, strict, tokens)
    assert out["status"] == "invalid" and "11 sensor updates (one per 0.430 s)" in out["reason"]


def test_ina3221_without_timing_attributes_says_what_it_assumed(tmp_path):
    make_board(tmp_path, "agx-orin-64gb")
    for f in tmp_path.glob("sys/bus/i2c/devices/*/hwmon/*/update_interval"):
        f.unlink()
    meter = Ina3221Meter(str(tmp_path))
    assert meter.update_s == 0.43 and meter.update_source.startswith("assumed 0.43 s")
    make_iio_tree(tmp_path / "old", {"GPU": 3000, "CPU": 1500})
    old = Ina3221Meter(str(tmp_path / "old"), [])
    r = old.read()
    assert r.rails == {"GPU": 3.0, "CPU": 1.5} and r.total_w == 4.5  # no module definition: the plain sum, said
    assert "plain sum of every rail" in old.describe()["total_is"] and old.update_source.startswith("assumed")


def test_ina3221_missing_rail_and_no_tree(tmp_path):
    with pytest.raises(MeterError, match="no INA3221 rails"):
        Ina3221Meter(str(tmp_path))
    make_board(tmp_path, "agx-orin-64gb")
    with pytest.raises(MeterError, match="VDD_SOC_MISSING, not found"):
        Ina3221Meter(str(tmp_path), ["VDD_GPU_SOC", "VDD_SOC_MISSING"])
    assert Ina3221Meter(str(tmp_path), ["VDD_GPU_SOC"]).total["is"].startswith("sum of meter.total_rails")


def test_module_definitions_match_nvidias_rail_meanings():
    from artifact.power.boards import modules
    defs = modules()
    assert defs["agx-orin"]["total"] == fjp.MODULE_RAILS["agx-orin-64gb"]
    assert defs["orin-nx-nano"]["total"] == fjp.MODULE_RAILS["orin-nx-16gb"]


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
    make_board(tmp_path, "agx-orin-64gb")
    assert make_meter(mcfg, "cpu").name == "ina3221"  # first in the order


def use_fake_jtop(tmp_path, monkeypatch, board: str) -> None:
    """A FAKE board under tmp_path/board and the FAKE jtop client (a fresh import) reading it."""
    make_board(tmp_path / "board", board)
    install_fake_jtop(tmp_path / "site", tmp_path / "board")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "jtop", raising=False)


@pytest.mark.parametrize("board", ["agx-orin-64gb", "orin-nx-16gb"])
def test_jtop_and_ina3221_report_the_same_total(tmp_path, monkeypatch, board):
    """The FAKE jtop service reads the same fake sysfs as meter=ina3221; both meters compute the module total from
    the rails with one definition, and jtop's own `tot` is kept beside it."""
    use_fake_jtop(tmp_path, monkeypatch, board)
    meter = JtopMeter(0.1, str(tmp_path / "board"))
    direct = Ina3221Meter(str(tmp_path / "board"))
    assert meter.interval_s == 0.5  # never below 0.5 s
    assert meter.update_s == 0.5 and meter.period_s == 0.25 and meter.staleness_s == pytest.approx(0.5 + 0.86)
    r, d = meter.read(), direct.read()
    assert meter.total["rails"] == direct.total["rails"] == fjp.MODULE_RAILS[board]
    assert set(r.rails) == set(d.rails)  # on the Orin NX VDD_IN comes back from jtop's `tot`
    assert r.total_w == pytest.approx(d.total_w, abs=0.01)  # jtop rounds each rail to whole mW
    assert r.jtop_tot_w == pytest.approx(d.jtop_tot_w, abs=0.01)
    assert meter.describe()["jtop_client"] == "4.3.2"
    meter.close()


def test_jtop_refusals_are_one_line(tmp_path, monkeypatch):
    use_fake_jtop(tmp_path, monkeypatch, "agx-orin-64gb")
    monkeypatch.setenv("FAKE_JTOP_SERVICE_VERSION", "4.2.7")
    with pytest.raises(MeterError) as e:
        JtopMeter(0.5, str(tmp_path / "board"))
    assert "\n" not in str(e.value)
    assert "jetson-stats 4.2.7" in str(e.value) and "client is 4.3.2" in str(e.value)
    assert "jetson-stats~=4.2.0" in str(e.value)
    monkeypatch.setenv("FAKE_JTOP_SERVICE_VERSION", "4.3.1")  # same major.minor: accepted, as jtop does
    JtopMeter(0.5, str(tmp_path / "board")).close()
    monkeypatch.setenv("FAKE_JTOP_SERVICE", "down")
    with pytest.raises(MeterError, match="jtop cannot connect: The jtop.service is not active") as e:
        JtopMeter(0.5, str(tmp_path / "board"))
    assert "\n" not in str(e.value)
    monkeypatch.delenv("FAKE_JTOP_SERVICE")
    monkeypatch.setenv("FAKE_JTOP_INTERVAL", "2.0")  # the service runs at its own pace, as the paper's did
    slow = JtopMeter(0.5, str(tmp_path / "board"))
    assert slow.update_s == 2.0 and "jtop service interval 2.0 s" in slow.update_source
    slow.close()


def test_idle_window_and_invalid_coverage(tmp_path):
    make_board(tmp_path, "agx-orin-64gb")
    mcfg = load_group("meter", "ina3221")
    mcfg.sysfs_root, mcfg.idle_seconds = str(tmp_path), 2.5
    meter = make_meter(mcfg, "cpu")
    expected = meter.read().total_w  # no writer: the chips hold their last averages
    measured: dict = {}  # the session's idle cache
    idle = idle_power(meter, mcfg, "fake-mode", measured=measured)
    assert idle["status"] == "ok" and idle["power_w"]["median"] == pytest.approx(expected)
    assert idle["measured_in"] == "this cell"
    assert idle_power(meter, mcfg, "fake-mode", measured=measured)["measured_in"].startswith("an earlier cell")
    s = Sampler(meter, 10).start()
    a = time.perf_counter()
    time.sleep(1.0)
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
    script = ("from artifact.core.config import load_group\nfrom artifact.power.modes import PowerModes\n"
              f"p = load_group('power', '15W'); p.root = {str(tmp_path / 'jetson')!r}\n"
              "PowerModes(p).apply(p)\nraise RuntimeError('boom mid-sweep')\n")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "boom mid-sweep" in out.stderr
    assert log.read_text().split() == ["-q", "-m", "1", "-q", "-m", "3"]
    assert "power mode restored to MODE_50W" in out.stderr


@pytest.mark.parametrize("board", ["agx-orin-64gb", "orin-nx-16gb"])
def test_cell_on_a_fake_jetson_end_to_end(cli, tmp_path, board):
    """A real SmolLM2 cell with meter=ina3221 on each FAKE board, its chips averaging a known load: the energy of the
    timed window is within the bound the record gives (from the 430 ms update interval) of the exact integral, the
    window holds at least 50 sensor updates, and jtop's `tot` figure sits beside the module total. On the AGX Orin
    the cell also runs in power=30W: mode set, read back, restored."""
    root = tmp_path / "jetson"
    make_board(root, board)
    log = make_jetson(root, tmp_path / "bin", start_id=0)
    mode = ["power=30W", f"power.root={root}"] if board == "agx-orin-64gb" else []
    writer = start_writer(root, board, seconds=240)
    try:
        env = cli.env(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
        out = cli.run(*FAST, *mode, "meter=ina3221", f"meter.sysfs_root={root}", "meter.idle_seconds=2.5", env=env)
    finally:
        writer.kill()
    assert out.returncode == 0, out.stderr
    [rec] = cli.records()
    result = json.loads((rec / "result.json").read_text())
    p = result["power"]
    assert p["status"] == "ok", p
    assert p["meter"]["update_s"] == 0.43 and p["meter"]["total_rails"] == fjp.MODULE_RAILS[board]
    assert p["min_window_s"] == pytest.approx(50 * 0.43) and p["timed"]["updates"] >= 50
    reps = list(csv.DictReader((rec / "reps.csv").open()))
    t0, t1 = float(reps[0]["t_start"]), float(reps[-1]["t_end"])
    truth = fjp.true_energy(board, fjp.MODULE_RAILS[board], t0, t1)
    e = p["energy"]
    assert e["source"] == "samples" and abs(e["timed_j"] - truth) <= e["bound_j"], (e, truth)
    everything = fjp.true_energy(board, list(fjp.LOADS[board]), t0, t1)
    jtop_truth = everything if board == "agx-orin-64gb" else truth  # jtop's tot: plain sum on the AGX Orin
    assert abs(p["timed"]["jtop_tot"]["energy_j"] - jtop_truth) <= e["bound_j"] * jtop_truth / truth
    row = results.row_from_record(rec)  # the results columns read what the record holds
    assert row["energy_bound_rel"] == pytest.approx(e["bound_j"] / e["timed_j"])
    assert row["power_median_jtop_tot_w"] == p["timed"]["jtop_tot"]["median_w"]
    trace = (rec / "power.csv").read_text().splitlines()
    assert trace[0] == "t,total_w," + ",".join(sorted(f"{r}_w" for r in fjp.LOADS[board])) + ",jtop_tot_w"
    if mode:
        assert result["power_mode"]["mode"] == "MODE_30W" and result["power_mode"]["cpu_cores_online"] == 8
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


def test_rounds_keep_the_energy_bound_and_jtops_figure_over_visits():
    """A rounds record of a Jetson cell: each visit keeps its bound and jtop's `tot`; the cell reports the worst
    visit's bound and jtop's figure in the shape a back-to-back window has, which the results columns read."""
    import types

    from artifact.sweep.rounds import _power, _visit_power

    def visit(watts: float, jtop_w: float, bound_rel: float) -> dict:
        timed = {"power_w": {"median": watts, "mean": watts, "n": 100}, "updates": 50, "updates_seen": 49,
                 "jtop_tot": {"median_w": jtop_w, "energy_j": 2 * jtop_w}}
        energy = {"per_rep_j_median": watts, "per_token_j": watts / 100, "source": "samples", "timed_j": 2 * watts,
                  "bound_j": bound_rel * 2 * watts, "bound_rel": bound_rel, "jtop_tot_per_token_j": jtop_w / 100}
        return {"power": _visit_power({"status": "ok", "timed": timed, "energy": energy, "min_window_s": 21.5})}

    m = types.SimpleNamespace(visits=[visit(17.0, 18.5, 0.03), visit(19.0, 20.5, 0.05), visit(18.0, 19.5, 0.04)],
                              result={})
    power = _power(m)
    assert power["energy"]["bound_rel"] == 0.05 and power["timed"]["jtop_tot"]["median_w"] == 19.5
    assert power["timed"]["jtop_tot"]["power_w"]["interval"]["low"] == 18.5
    assert power["energy"]["jtop_tot_per_token_j"] == pytest.approx(0.195)
    assert all(v["power"]["updates"] == 50 for v in m.visits)


def test_meter_cli_on_the_agx_orin_fake(tmp_path, data_dir):
    make_board(tmp_path, "agx-orin-64gb")
    expected = Ina3221Meter(str(tmp_path)).read()  # no writer: the chips hold their last averages
    out = subprocess.run([sys.executable, "-m", "artifact.meter", "--meter", "ina3221", "--seconds", "2.2",
                          "--sysfs-root", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"median {expected.total_w:.2f} W" in out.stdout and "update_interval_ms" in out.stdout
    assert "5 independent readings (one per 0.430 s: hwmon update_interval" in out.stdout
    assert f"jtop's tot (the paper's figure): median {expected.jtop_tot_w:.2f} W" in out.stdout


def test_orin_power_check_script_on_the_agx_orin_fake(tmp_path):
    """scripts/orin_power_check.py, the minute a reviewer with an Orin spends, run against the FAKE board."""
    make_board(tmp_path / "board", "agx-orin-64gb")
    install_fake_jtop(tmp_path / "site", tmp_path / "board")
    writer = start_writer(tmp_path / "board", "agx-orin-64gb", seconds=30)
    try:
        out = subprocess.run([sys.executable, "scripts/orin_power_check.py", "--root", str(tmp_path / "board"),
                              "--seconds", "2.2"], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    finally:
        writer.kill()
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "1-0040 (hwmon3): VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0; samples 512, update_interval 430 ms"
    assert lines[1] == "1-0041 (hwmon1): VDDQ_VDD2_1V8AO; samples 512, update_interval 430 ms"
    changes = [int(line.split("changed")[1].split()[0]) for line in lines if " changed " in line]
    assert len(changes) == 4 and all(3 <= c <= 6 for c in changes)  # 2.2 s / 0.43 s: about 5 each
    assert any(line.startswith("module total (VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0)") for line in lines)
    assert any(line.startswith("VDDQ_VDD2_1V8AO (counted twice in jtop's tot)") for line in lines)
    assert lines[-1].startswith("jtop 4.3.2 (service interval 1.0 s): tot median")


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
