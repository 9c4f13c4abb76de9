"""The paper's models as architectures: a conf/model file's `arch` turned into a Hugging Face model of exactly
those shapes, with random weights (speed, memory and power depend on shapes, not values)."""
from __future__ import annotations

import torch

from .config import BadInput, to_container


def synthetic_config(model_cfg):
    from transformers import AutoConfig
    arch = to_container(model_cfg.arch)
    model_type = arch.pop("model_type")
    return AutoConfig.for_model(model_type, **arch)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_param_count(model_cfg, counted: int) -> None:
    """The architecture must build the parameter count the conf file declares (within 0.5 %)."""
    if model_cfg.params and abs(counted - model_cfg.params) > 0.005 * model_cfg.params:
        raise BadInput(f"model {model_cfg.name}: the architecture in conf/model builds {counted:,} parameters, "
                       f"expected {model_cfg.params:,}; fix arch or params")


def build_synthetic(model_cfg, dtype: torch.dtype, device: str, seed: int) -> torch.nn.Module:
    """The exact architecture with random weights, initialised directly on the device (`meta`: shapes only)."""
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(synthetic_config(model_cfg), dtype=dtype)
    check_param_count(model_cfg, count_params(model))
    return model.eval()
