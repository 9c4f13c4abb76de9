"""The evaluation corpora, read only after their checksums match the reference copies."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..core.config import BadInput

WHERE_TO_GET = ("run `make data` (needs the Hugging Face hub) or point ARTIFACT_DATA_DIR at a folder "
                "holding it (CI and tests use ../shared/data)")


def _verified_bytes(path: str, sha256: str, sha256_raw: str | None) -> bytes:
    """The file's bytes with CRLF normalised to LF, after checking its checksum."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"corpus file {p} is missing; {WHERE_TO_GET}")
    raw = p.read_bytes()
    normalised = raw.replace(b"\r\n", b"\n")
    found = {hashlib.sha256(raw).hexdigest(), hashlib.sha256(normalised).hexdigest()}
    if not found & {sha256, sha256_raw}:
        raise BadInput(f"corpus file {p} has sha256 {hashlib.sha256(raw).hexdigest()}, expected {sha256}; "
                          f"the file is not the reference copy: {WHERE_TO_GET}")
    return normalised


def corpus_text(data_dir: Path, workload) -> str:
    """WikiText-2: the whole test text. Used by prompts (wikitext2) and perplexity."""
    return _verified_bytes(str(data_dir / workload.file), workload.sha256, workload.sha256_raw).decode("utf-8")


def corpus_items(data_dir: Path, workload) -> list[str]:
    """LongBench: the `input` field of every item, in file order."""
    text = corpus_text(data_dir, workload)
    try:
        return [item["input"] for item in json.loads(text)]
    except (ValueError, KeyError, TypeError) as e:
        raise BadInput(f"corpus file {data_dir / workload.file} is not a JSON list of {{'input': ...}}: {e}")
