#!/usr/bin/env bash
# What scripts/gpu_run.sh needs on a lent CUDA machine that has its own torch but no package registry, built here:
#   .whl/                     the wheels that machine's image lacks, at this package's pins (CPython 3.12, x86-64)
#   .devcarry/bundle.tar.xz   the stand-in tokenizer (the embedded model converted, its weights left out) and the
#                             corpora as data/ (WikiText-2, LongBench)
# The image has torch, accelerate, safetensors, tokenizers, huggingface-hub, numpy, psutil, pyyaml, matplotlib and
# nvidia-ml-py (the device tool's KINDS.md lists them). MLflow is not carried: cells there run with
# tracking.enabled=false and the records are logged here when a run resumes from them.
# Usage (repo root, after make setup): scripts/device_carry.sh [DATA_DIR]   (default $ARTIFACT_DATA_DIR or ../shared/data)
# Then: device run with carry [".whl", ".devcarry"] and command `scripts/gpu_run.sh SECONDS COMMAND...`.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-${ARTIFACT_DATA_DIR:-../shared/data}}
[ -f "$data/wikitext-2-raw-v1/wiki.test.raw" ] || { echo "error: no WikiText-2 under $data" >&2; exit 2; }
py=.venv/bin/python
[ -x $py ] || { echo "error: no .venv: run make setup first" >&2; exit 2; }
pin() { grep -o "\"$1==[^\"]*\"" pyproject.toml | tr -d '"'; }
rm -rf .whl && mkdir -p .whl .devcarry
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "$(pin transformers)" "$(pin bitsandbytes)" "$(pin hydra-core)" \
  "$(pin omegaconf)"
$py -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3   # an sdist only: built here, pure Python
$py -c "from pathlib import Path; from artifact import checkpoints; from artifact.config import load_group
print(checkpoints.converted_gguf_dir(load_group('model', 'smollm2-135m'), Path('models')))"
tar cJf .devcarry/bundle.tar.xz --exclude=model.safetensors models/smollm2-135m \
  -C "$(cd "$data" && pwd)" --transform 's,^\(wikitext-2-raw-v1\|longbench-v1\),data/\1,' \
  wikitext-2-raw-v1 longbench-v1
ls -l .whl .devcarry/bundle.tar.xz
du -cb .whl .devcarry/bundle.tar.xz | tail -1 | awk '{printf "carry: %.1f MiB of the 64 MiB a call may take\n", $1 / 2^20}'
