"""The raw records of a shipped profile as one small archive in git (paper/<profile>/records.tar.xz), so that a
fresh clone rebuilds every figure, table and claim without hardware and without a DVC remote.

It holds traces/<study>/<cell_hash>/ of each reported cell: config.yaml, result.json, reps.csv and, with a meter,
power.csv and marks.csv (no weights), and each study's drift canary points of those records' load groups
(canary.jsonl). It is written
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
    members = []
    for study in sorted({Path(rec).parent.name for rec in records}):
        mine = {Path(rec).name for rec in records if Path(rec).parent.name == study}
        lines = canary_lines(traces_dir / study / CANARY, mine)  # this profile's points only
        if lines:
            members.append((f"traces/{study}/{CANARY}", "".join(line + "\n" for line in lines).encode()))
    members += [(f"traces/{f.parent.parent.name}/{f.parent.name}/{f.name}", f.read_bytes()) for f in files]
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w:xz", format=tarfile.USTAR_FORMAT, preset=9) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return path


def canary_lines(log: Path, cells: set[str], extra: set[str] = frozenset()) -> list[str]:
    """The lines of a study's canary log (and `extra` lines) of load groups that measured one of `cells`, in time
    order: points of groups whose records are gone are dropped."""
    lines = set(extra) | (set(log.read_text().splitlines()) if log.is_file() else set())
    kept = [line for line in lines if line.strip() and cells & set(json.loads(line).get("cells", []))]
    return sorted(kept, key=lambda line: (json.loads(line)["t_wall"], line))


def unpack(path: Path, dest: Path) -> Path:
    """Unpack into dest (dest/traces/<study>/<hash>/...); returns the traces folder."""
    with tarfile.open(path, "r:xz") as tar:
        tar.extractall(dest, filter="data")
    return dest / "traces"


def restore(paper_dir: Path, traces_dir: Path) -> int:
    """Put every shipped profile's records (paper/*/records.tar.xz) that traces_dir lacks into it, so a fresh clone
    counts them as measured and its traces/ holds what the committed dvc.lock describes. A record folder that exists
    is never touched (a new one appears whole, by a rename); each study's canary log becomes the union of its lines
    and the archives', in time order, less the points of groups with no record left. Returns how many records were
    added."""
    records: dict[Path, dict[str, bytes]] = {}
    logs: dict[Path, set[str]] = {}
    for path in sorted(Path(paper_dir).glob(f"*/{NAME}")):
        with tarfile.open(path, "r:xz") as tar:
            for m in tar.getmembers():
                parts = Path(m.name).parts  # traces/<study>/[<hash>/]<file>
                if len(parts) == 3 and parts[2] == CANARY:
                    lines = tar.extractfile(m).read().decode().splitlines()
                    logs.setdefault(traces_dir / parts[1] / CANARY, set()).update(lines)
                elif not (traces_dir / parts[1] / parts[2]).exists():  # read only what is missing
                    records.setdefault(traces_dir / parts[1] / parts[2], {})[parts[3]] = tar.extractfile(m).read()
    for record, files in records.items():
        tmp = record.with_name(f".tmp-restore-{record.name}")
        tmp.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        tmp.rename(record)
    for log in set(logs) | set(Path(traces_dir).glob(f"*/{CANARY}")):
        cells = {p.name for p in log.parent.iterdir() if (p / "result.json").is_file()}
        lines = canary_lines(log, cells, logs.get(log, set()))
        if not lines:  # no group with a record left: no log, as in a clone
            log.unlink(missing_ok=True)
            continue
        tmp = log.with_name(log.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(log)
    return len(records)
