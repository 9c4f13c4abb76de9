"""The paper's models as architectures: a conf/model file's `arch` turned into a Hugging Face model of exactly
those shapes, with random weights (speed, memory and power depend on shapes, not values)."""
from __future__ import annotations

import torch

from ..core.config import BadInput, to_container


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


def quantize_in_memory(model: torch.nn.Module, qconfig, device: str) -> torch.nn.Module:
    """Replace the model's Linear layers by bitsandbytes layers quantized from its own (random) weights, on
    `device` (CUDA): what from_pretrained(quantization_config=qconfig) makes of a checkpoint, without one.

    Transformers' own rules and steps are used: the layers kept unquantized (output embeddings, tied and
    fp32-kept modules, qconfig's skip list), `replace_with_bnb_linear` for the new modules, and each weight
    quantized as its loader does (Int8Params through host memory, Params4bit on the device), one layer at a
    time, so the fp16 weights never exist twice on the device."""
    import bitsandbytes as bnb
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear
    from transformers.quantizers.base import HfQuantizer
    from transformers.quantizers.quantizers_utils import should_convert_module
    skip = HfQuantizer.get_modules_to_not_convert(model, qconfig.llm_int8_skip_modules, model._keep_in_fp32_modules)
    dense = {name: module for name, module in model.named_modules()
             if type(module) is torch.nn.Linear and should_convert_module(name, skip)}
    replace_with_bnb_linear(model, modules_to_not_convert=skip, quantization_config=qconfig)
    for name in list(dense):
        old, new = dense.pop(name), model.get_submodule(name)
        kwargs = dict(new.weight.__dict__)
        if isinstance(new, bnb.nn.Linear8bitLt):
            kwargs.pop("SCB", None)
            new.weight = bnb.nn.Int8Params(old.weight.data.to("cpu"), requires_grad=False, **kwargs).to(device)
        else:
            new.weight = bnb.nn.Params4bit(old.weight.data, requires_grad=False, **kwargs).to(device)
        if old.bias is not None:
            new.bias = old.bias
        del old
    model.is_loaded_in_8bit = qconfig.load_in_8bit
    model.is_loaded_in_4bit = qconfig.load_in_4bit
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return model
