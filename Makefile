# The two commands: `make run` (dashboard + a live SimCLR run on the embedded data) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8501
RUNS   ?= runs

# torch/torchvision pair that installs from PyPI here (see README: other platforms/GPUs)
ifeq ($(shell uname -m),aarch64)
TORCH_PINS ?= torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
endif

.PHONY: venv run app test test-fast bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

run: venv
	OMP_WAIT_POLICY=PASSIVE $(BIN)/workbench demo --address $(HOST) --port $(PORT) --runs-dir $(RUNS)

app: venv
	$(BIN)/workbench app --address $(HOST) --port $(PORT) --runs-dir $(RUNS)

test: venv
	OMP_WAIT_POLICY=PASSIVE WORKBENCH_SMOKE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests --nbval-lax notebooks

test-fast: venv
	WORKBENCH_SMOKE=1 $(BIN)/python -m pytest -q -x -m "not slow" tests

bench: venv
	$(BIN)/python -m pip install -q -e ".[bench]"
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
