"""Disk space, checked before anything is written: what a sweep will write (derived checkpoints under
models_dir, records under traces_dir) against the free space of the filesystems that hold them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core.config import BadInput, Cell
from ..models import checkpoints

GIB, MIB = 2 ** 30, 2 ** 20
RECORD_BYTES = 1 * MIB      # a record, generously: config, result, reps and a power trace of a few minutes
MARGIN_BYTES = 1 * GIB      # never plan to fill a disk to the last byte


def checkpoint_bytes(cell: Cell) -> dict[Path, int]:
    """{folder: bytes} of the derived checkpoints this cell's load will build that are not built yet, estimated
    from the declared parameter count: the embedded GGUF converted to fp32 (4 bytes a parameter; also the
    stand-in tokenizer of synthetic weights), the fp16 copy of synthetic weights for a CPU quantizer (2), a GPTQ
    checkpoint (bits/8 a parameter, plus a quarter for scales and unquantized layers) and, for synthetic GPTQ,
    the temporary fp16 copy it is made from (2)."""
    from ..models.loading import built_on_device
    out: dict[Path, int] = {}
    model = cell.model
    converted = [cell.stand_in] if cell.stand_in is not None else []  # its tokenizer comes from the conversion
    if model.source == "gguf-package" and model.weights == "real":
        converted.append(model)
    for gguf_model in converted:
        folder = cell.models_dir / gguf_model.name
        if not (folder / checkpoints.PROVENANCE).is_file():
            out[folder] = 4 * (gguf_model.params or 0)
    params = model.params or 0
    if cell.quant.method == "gptq":
        folder = checkpoints.quantized_dir(cell)
        if not (folder / checkpoints.PROVENANCE).is_file():
            out[folder] = int(params * cell.quant.gptq.bits / 8 * 1.25) + (2 * params if model.weights == "synthetic"
                                                                           else 0)
    elif model.weights == "synthetic" and not built_on_device(cell):
        folder = cell.models_dir / "synthetic" / f"{model.name}-seed{cell.seed}"
        if not (folder / checkpoints.PROVENANCE).is_file():
            out[folder] = 2 * params
    return out


def _existing(path: Path) -> Path:
    """The nearest existing folder at or above `path` (where the filesystem's free space is read)."""
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check_space(needs: dict[Path, int], what: str) -> None:
    """BadInput, one line, when the bytes to be written under some paths exceed the free space (less a margin)
    of the filesystem that holds them. `what` names the writer in the message."""
    by_device: dict[int, list] = {}
    for path, need in needs.items():
        where = _existing(path)
        by_device.setdefault(os.stat(where).st_dev, [where, 0])[1] += need
    for where, need in by_device.values():
        free = shutil.disk_usage(where).free
        if need + MARGIN_BYTES > free:
            raise BadInput(f"not enough disk space: {what} needs about {need / GIB:.1f} GiB under {where} "
                           f"(+{MARGIN_BYTES / GIB:.0f} GiB margin) and {free / GIB:.1f} GiB is free there; free "
                           f"space, or point models_dir / traces_dir at a larger disk")
