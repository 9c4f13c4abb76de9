"""GPTQ int4: quantize a checkpoint once from declared calibration text, then load it with an int4 kernel.

Two tools: gptqmodel (current; what transformers 5 uses for GPTQ) and auto-gptq (archived; the paper's
JetPack 6.0 / torch 2.3 stack). Both need CUDA here. Where a tool cannot run, the run stops with one line
saying why: there is no fallback to another method."""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import io
import os
import random
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from ..core.config import BadInput, to_container
from ..workload.corpus import corpus_items, corpus_text

MODULE = {"gptqmodel": "gptqmodel", "auto-gptq": "auto_gptq"}
INSTALL = {
    "gptqmodel": "install it on a CUDA host with `make gptq` (gptqmodel 7.7.0 and what it imports)",
    "auto-gptq": "it is the legacy path of the paper's stack (JetPack 6.0, torch 2.3, transformers 4.4x: "
                 "pip install auto-gptq==0.7.1 there); on this stack use quant=gptq-int4 (gptqmodel)",
}


def check_available(quant, device: str) -> str:
    """One-line BadInput unless this quant's GPTQ tool can run on `device`. Returns the tool's version."""
    tool = quant.gptq.tool
    if not device.startswith("cuda"):
        raise BadInput(f"quant={quant.name} needs a CUDA GPU: GPTQ quantization and its int4 kernels ({tool}) "
                          f"run on CUDA only, and this run's device is {device}; use quant=int4 (bitsandbytes nf4)")
    return _import_tool(tool)


def _import_tool(tool: str) -> str:
    if importlib.util.find_spec(MODULE[tool]) is None:
        raise BadInput(f"quant.gptq.tool={tool} is not installed; {INSTALL[tool]}")
    _pin_process_settings()
    try:
        with _quiet():  # its banner: the versions are in the record
            importlib.import_module(MODULE[tool])
    except Exception as e:  # auto-gptq on transformers 5: "cannot import name 'no_init_weights'"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BadInput(f"quant.gptq.tool={tool} cannot be imported here ({type(e).__name__}: {first}); {INSTALL[tool]}")
    try:
        return version(tool)
    except PackageNotFoundError:
        return "unknown"


def _pin_process_settings() -> None:
    """gptqmodel changes process settings on import unless they are set. Set them first, so that the cells
    measured after it in the same process run as the ones before it:
    - PYTORCH_ALLOC_CONF: it would switch the CUDA caching allocator to expandable segments; keep PyTorch's
      default (or the user's PYTORCH_CUDA_ALLOC_CONF).
    - GPTQMODEL_CPU_WORKERS: its CPU pool gets (cores + 1) // 2 workers but its model loader asks for 2, so on
      a 2-core host it stops with "Virtual pool 'model_loader:cpu' requests 2 workers but parent 'cpu' only
      has 1"; give the pool the 2 it needs."""
    os.environ.setdefault("PYTORCH_ALLOC_CONF", os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:False"))
    if (os.cpu_count() or 1) < 3:
        os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")


# ---------------------------------------------------------------- calibration

def calibration_windows(tokenizer, cell) -> tuple[list[list[int]], dict]:
    """`samples` non-overlapping windows of `tokens` tokens, drawn with `seed` from the cell's calibration corpus
    (each LongBench item is cut into windows on its own, so no window spans two items). Returns the windows and
    what the provenance records of them."""
    c = cell.quant.gptq.calibration
    workload, data_dir = cell.calibration_corpus, cell.data_dir
    texts = corpus_items(data_dir, workload) if workload.format == "json-input" else [corpus_text(data_dir, workload)]
    pool = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        pool += [ids[i:i + c.tokens] for i in range(0, len(ids) - c.tokens + 1, c.tokens)]
    if len(pool) < c.samples:
        raise BadInput(f"quant.gptq.calibration: corpus {c.corpus} gives {len(pool)} windows of {c.tokens} tokens, "
                          f"fewer than samples={c.samples}; lower samples or tokens")
    windows = random.Random(c.seed).sample(pool, c.samples)
    digest = hashlib.sha256(",".join(map(str, (t for w in windows for t in w))).encode()).hexdigest()
    return windows, {"corpus": c.corpus, "file": workload.file, "sha256": workload.sha256, "samples": c.samples,
                     "tokens": c.tokens, "seed": c.seed, "windows_available": len(pool),
                     "token_ids_sha256": digest, "note": "not the perplexity test text"}


# ---------------------------------------------------------------- quantize and load

def quantize(source, tokenizer, quant, windows: list[list[int]], out: Path) -> dict:
    """Quantize `source` (checkpoints.Weights: a folder or hub id and its load kwargs) with the quant's tool and
    write the checkpoint and the tokenizer to `out`. The tool's own output goes to out/quantize.log. Returns the
    settings the tool was given."""
    g = quant.gptq
    examples = [{"input_ids": w, "attention_mask": [1] * len(w)} for w in windows]
    settings = {k: v for k, v in to_container(g).items()
                if k in ("bits", "group_size", "desc_act", "sym", "damp_percent")}
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "quantize.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), \
            _explain_pool_error():
        if g.tool == "gptqmodel":
            from gptqmodel import GPTQModel, QuantizeConfig
            model = GPTQModel.load(str(source.location), QuantizeConfig(**settings), **source.kwargs)
            model.quantize(examples, batch_size=1, tokenizer=tokenizer)
            model.save(str(out))
        else:
            from auto_gptq import AutoGPTQForCausalLM, BaseQuantizeConfig
            model = AutoGPTQForCausalLM.from_pretrained(str(source.location), BaseQuantizeConfig(**settings),
                                                        torch_dtype=torch.float16, **source.kwargs)
            model.quantize([{k: torch.tensor([v]) for k, v in e.items()} for e in examples], batch_size=1)
            model.save_quantized(str(out), use_safetensors=True)
    tokenizer.save_pretrained(out)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return settings


def load(folder: Path, quant, device: str) -> torch.nn.Module:
    """The quantized checkpoint on `device` with the configured int4 kernel, as a Hugging Face model."""
    g = quant.gptq
    with _explain_pool_error(), _quiet():  # kernel selection chatter: the record has the layer types
        if g.tool == "gptqmodel":
            from gptqmodel import BACKEND, GPTQModel
            backend = {"marlin": BACKEND.MARLIN, "exllama_v2": BACKEND.EXLLAMA_V2, "triton": BACKEND.TRITON,
                       "torch": BACKEND.TORCH, "auto": BACKEND.AUTO}[g.kernel]
            wrapped = GPTQModel.load(str(folder), device=device if ":" in device else f"{device}:0", backend=backend)
        else:
            from auto_gptq import AutoGPTQForCausalLM
            kernel = {"marlin": {"use_marlin": True}, "triton": {"use_triton": True},
                      "torch": {"disable_exllama": True, "disable_exllamav2": True}}.get(g.kernel, {})
            wrapped = AutoGPTQForCausalLM.from_quantized(str(folder), device=device, use_safetensors=True, **kernel)
    return wrapped.model


@contextlib.contextmanager
def _quiet():
    """The tools print banners, progress bars and kernel choices; a run prints one line per cell."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


@contextlib.contextmanager
def _explain_pool_error():
    try:
        yield
    except ValueError as e:
        if "Virtual pool" not in str(e):
            raise
        raise BadInput(f"gptqmodel cannot size its worker pools on this host ({e}); "
                          f"set GPTQMODEL_CPU_WORKERS=2 or more") from e
