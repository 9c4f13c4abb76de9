"""Roofline fractions (artifact.core.roofline): the counting model on a hand-computed cell, the device table, and the
CPU probe measured for real."""
from __future__ import annotations

import pytest

from artifact.core import roofline


def test_fractions_count_weights_kv_and_flops_as_documented():
    config = {"model": {"params": 1_000_000, "arch": {"num_hidden_layers": 2, "num_attention_heads": 4,
                                                      "num_key_value_heads": 2, "hidden_size": 64}},
              "batch_size": 8}
    result = {"status": "ok", "tokens": {"in_len": 100, "out_len": 101},
              "model": {"weight_bytes": 2_000_000, "dtype": "float16"}}
    peaks = {"mem_bw_gbs": 1.0, "tflops": {"fp16": 1.0}}
    out = roofline.fractions(config, result, peaks, {"per_token_s": 0.01, "ttft_s": 0.5})
    kv = 2 * 2 * 2 * 16 * 2 * 8 * (100 + 100 / 2)  # K+V x layers x kv heads x head dim x fp16 x batch x context
    assert out["decode_bw_fraction"] == pytest.approx((2_000_000 + kv) / 0.01 / 1e9)
    flops = 2 * 1_000_000 * 8 * 100 + 2 * 2 * 2 * 8 * 4 * 16 * 100 ** 2 / 2
    assert out["prefill_flops_fraction"] == pytest.approx(flops / 0.5 / 1e12)
    assert roofline.fractions(config, {**result, "status": "oom"}, peaks, {}) == {
        "decode_bw_fraction": None, "prefill_flops_fraction": None}
    no_fp16 = roofline.fractions(config, result, {"mem_bw_gbs": 1.0, "tflops": {"fp32": 1.0}},
                                 {"per_token_s": 0.01, "ttft_s": 0.5})
    assert no_fp16["prefill_flops_fraction"] is None  # a peak we do not know gives no fraction


def test_device_table_matches_by_name_memory_and_power_mode():
    assert roofline.table_peaks("NVIDIA H100 80GB HBM3")["mem_bw_gbs"] == 3350
    assert roofline.table_peaks("NVIDIA H100 PCIe")["mem_bw_gbs"] == 2000
    assert roofline.table_peaks("NVIDIA L40S") is None  # not an L4
    agx = roofline.table_peaks("Orin", 64 * 2 ** 30, "15W")
    assert agx["name"] == "NVIDIA Jetson AGX Orin 64GB" and agx["mem_bw_gbs"] == pytest.approx(204.8 * 2133 / 3200)
    assert roofline.table_peaks("Orin", 64 * 2 ** 30, "pm-b")["mem_bw_gbs"] is None  # EMC of PM-B not known
    assert roofline.table_peaks("Orin", 16 * 2 ** 30)["name"] == "NVIDIA Jetson Orin NX 16GB"
    assert roofline.table_peaks("AMD EPYC") is None


def test_the_cpu_probe_measures_bandwidth_and_flops():
    peaks = roofline.probe("cpu", "fp32")
    assert peaks["mem_bw_gbs"] > 0.1 and peaks["tflops"]["fp32"] > 1e-4 and peaks["source"].startswith("probe")
