#!/usr/bin/env bash
# What scripts/gpu_run.sh needs on a lent CUDA machine that has its own torch but no package registry, built here:
#   .devcarry/site.tar.xz     the packages that machine's image lacks, at this package's pins (CPython 3.12, x86-64),
#                             unpacked from their wheels (all of them install by unpacking: no scripts are needed)
#                             and trimmed of what a cell there never loads: bitsandbytes' libraries for ROCm and
#                             other CUDA majors than the device torch's (CUDA_MAJOR, default 13). With --ray, also
#                             Ray and the Hydra Ray launcher (issue 13), less Ray's Java jars, dashboard web client
#                             and RL/tune/train/serve/data/llm libraries: Ray's wheel alone (76 MiB) is over the
#                             64 MiB a call may carry, trimmed and compressed it is about 20 MiB
#   .devcarry/bundle.tar.xz   the stand-in tokenizer (the embedded model converted, its weights left out) and the
#                             corpora as data/ (WikiText-2, LongBench)
# The image has torch, accelerate, safetensors, tokenizers, huggingface-hub, numpy, psutil, pyyaml, matplotlib,
# nvidia-ml-py and Ray's other dependencies (click, filelock, msgpack, protobuf, requests, aiohttp, grpcio): the device
# tool's KINDS.md lists them. MLflow is not carried: cells there run with tracking.enabled=false and the records are
# logged here when a run resumes from them.
# Usage (repo root, after make setup; --ray after make scale): scripts/device_carry.sh [--ray] [DATA_DIR]
#   (DATA_DIR: default $ARTIFACT_DATA_DIR or ../shared/data; PY_VERSION=3.11 DEVCARRY=/tmp/x builds the same tree for
#   this machine's Python elsewhere, to check it here)
# Then: device run with carry [".devcarry"] and command `scripts/gpu_run.sh SECONDS COMMAND...`.
set -euo pipefail
cd "$(dirname "$0")/.."
ray=0
if [ "${1:-}" = --ray ]; then ray=1; shift; fi
data=${1:-${ARTIFACT_DATA_DIR:-../shared/data}}
cuda_major=${CUDA_MAJOR:-13}
py_version=${PY_VERSION:-3.12}
out=${DEVCARRY:-.devcarry}
[ -f "$data/wikitext-2-raw-v1/wiki.test.raw" ] || { echo "error: no WikiText-2 under $data" >&2; exit 2; }
py=.venv/bin/python
[ -x $py ] || { echo "error: no .venv: run make setup first" >&2; exit 2; }
pin() {   # this package's pin of $1 for the target Python (pyproject pins some per Python version, with markers)
  $py - "$1" "$py_version" <<'EOF'
import sys
from packaging.requirements import Requirement
from artifact.platform import requirements
name, version = sys.argv[1:]
target = {"python_version": version, "python_full_version": version + ".0", "platform_machine": "x86_64",
          "platform_release": "", "sys_platform": "linux", "platform_system": "Linux", "implementation_name": "cpython",
          "os_name": "posix", "extra": ""}
[pin] = [r for r in map(Requirement, requirements(("scale",), target)) if r.name == name]
print(pin.name + str(pin.specifier))
EOF
}
installed() { echo "$1==$($py -c "import importlib.metadata as m; print(m.version('$1'))")"; }  # as tested here
want=("$(pin transformers)" "$(pin bitsandbytes)" "$(pin hydra-core)" "$(pin omegaconf)")
if [ $ray = 1 ]; then
  $py -c "import ray, hydra_plugins.hydra_ray_launcher" 2>/dev/null || { echo "error: no Ray in .venv: run make scale first" >&2; exit 2; }
  want+=("$(pin hydra-ray-launcher)" "$(pin ray)")   # Ray itself, without the [default] extras: the image has them
  for dep in jsonschema jsonschema-specifications referencing rpds-py; do want+=("$(installed $dep)"); done
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wheels" "$work/site" "$out"
$py -m pip download -q --no-deps --only-binary=:all: --python-version "$py_version" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$work/wheels" "${want[@]}"
$py -m pip wheel -q --no-deps -w "$work/wheels" antlr4-python3-runtime==4.9.3   # an sdist only: pure Python
$py - "$work/site" "$work"/wheels/*.whl <<'EOF'   # unpacked as pip would: executables stay executable (Ray's servers)
import os, sys, zipfile
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            path = z.extract(info, sys.argv[1])
            if (info.external_attr >> 16) & 0o111:
                os.chmod(path, 0o755)
EOF
find "$work/site/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name 'libbitsandbytes_cpu.so' \
  ! -name "libbitsandbytes_cuda${cuda_major}*.so" -delete
ls "$work/site/bitsandbytes"/libbitsandbytes_cuda"${cuda_major}"*.so >/dev/null   # some library for that CUDA is left
if [ $ray = 1 ]; then
  (cd "$work/site/ray" && rm -rf jars dashboard/client rllib tune train serve data llm)
fi
XZ_OPT=-9 tar cJf "$out/site.tar.xz" -C "$work/site" .
$py -c "from pathlib import Path; from artifact.models import checkpoints; from artifact.core.config import load_group
print(checkpoints.converted_gguf_dir(load_group('model', 'smollm2-135m'), Path('models')))"
tar cJf "$out/bundle.tar.xz" --exclude=model.safetensors models/smollm2-135m \
  -C "$(cd "$data" && pwd)" --transform 's,^\(wikitext-2-raw-v1\|longbench-v1\),data/\1,' \
  wikitext-2-raw-v1 longbench-v1
printf '%s\n' "${want[@]}" antlr4-python3-runtime==4.9.3 > "$out/site.txt"
ls -l "$out"
du -cb "$out" | tail -1 | awk '{printf "carry: %.1f MiB of the 64 MiB a call may take\n", $1 / 2^20}'
