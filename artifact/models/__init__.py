"""The model axis: architectures with shape-faithful random weights, checkpoints (hub, GGUF conversion, GPTQ), the
bitsandbytes check, and loading a cell's model in its precision."""
