"""The raw records of a shipped profile as one small archive in git (paper/<profile>/records.tar.xz), so that a
fresh clone rebuilds every figure, table and claim without hardware and without a DVC remote.

It holds traces/<study>/<cell_hash>/ of each reported cell: config.yaml, result.json, reps.csv and, with a meter,
power.csv and marks.csv (no weights), and each study's drift canary log (canary.jsonl). It is written
deterministically (sorted members, no times, no owners), so
the same records give the same bytes."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

NAME = "records.tar.xz"
CANARY = "canary.jsonl"  # traces/<study>/canary.jsonl: the drift canary of the rounds design, archived with the records


def write(traces_dir: Path, records: list[str], path: Path) -> Path:
    """Pack the record folders `records` (traces/<study>/<hash>, as the results table names them) found under
    `traces_dir`, atomically."""
    files = sorted(f for rec in records for f in (traces_dir / Path(rec).relative_to("traces")).iterdir()
                   if f.is_file())
    studies = sorted({Path(rec).parent.name for rec in records})
    logs = [traces_dir / study / CANARY for study in studies if (traces_dir / study / CANARY).is_file()]
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w:xz", format=tarfile.USTAR_FORMAT, preset=9) as tar:
        for f in logs + files:
            data = f.read_bytes()
            inside = f.parent.name if f.name == CANARY else f"{f.parent.parent.name}/{f.parent.name}"
            info = tarfile.TarInfo(f"traces/{inside}/{f.name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return path


def unpack(path: Path, dest: Path) -> Path:
    """Unpack into dest (dest/traces/<study>/<hash>/...); returns the traces folder."""
    with tarfile.open(path, "r:xz") as tar:
        tar.extractall(dest, filter="data")
    return dest / "traces"
