"""Move records made before the hardware class joined the cell identity (issue 11) to their new hashes, so
that a resumed sweep does not measure them again. The hardware class is read from each record's provenance
(gpu_name for a CUDA cell, cpu_model for a CPU cell); result.json gains `hardware` and `rehashed_from`, and
`implied_by` links follow. Usage: python scripts/rehash_records.py TRACES_DIR  (prints what it moves)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from artifact.store.record import cell_hash


def main(traces: Path) -> int:
    moves: dict[str, str] = {}
    for result_path in sorted(traces.glob("*/*/result.json")):
        result = json.loads(result_path.read_text())
        if "hardware" in result:
            continue
        prov, device = result.get("provenance") or {}, result.get("device", "cpu")
        hardware = prov.get("gpu_name") if device.startswith("cuda") else prov.get("cpu_model")
        if not hardware:
            print(f"skipped {result_path.parent}: no hardware in its provenance", file=sys.stderr)
            continue
        config = yaml.safe_load((result_path.parent / "config.yaml").read_text())
        new = cell_hash(config, device, hardware)
        moves[result["cell_hash"]] = new
        result.update(cell_hash=new, hardware=hardware, rehashed_from=result["cell_hash"])
        result_path.write_text(json.dumps(result, indent=2))
        result_path.parent.rename(result_path.parent.with_name(new))
        print(f"{result_path.parent} -> {new}")
    for result_path in traces.glob("*/*/result.json"):  # OOM-by-implication links follow their records
        result = json.loads(result_path.read_text())
        if result.get("implied_by") in moves:
            result["implied_by"] = moves[result["implied_by"]]
            result_path.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
