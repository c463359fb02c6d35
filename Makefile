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

# Debian packages two tests use: Chromium (tests/test_browser.py drives it with Playwright from pip, never
# `playwright install`) and the real Fashion-MNIST (tests/test_data.py). `make test` installs them where it runs
# as root with apt-get (SYSTEM_DEPS=0 turns that off); elsewhere those tests skip and say how to get them.
DEB_PACKAGES ?= chromium dataset-fashion-mnist
SYSTEM_DEPS  ?= 1

.PHONY: venv system-deps run app test test-fast tutorials bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null | grep -qx installed || missing="$$missing $$p"; \
	done; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$(SYSTEM_DEPS)" = 0 ] || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "not installing Debian packages$$missing (needs root, apt-get and SYSTEM_DEPS=1): tests that need them skip"; \
	  exit 0; \
	fi; \
	echo "installing Debian packages$$missing for the browser and Fashion-MNIST tests"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || { \
	  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; } || { \
	  echo "apt-get could not install$$missing; make test SYSTEM_DEPS=0 tests without them" >&2; exit 1; }

run: venv
	OMP_WAIT_POLICY=PASSIVE $(BIN)/workbench demo --address $(HOST) --port $(PORT) --runs-dir $(RUNS)

app: venv
	$(BIN)/workbench app --address $(HOST) --port $(PORT) --runs-dir $(RUNS)

test: venv system-deps
	OMP_WAIT_POLICY=PASSIVE WORKBENCH_SMOKE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests --nbval-lax notebooks

test-fast: venv
	WORKBENCH_SMOKE=1 $(BIN)/python -m pytest -q -x -m "not slow" tests

# every notebook in full mode (minutes each on a CPU), executed to HTML under build/tutorials/ (git-ignored) with
# index.md / index.html: each notebook's time and its finding's numbers; ONLY=02,07 runs a few
tutorials: venv
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m workbench.ui.tutorials --out build/tutorials $(if $(ONLY),--only $(ONLY))

bench: venv
	$(BIN)/python -m pip install -q -e ".[bench]"
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
