"""The checkpoints under models/ that a profile's runs load, made before any cell (the DVC `quantize` stage,
`python -m artifact.quantize`): the embedded GGUF's conversion and GPTQ quantizations."""
from __future__ import annotations

import sys
from pathlib import Path

from ..core.config import BadInput, compose, override_value, resolve, validate
from ..models import checkpoints, gptq
from . import disk, experiments


def _as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def plan(profile: str) -> list[tuple[list[str], bool]]:
    """The overrides of every (model, quant) a profile loads, each with whether a checkpoint for it is
    required (an experiment measures it) or optional (the profile's `quantize` list asks for it for every
    model of the profile; skipped, with the reason, where its tool cannot run here). Each comes with the
    rest of one of its cells' settings (first value of a sweep), so that it is checked as its runs are."""
    wanted: dict[tuple, list] = {}
    for name in experiments.names():
        exp_plan = experiments.plan(name, profile)
        if exp_plan.skip:
            continue
        s = exp_plan.settings
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
    validate(cfg)
    cfg.models_dir = str(models_dir)
    if cfg.quant.method == "gptq":
        cell = resolve(cfg)
        needs = disk.checkpoint_bytes(cell)  # empty where the checkpoint is built
        if needs:
            gptq.check_available(cell.quant, cell.device)  # a tool that cannot run here is said before the disk
            disk.check_space(needs, f"the {cell.model.name} {cell.quant.name} checkpoint")
        return checkpoints.gptq_checkpoint(cell)
    if cfg.model.source == "gguf-package" and cfg.model.weights == "real":
        return checkpoints.converted_gguf_dir(cfg.model, models_dir)
    return None


def prepare(profile: str, models_dir: Path) -> int:
    """Make every checkpoint a profile needs under models/. Prints one line per checkpoint; returns the number
    of required ones that failed."""
    models_dir.mkdir(parents=True, exist_ok=True)
    failed, seen = 0, set()
    for overrides, required in plan(profile):
        cfg = compose(overrides)
        label = cfg.model.name + (f" {cfg.quant.name}" if cfg.quant.method == "gptq" else "")
        try:
            path = prepare_one(cfg, models_dir)
        except BadInput as e:
            failed += required
            print(f"{label}: {'error' if required else 'skipped'}: {e}", file=sys.stderr if required else sys.stdout)
            continue
        if path is not None and path not in seen:
            seen.add(path)
            print(f"{label}: {path} ready", flush=True)
    return failed
