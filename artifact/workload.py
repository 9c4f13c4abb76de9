"""Prompts of exactly the requested token length, from verified evaluation corpora."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .config import BadInput

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


def text_ids(tokenizer, text: str, key: str, cache: dict | None = None) -> list[int]:
    """Token ids of a whole corpus text; with a `cache` (the session's), computed once per corpus and tokenizer."""
    k = (key, tokenizer.name_or_path, len(tokenizer))
    if cache is None:
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    if k not in cache:
        cache[k] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return cache[k]


def bos_id(tokenizer) -> int | None:
    """The BOS id when this tokenizer's own policy is to prepend one, else None."""
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    return bos if bos is not None and probe and probe[0] == bos else None


def build_prompts(tokenizer, data_dir: Path, workload, batch_size: int, in_len: int, *,
                  token_cache: dict | None = None) -> tuple[torch.Tensor, dict]:
    """`batch_size` distinct prompts of exactly `in_len` tokens (BOS counted when the tokenizer adds one).

    Returns the ids (batch, in_len) and a description for the record."""
    bos = bos_id(tokenizer)
    body = in_len - (1 if bos is not None else 0)
    rows: list[list[int]] = []
    if workload.format == "text":
        ids = text_ids(tokenizer, corpus_text(data_dir, workload), workload.name, token_cache)
        need = batch_size * body
        if need > len(ids):
            raise BadInput(f"batch_size*input tokens = {need} is more than {workload.name} holds "
                              f"({len(ids)} tokens); lower batch_size or seq_len")
        rows = [ids[i * body:(i + 1) * body] for i in range(batch_size)]
        how = "consecutive non-overlapping windows from the start of the test text (CRLF->LF)"
    else:
        for text in corpus_items(data_dir, workload):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) >= body:
                rows.append(ids[:body])
                if len(rows) == batch_size:
                    break
        if len(rows) < batch_size:
            raise BadInput(f"batch_size={batch_size} is more than the {len(rows)} {workload.name} items "
                              f"with >= {body} tokens; lower batch_size or seq_len")
        how = "first items (file order) with at least in_len tokens, each truncated to in_len"
    if bos is not None:
        rows = [[bos] + r for r in rows]
    prompts = torch.tensor(rows, dtype=torch.long)
    assert prompts.shape == (batch_size, in_len)
    return prompts, {"workload": workload.name, "selection": how, "bos_prepended": bos is not None,
                     "distinct_prompts": len({tuple(r) for r in rows})}
