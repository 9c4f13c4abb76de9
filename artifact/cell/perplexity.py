"""Perplexity by a declared method: exp(total NLL / scored tokens) with sliding windows."""
from __future__ import annotations

import math
import time

import torch

from ..core.schema import Perplexity
from ..workload.prompts import bos_id


def stride_windows(n_tokens: int, window: int, stride: int, has_bos: bool) -> list[tuple[int, int, int]]:
    """(begin, end, n_scored) for each window over token positions [0, n_tokens).

    A window scores the tokens it is the first to cover, except a token with no context inside the
    window (its first token, unless a BOS is prepended): so with stride == window (disjoint windows)
    each window's first token goes unscored, and the record's scored-token count says so."""
    spans, prev_end = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + window, n_tokens)
        first_scored = max(prev_end, begin + (0 if has_bos else 1))
        if end > first_scored:
            spans.append((begin, end, end - first_scored))
        prev_end = end
        if end == n_tokens:
            break
    return spans


def perplexity(model, tokenizer, ids: list[int], ppl, device: str) -> Perplexity:
    """Perplexity of the corpus `ppl.corpus`, given as the token ids of its text tokenized whole (no special
    tokens; the first ppl.max_tokens only where set), by the declared method: strided windows of ppl.window
    tokens every ppl.stride."""
    if ppl.max_tokens:
        ids = ids[:ppl.max_tokens]
    bos = bos_id(tokenizer) if ppl.add_bos else None
    tokens = torch.tensor(ids, dtype=torch.long, device=device)
    total_nll, total_scored = 0.0, 0
    start = time.perf_counter()
    body = ppl.window - (1 if bos is not None else 0)  # a prepended BOS takes one place of the window
    for begin, end, scored in stride_windows(len(ids), body, ppl.stride, bos is not None):
        window = tokens[begin:end]
        if bos is not None:
            window = torch.cat([torch.tensor([bos], device=device), window])
        with torch.inference_mode():
            logits = model(window.unsqueeze(0)).logits[0].float()
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        targets = window[1:]
        nll = -logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
        total_nll += nll[-scored:].sum().item()
        total_scored += scored
    return {"perplexity": math.exp(total_nll / total_scored), "nll_sum": total_nll, "scored_tokens": total_scored,
            "corpus_tokens": len(ids), "method": ppl.method, "window": ppl.window, "stride": ppl.stride,
            "max_tokens": ppl.max_tokens, "add_bos": bos is not None, "corpus": ppl.corpus,
            "text": "raw test file, CRLF->LF, tokenized whole without special tokens",
            "seconds": round(time.perf_counter() - start, 3)}
