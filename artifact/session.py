"""What one process keeps between the cells it measures. Hydra's basic launcher runs a sweep's cells one after
another in one process; a Session is made once per process (`artifact.run.cli`) and passed to every cell, and
nothing else in the package keeps state between cells."""
from __future__ import annotations

import json

from . import models, provenance
from .config import Cell, to_container
from .power import Meter, PowerModes, make_meter
from .progress import SweepProgress
from .schema import Provenance


class Session:
    """The loaded model (reused while model, quant, device and seed stay the same), open meters and the idle
    power per power mode, the power-mode state (the mode to restore at the end), perplexities and corpus token
    ids already computed, static provenance, the cells that failed, and the sweep's progress counter."""

    def __init__(self, total_cells: int = 1):
        self.loaded: tuple[str, models.Loaded] | None = None
        self.meters: dict[str, Meter] = {}
        self.idle: dict[tuple[str, str], dict] = {}        # (meter, power mode) -> idle power
        self.modes: PowerModes | None = None
        self.perplexities: dict[str, dict] = {}             # model+quant+ppl+device -> perplexity section
        self.token_ids: dict[tuple, list[int]] = {}         # (corpus, tokenizer) -> token ids of the whole text
        self.static_provenance: dict | None = None
        self.failed: list[str] = []
        self.progress = SweepProgress(total_cells)

    def model(self, cell: Cell) -> tuple[models.Loaded, bool]:
        """The cell's model; reused (second value True) while model, quant, device and seed are the same."""
        key = json.dumps([to_container(cell.model), to_container(cell.quant), cell.device,
                          cell.seed if cell.model.weights == "synthetic" else None], sort_keys=True)
        if self.loaded and self.loaded[0] == key:
            return self.loaded[1], True
        self.release_model()
        loaded = models.load(cell)
        self.loaded = (key, loaded)
        return loaded, False

    def release_model(self) -> None:
        self.loaded = None
        models.release()

    def meter(self, meter_cfg, device: str) -> Meter:
        """One meter per meter config and device, opened once and closed by close()."""
        key = json.dumps([to_container(meter_cfg), device], sort_keys=True)
        if key not in self.meters:
            self.meters[key] = make_meter(meter_cfg, device)
        return self.meters[key]

    def power_modes(self, power_cfg) -> PowerModes:
        """The process's one PowerModes: it remembers the mode found first and restores it at exit."""
        if self.modes is None:
            self.modes = PowerModes(power_cfg)
        return self.modes

    def provenance(self) -> Provenance:
        if self.static_provenance is None:
            self.static_provenance = provenance.static_provenance()
        return provenance.provenance(self.static_provenance)

    def close(self) -> None:
        """Close the meters (NVML shut down, jtop client disconnected)."""
        for meter in self.meters.values():
            meter.close()
        self.meters.clear()
