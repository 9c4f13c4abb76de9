"""The model of a cell: capability checks (can this precision run here?), the quantization config, loading
from the hub, a local folder, the embedded GGUF's conversion, a GPTQ checkpoint, or as synthetic weights of the
exact architecture, and release. Checkpoints that loading reads are made first by artifact.models.checkpoints; the
process keeps the loaded model between cells (artifact.cell.session)."""
from __future__ import annotations

import gc
import time
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import torch

from ..core.config import BadInput, Cell
from ..core.schema import ModelInfo
from . import bnbcheck, checkpoints, gptq
from .architecture import build_synthetic, count_params, quantize_in_memory

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: object
    info: ModelInfo = field(default_factory=dict)
    prepared: dict = field(default_factory=dict)  # provenance.json of the models/ folder it loaded from, if any


def compute_dtype(quant, device: str) -> torch.dtype:
    if quant.dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return TORCH_DTYPES[quant.dtype]


# ---------------------------------------------------------------- can it run here?

def check_quant_supported(quant, device: str) -> None:
    """int8/int4 need bitsandbytes with a backend for this device, GPTQ its tool and CUDA; one line if not."""
    if quant.method == "gptq":
        gptq.check_available(quant, device)
    elif quant.method != "none":
        _check_bnb(quant.name, device)


def _check_bnb(name: str, device: str) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA library bnb cannot find
        raise BadInput(f"quant={name} needs bitsandbytes, which cannot be imported here ({e}); "
                       f"use quant=fp32, fp16 or bf16")
    if device.startswith("cuda"):  # a real 8-bit and 4-bit op on the GPU, in a child (a kernel can exit from C)
        bnbcheck.check(device)
        return
    try:  # a real quantization of a tiny tensor: the CPU backend exists, or it does not
        import bitsandbytes.functional as F
        F.quantize_4bit(torch.randn(64, 64, device=device), quant_type="nf4")
    except Exception as e:
        raise BadInput(f"quant={name} is not supported by bitsandbytes {version('bitsandbytes')} "
                       f"on device={device} ({type(e).__name__}); use quant=fp32, fp16 or bf16")


def quantization_config(quant, device: str):
    from transformers import BitsAndBytesConfig
    if quant.method == "bnb-int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=quant.int8_threshold)
    if quant.method == "bnb-4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant.bnb_4bit_quant_type,
                                  bnb_4bit_use_double_quant=quant.bnb_4bit_double_quant,
                                  bnb_4bit_compute_dtype=compute_dtype(quant, device))
    return None


# ---------------------------------------------------------------- loading

def built_on_device(cell: Cell) -> bool:
    """Synthetic weights are built on the device and need no checkpoint: unquantized anywhere, and quantized by
    bitsandbytes in GPU memory on CUDA. (bitsandbytes on a CPU and GPTQ read a checkpoint.)"""
    if cell.model.weights != "synthetic" or cell.quant.method == "gptq":
        return False
    return cell.quant.method == "none" or cell.device.startswith("cuda")


def _weights(cell: Cell) -> checkpoints.Weights | None:
    """Where this cell's weights load from, made first where they are derived (GGUF conversion, GPTQ
    quantization, fp16 copy of synthetic weights for a CPU quantizer), so that `load_seconds` is loading alone.
    None: built on the device."""
    if cell.quant.method == "gptq":
        folder = checkpoints.gptq_checkpoint(cell)
        return checkpoints.Weights(folder, {}, f"GPTQ checkpoint {folder}")
    if built_on_device(cell):
        return None
    return checkpoints.source_weights(cell)


def _load(cell: Cell, weights: checkpoints.Weights | None) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # one line per cell is the output; a load is timed in the record
    quant, device = cell.quant, cell.device
    dtype = compute_dtype(quant, device)
    info: ModelInfo = {"weights": cell.model.weights, "dtype": str(dtype).replace("torch.", ""),
                       "quant_method": quant.method}
    if weights is None:
        tokenizer, info["tokenizer"] = checkpoints.stand_in_tokenizer(cell)
        info["source"] = f"synthetic (random init on {device}, seed {cell.seed})"
        model = build_synthetic(cell.model, dtype, device, cell.seed)
        qconfig = quantization_config(quant, device)
        if qconfig is not None:
            info["source"] += ", quantized in GPU memory by bitsandbytes"
            model = quantize_in_memory(model, qconfig, device)
        return Loaded(model, tokenizer, info)
    info["source"] = weights.description
    location = weights.location
    prepared = checkpoints.provenance_of(location) if isinstance(location, Path) else {}
    if quant.method == "gptq":  # the folder holds the tokenizer it was calibrated with
        info["tokenizer"] = str(location)
        model = gptq.load(location, quant, device).eval()
        return Loaded(model, AutoTokenizer.from_pretrained(location), info, prepared)
    tokenizer, info["tokenizer"] = checkpoints.tokenizer_for(cell, weights)
    qconfig = quantization_config(quant, device)
    device_map = {"": device} if device.startswith("cuda") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, quantization_config=qconfig, device_map=device_map,
            use_safetensors=True, trust_remote_code=False, **weights.kwargs)
    if qconfig is None and device_map is None:
        model = model.to(device)
    _page_in(model)
    return Loaded(model.eval(), tokenizer, info, prepared)


def _page_in(model: torch.nn.Module) -> None:
    """safetensors weights on the CPU are memory-mapped and read on first touch: touch them now, so that
    the first generation's memory increase is the run's, not the loading's."""
    with torch.inference_mode():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.device.type == "cpu" and t.numel():
                t.detach().flatten()[:: max(1, 4096 // t.element_size())].sum()


def load(cell: Cell) -> Loaded:
    """The cell's model, loaded now (artifact.cell.session reuses it while model, quant and device stay the same).
    Derived checkpoints are made before the load timer starts."""
    start = time.perf_counter()
    weights = _weights(cell)
    built = time.perf_counter()
    loaded = _load(cell, weights)
    loaded.info["load_seconds"] = round(time.perf_counter() - built, 3)
    loaded.info["prepare_seconds"] = round(built - start, 3)
    loaded.info["params"] = count_params(loaded.model)
    loaded.info["weight_bytes"] = int(loaded.model.get_memory_footprint())
    loaded.info["layer_types"] = sorted({type(m).__name__ for m in loaded.model.modules()
                                         if "Linear" in type(m).__name__})
    return loaded


def release() -> None:
    """Free what a dropped model held (Python garbage and, on CUDA, the allocator's cached blocks)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
