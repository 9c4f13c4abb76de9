"""A second run measured into a traces folder of its own (`artifact.reproduce --traces-dir traces-rerun`) shipped as its
own study: each finished record of TRACES/FROM_STUDY copied to traces/TO_STUDY/<cell hash>/ with `study` in its
config.yaml set to TO_STUDY (not part of a cell's identity) and `moved_from` in its result.json naming where it was
measured; its files otherwise as they are. The study's drift canary points go with it. A record already there is
kept. Issue 22 item 2; a later second run measures into the study itself (conf/experiment/batch_sweep_rerun.yaml).
Usage (repo root): python scripts/ship_rerun.py traces-rerun batch_sweep batch_sweep_rerun"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from artifact.core.atomic import atomic_folder
from artifact.cell.canary import LOG


def ship(source: Path, to_study: str, traces: Path = Path("traces")) -> int:
    shipped = 0
    for result_path in sorted(source.glob("*/result.json")):
        folder, dest = result_path.parent, traces / to_study / result_path.parent.name
        result = json.loads(result_path.read_text())
        if dest.exists() or result.get("status") not in ("ok", "oom"):
            continue
        config = yaml.safe_load((folder / "config.yaml").read_text())
        with atomic_folder(dest, prefix=f".tmp-{folder.name}-ship-") as tmp:
            for f in folder.iterdir():
                if f.name not in ("config.yaml", "result.json"):
                    shutil.copy2(f, tmp / f.name)
            (tmp / "config.yaml").write_text(yaml.safe_dump({**config, "study": to_study}, sort_keys=False))
            (tmp / "result.json").write_text(json.dumps({**result, "moved_from": str(folder)}, indent=2))
        shipped += 1
    canary, log = source / LOG, traces / to_study / LOG
    if canary.is_file():
        have = set(log.read_text().splitlines()) if log.is_file() else set()
        new = [line for line in canary.read_text().splitlines() if line.strip() and line not in have]
        with open(log, "a") as f:
            f.writelines(line + "\n" for line in new)
    return shipped


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.splitlines()[-1])
    traces_dir, from_study, to_study = sys.argv[1:]
    print(ship(Path(traces_dir) / from_study, to_study), "records shipped to", Path("traces") / to_study)
