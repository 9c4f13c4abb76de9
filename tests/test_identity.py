"""Cell identity is a contract: records on disk (and the shipped results) are found by it, so a change of code
layout must not move it. These hashes were computed when the hardware class joined the identity (issue 11) and must
never change without a deliberate bump of the package version or the record schema."""
from __future__ import annotations

import csv

import pytest

from artifact import experiments
from artifact.config import compose, override_value, to_container
from artifact.record import cell_hash
from conftest import REPO

H100 = "NVIDIA H100 80GB HBM3"
PINNED = [
    (["seq_len=32", "min_reps=1", "min_seconds=0"], "cpu", "AMD EPYC", "804b3eaf92a86cff"),  # the README's first cell
    (["model=phi2", "model.weights=synthetic", "quant=int4", "ppl=off", "meter=nvml", "batch_size=32",
      "seq_len=512"], "cuda", H100, "44d881eafde1a2f4"),
    (["model=llama31-8b", "model.weights=synthetic", "quant=gptq-int4", "ppl=off", "batch_size=1",
      "seq_len=128"], "cuda", H100, "a2a5baca8f28da12"),
    (["quant=int8", "batch_size=4", "seq_len=64", "power=pm-h", "meter=auto"], "cpu", "Cortex-A78AE",
     "660b59c0f2103b6d"),  # pm-h without clocks (issue 12: none are known)
]


@pytest.mark.parametrize("overrides,device,hardware,expected", PINNED)
def test_pinned_cell_hashes(overrides, device, hardware, expected):
    assert cell_hash(to_container(compose(overrides)), device, hardware) == expected


def test_every_shipped_record_keeps_its_hash():
    """Each row of every profile's paper/<profile>/results.csv, recomposed from its experiment's plan, gives the
    hash it was recorded under."""
    columns = {"model": "model", "quant": "quant", "batch_size": "batch_size", "seq_len": "seq_len",
               "workload": "workload", "power": "power_mode"}
    rows = [r for f in sorted(REPO.glob("paper/*/results.csv")) for r in csv.DictReader(open(f))]
    assert {r["profile"] for r in rows} >= {"smoke", "gpu"}
    by_study = {experiments.load(n)["study"]: n for n in experiments.names()}
    for row in rows:
        plan = experiments.plan(by_study[row["study"]], row["profile"])
        overrides = [f"study={plan.study}", f"profile={plan.profile}"]
        for key, value in plan.settings.items():
            value = row[columns[key]] if isinstance(value, list) else value
            overrides.append(f"{key}={value if isinstance(value, str) else override_value(value)}")
        config = to_container(compose(overrides))
        assert cell_hash(config, row["device"], row["hardware"]) == row["cell_hash"], overrides


def test_labels_that_describe_a_power_mode_are_not_identity():
    base = to_container(compose(["power=pm-h"]))
    relabelled = {**base, "power": {**base["power"], "clocks": "stock", "dry_run": True}}
    assert cell_hash(base, "cpu", "AMD EPYC") == cell_hash(relabelled, "cpu", "AMD EPYC")
