#!/usr/bin/env bash
# The CUDA-GPU validation of the power path (issue 3), as run on a lent H100: NVML probe, synthetic
# Llama-3.1-8B fp16 cells with meter=nvml, sampler on/off A/B, and the rope_scaling slowdown study.
# Usage: scripts/gpu_power_validation.sh OUTDIR [MODELS_DIR]   (run from the repo root)
set -uo pipefail
out=${1:?outdir}; models=${2:-models}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 scripts/nvml_probe.py --seconds 3 | tee "$out/nvml_probe_idle.txt"
python3 scripts/nvml_probe.py --seconds 3 --load | tee "$out/nvml_probe_load.txt"
python3 -m artifact.meter --meter nvml --seconds 3 | tee "$out/meter.txt"
python3 -m artifact.run -m model=llama31-8b model.weights=synthetic quant=fp16 ppl=off meter=nvml \
  batch_size=1,32 seq_len=128,1024 warmup=1 min_reps=3 min_seconds=5 study=h100-power \
  models_dir="$models" traces_dir="$out/traces" tracking.enabled=false 2>&1 | tee "$out/cells.txt"
python3 -m artifact.bench --model llama31-8b --weights synthetic --quant fp16 --batch-size 1 --seq-len 128 \
  --rounds 6 --reps 3 --compare sampler --meter nvml --models-dir "$models" 2>&1 | tee "$out/sampler_ab.txt"
python3 scripts/rope_slowdown.py 2>&1 | tee "$out/rope.txt"
