"""`make data`: fetch the evaluation corpora from the Hugging Face hub into data/ and verify them
against the reference checksums of conf/workload. Needs network; nothing else in the package does.
Not exercised offline (no hub is reachable from the CI machines): the checksum check is what tells
whether the fetched text is byte-identical to the reference copies."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .core.config import BadInput, load_group
from .workload.corpus import _verified_bytes


def fetch_wikitext2(target: Path) -> None:
    from datasets import load_dataset
    rows = load_dataset("Salesforce/wikitext", "wikitext-2-raw-v1", split="test")["text"]
    target.write_text("".join(rows), encoding="utf-8")


def fetch_longbench_triviaqa(target: Path) -> None:
    """LongBench v1 ships its tasks as JSON lines inside data.zip (its loading script is remote code,
    which we do not run)."""
    import zipfile

    from huggingface_hub import hf_hub_download
    archive = hf_hub_download("THUDM/LongBench", "data.zip", repo_type="dataset")
    with zipfile.ZipFile(archive) as z:
        lines = z.read("data/triviaqa.jsonl").decode("utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    target.write_text(json.dumps([{"input": r["input"], "answers": r["answers"]} for r in rows], ensure_ascii=False),
                      encoding="utf-8")


FETCHERS = {"wikitext2": fetch_wikitext2, "longbench": fetch_longbench_triviaqa}


def main(argv: list[str] | None = None) -> int:
    """Fetch what is missing (into data/), verify everything, and with --manifest write what was verified
    (the DVC pipeline's first stage: later stages depend on the manifest, not on where the files are)."""
    import argparse

    from .core.config import default_data_dir
    ap = argparse.ArgumentParser(prog="python -m artifact.data")
    ap.add_argument("--root", default=None, help="default: $ARTIFACT_DATA_DIR, else data/, else ../shared/data")
    ap.add_argument("--manifest", default=None, help="write the verified corpora's names and sha256 here")
    args = ap.parse_args(argv)
    root = Path(args.root or default_data_dir())
    failed, manifest = 0, {}
    for name, fetch in FETCHERS.items():
        wl = load_group("workload", name)
        target = root / wl.file
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            print(f"fetching {name} -> {target}", flush=True)
            try:
                fetch(target)
            except Exception as e:  # no network, hub down, dataset moved: say so in one line
                target.unlink(missing_ok=True)
                failed += 1
                print(f"error: could not fetch {name} from the Hugging Face hub ({type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}); set ARTIFACT_DATA_DIR to a folder holding "
                      f"{wl.file} instead", file=sys.stderr)
                continue
        try:
            _verified_bytes(str(target), wl.sha256, wl.sha256_raw)
            print(f"{target}: checksum ok")
            manifest[name] = {"file": wl.file, "sha256": wl.sha256}
        except BadInput as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
    if failed:
        return 1
    if args.manifest:
        Path(args.manifest).parent.mkdir(parents=True, exist_ok=True)
        Path(args.manifest).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
