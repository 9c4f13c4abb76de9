"""bitsandbytes' preflight probe (artifact.models.bnbcheck): real ops pass on this CPU with the pinned bitsandbytes;
the FAKE Orin bitsandbytes of tests/fakes.py (issue #1930's failure, raised or from C) is one line naming the library,
the error and the fix. CUDA itself is exercised on a lent GPU (ARTIFACT.md); here the probe runs on device cpu."""
from __future__ import annotations

import pytest

from artifact.core.config import BadInput
from artifact.models import bnbcheck
from tests.fakes import ORIN_BNB_ERROR, make_orin_bitsandbytes


def test_real_ops_pass_on_cpu():
    bnbcheck.check("cpu")


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_orin_failure_is_one_line(tmp_path, monkeypatch, how):
    make_orin_bitsandbytes(tmp_path, how)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    tegra = tmp_path / "nv_tegra_release"
    tegra.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    monkeypatch.setattr(bnbcheck, "TEGRA_RELEASE", str(tegra))
    with pytest.raises(BadInput) as e:
        bnbcheck.check("cpu")
    line = str(e.value)
    assert "\n" not in line
    assert "bitsandbytes 0.46.1 (library libbitsandbytes_cuda126.so, backend CUDA)" in line
    assert ORIN_BNB_ERROR in line
    assert "make bnb-jetson" in line
