"""What one process keeps between the cells it measures. Hydra's basic launcher runs a sweep's cells one after
another in one process; a Session is made once per process (`artifact.run.cli`) and passed to every cell, and
nothing else in the package keeps state between cells."""
from __future__ import annotations

import json
from pathlib import Path

from ..core import roofline
from ..core.config import BadInput, Cell, to_container
from ..core.schema import Provenance, Result
from ..models import loading
from ..power import Meter
from ..power.choose import make_meter
from ..power.modes import PowerModes
from ..store import provenance
from ..store.db_locks import AdvisoryLocks
from ..store.record import CellStore, ladder_key
from .progress import SweepProgress


class LoadFailedBefore(RuntimeError):
    """This model and precision failed to load (or to build its checkpoint) earlier in this process: not retried."""


class Session:
    """The loaded model (reused while model, quant, device and seed stay the same), open meters and the idle
    power per power mode, the power-mode state (the mode to restore at the end), perplexities and corpus token
    ids already computed, static provenance, loads that failed (not retried), the smallest batch of each batch
    ladder that ran out of memory, the results measured here, the cells that failed, the progress counter, and the
    database connections holding cell locks."""

    def __init__(self, total_cells: int = 1):
        self.loaded: tuple[str, loading.Loaded] | None = None
        self.meters: dict[str, Meter] = {}
        self.idle: dict[tuple[str, str], dict] = {}        # (meter, power mode) -> idle power
        self.modes: PowerModes | None = None
        self.perplexities: dict[str, dict] = {}             # model+quant+ppl+device -> perplexity section
        self.token_ids: dict[tuple, list[int]] = {}         # (corpus, tokenizer) -> token ids of the whole text
        self.static_provenance: dict | None = None
        self.failed_loads: dict[str, str] = {}              # model key -> the first failure
        self.ladder: dict[str, tuple[int, str]] = {}        # ladder key -> (smallest OOM batch, its cell hash)
        self.ladder_scanned: set[Path] = set()              # studies whose OOM records were read
        self.results: list[Result] = []                     # what this process measured (the time summary)
        self.traces_dir: Path = Path("traces")              # where it wrote them
        self.failed: list[str] = []
        self.locks: dict[str, AdvisoryLocks] = {}           # tracking.lock_db -> its connections
        self.peaks: dict[tuple[str, str], dict] = {}        # (device, dtype) -> probed roofline peaks
        self.progress = SweepProgress(total_cells)
        self.canary_points: list[dict] = []                 # the drift canary's points measured here (rounds design)
        self.checks_passed: set[tuple] = set()              # preflight checks that passed here (once())

    def __reduce__(self):
        """A session belongs to its process: shipped to a launcher's worker (pickled), it arrives empty."""
        return (Session, ())

    def model(self, cell: Cell) -> tuple[loading.Loaded, bool]:
        """The cell's model; reused (second value True) while model, quant, device and seed are the same."""
        key = json.dumps([to_container(cell.model), to_container(cell.quant), cell.device,
                          cell.seed if cell.model.weights == "synthetic" else None], sort_keys=True)
        if self.loaded and self.loaded[0] == key:
            return self.loaded[1], True
        if key in self.failed_loads:
            raise LoadFailedBefore(f"not loaded: {cell.model.name}/{cell.quant.name} failed to load earlier in this "
                                   f"sweep and is not retried ({self.failed_loads[key]})")
        self.release_model()
        try:
            loaded = loading.load(cell)
        except BadInput:
            raise
        except Exception as e:  # a checkpoint build or a load that failed once fails the same way again
            self.failed_loads[key] = f"{type(e).__name__}: {e}"
            raise
        self.loaded = (key, loaded)
        return loaded, False

    def release_model(self) -> None:
        self.loaded = None
        loading.release()

    def oom_below(self, store: CellStore, cell: Cell) -> tuple[int, str] | None:
        """(batch, cell hash) of a smaller batch of this cell's ladder that ran out of memory, or None. The
        study's OOM records are read once; later OOMs of this process are added by note_oom."""
        if store.root not in self.ladder_scanned:
            self.ladder_scanned.add(store.root)
            for config, result in store.ooms():
                if "hardware" in result:  # records of the identity before the hardware class: not this cell's
                    self.note_oom(config, result["device"], result["hardware"], result["cell_hash"])
        hit = self.ladder.get(ladder_key(cell.config, cell.device, cell.hardware))
        return hit if hit is not None and hit[0] < cell.batch_size else None

    def note_oom(self, config: dict, device: str, hardware: str, cell_hash: str) -> None:
        key, batch = ladder_key(config, device, hardware), config["batch_size"]
        if key not in self.ladder or batch < self.ladder[key][0]:
            self.ladder[key] = (batch, cell_hash)

    def meter(self, meter_cfg, device: str) -> Meter:
        """One meter per meter config and device, opened once and closed by close()."""
        key = json.dumps([to_container(meter_cfg), device], sort_keys=True)
        if key not in self.meters:
            meter = make_meter(meter_cfg, device)
            try:
                meter.claim_host()
            except BadInput:
                meter.close()
                raise
            self.meters[key] = meter
        return self.meters[key]

    def once(self, key: tuple, check) -> None:
        """Run a preflight check at most once per process for `key`: the variants of a sweep share it (a passing
        check is remembered; a failing one raises BadInput)."""
        if key not in self.checks_passed:
            check()
            self.checks_passed.add(key)

    def device_peaks(self, cell: Cell, dtype: str) -> dict:
        """The roofline peaks of the cell's device (artifact.core.roofline): conf/devices.yaml, else a probe measured
        once per device and compute dtype in this process."""
        table = roofline.table_peaks(cell.hardware, self.provenance().get("memory_total_bytes"), cell.power.name)
        if table is not None:
            return table
        key = (cell.device, dtype)
        if key not in self.peaks:
            self.peaks[key] = roofline.probe(cell.device, dtype)
        return self.peaks[key]

    def db_locks(self, uri: str | None) -> AdvisoryLocks | None:
        """The database locks of tracking.lock_db (None: the file lock alone)."""
        if not uri:
            return None
        if uri not in self.locks:
            self.locks[uri] = AdvisoryLocks(uri)
        return self.locks[uri]

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
