"""The raw records of a shipped profile as one small archive in git (paper/<profile>/records.tar.xz), so that a
fresh clone rebuilds every figure, table and claim without hardware and without a DVC remote.

It holds traces/<study>/<cell_hash>/ of each reported cell: config.yaml, result.json, reps.csv and, with a meter,
power.csv and marks.csv (no weights), and each study's drift canary log (canary.jsonl). It is written
deterministically (sorted members, no times, no owners), so
the same records give the same bytes."""
from __future__ import annotations

import io
import json
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


def restore(paper_dir: Path, traces_dir: Path) -> int:
    """Put every shipped profile's records (paper/*/records.tar.xz) that traces_dir lacks into it, so a fresh clone
    counts them as measured and its traces/ holds what the committed dvc.lock describes. A record folder that exists
    is never touched (a new one appears whole, by a rename); each study's canary log becomes the union of its lines
    and the archives', in time order. Returns how many records were added."""
    records: dict[Path, dict[str, bytes]] = {}
    logs: dict[Path, set[str]] = {}
    for path in sorted(Path(paper_dir).glob(f"*/{NAME}")):
        with tarfile.open(path, "r:xz") as tar:
            for m in tar.getmembers():
                parts, data = Path(m.name).parts, tar.extractfile(m).read()  # traces/<study>/[<hash>/]<file>
                if len(parts) == 3 and parts[2] == CANARY:
                    logs.setdefault(traces_dir / parts[1] / CANARY, set()).update(data.decode().splitlines())
                elif not (traces_dir / parts[1] / parts[2]).exists():
                    records.setdefault(traces_dir / parts[1] / parts[2], {})[parts[3]] = data
    for record, files in records.items():
        tmp = record.with_name(f".tmp-restore-{record.name}")
        tmp.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        tmp.rename(record)
    for log, lines in logs.items():
        if log.is_file():
            lines |= set(log.read_text().splitlines())
        ordered = sorted((line for line in lines if line.strip()), key=lambda line: (json.loads(line)["t_wall"], line))
        tmp = log.with_name(log.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in ordered))
        tmp.replace(log)
    return len(records)
