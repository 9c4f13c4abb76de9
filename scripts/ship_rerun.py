"""A second run measured into a traces folder of its own (`artifact.reproduce --traces-dir traces-rerun`) shipped as its
own study: each finished record of TRACES/FROM_STUDY copied to traces/TO_STUDY/<cell hash>/ with `study` in its
config.yaml set to TO_STUDY (not part of a cell's identity) and `moved_from` in its result.json naming where it was
measured; its files otherwise as they are. The study's drift canary points go with it. A record already there is
kept. Issue 22 item 2; a later second run measures into the study itself (conf/experiment/batch_sweep_rerun.yaml).
Usage (repo root): python scripts/ship_rerun.py traces-rerun batch_sweep batch_sweep_rerun"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from artifact.cell.canary import LOG
from artifact.store.record import CellStore


def ship(source: Path, to_study: str, traces: Path = Path("traces")) -> int:
    shipped, store = 0, CellStore(traces, to_study)
    for result_path in sorted(source.glob("*/result.json")):
        folder = result_path.parent
        if store.path(folder.name).exists() or json.loads(result_path.read_text()).get("status") not in ("ok", "oom"):
            continue
        config = yaml.safe_load((folder / "config.yaml").read_text())
        store.adopt(folder.name, folder, {**config, "study": to_study}, mark={"moved_from": str(folder)})
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
