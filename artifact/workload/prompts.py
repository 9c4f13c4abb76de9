"""Prompts of exactly the requested token length, from verified evaluation corpora."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.config import BadInput
from .corpus import corpus_items, corpus_text

PREFIX_MARGIN = 256   # tokens tokenized past the ones returned: a cut text changes only its last few tokens


def text_ids(tokenizer, text: str, key: str, cache: dict | None = None, n_tokens: int | None = None) -> list[int]:
    """The first `n_tokens` token ids of a corpus text tokenized whole (all of them when None), no special tokens.

    Only as much text as those tokens need is tokenized: a prefix cut at a line end, PREFIX_MARGIN tokens longer
    than asked, grown until it is long enough (tokenization is local, so a prefix's tokens before the cut are the
    whole text's). Tokenizing all of WikiText-2 test (302k tokens) in the process slowed every later `generate`
    by about 5 % on a CPU; a cell's prompts need a few thousand. With a `cache` (the session's) the longest
    prefix tokenized so far is kept per corpus and tokenizer."""
    k = (key, tokenizer.name_or_path, len(tokenizer))
    ids, complete = (cache or {}).get(k, ([], False))
    chars = 8 * ((n_tokens or 0) + PREFIX_MARGIN)
    while not complete and (n_tokens is None or len(ids) < n_tokens + PREFIX_MARGIN):
        cut = len(text) if n_tokens is None or chars >= len(text) else text.rfind("\n", 0, chars) + 1 or chars
        ids = tokenizer(text[:cut], add_special_tokens=False)["input_ids"]
        complete, chars = cut >= len(text), 2 * chars
    if cache is not None:
        cache[k] = (ids, complete)
    return ids if n_tokens is None else ids[:n_tokens]


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
        need = batch_size * body
        ids = text_ids(tokenizer, corpus_text(data_dir, workload), workload.name, token_cache, n_tokens=need)
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
