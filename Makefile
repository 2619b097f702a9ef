# Two commands on a fresh Debian machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test test-cluster test-all lint bench setup system browser venv clean

run: setup
	$(BIN)/liftline up

test: setup browser
	$(BIN)/python -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

# The 3-node RabbitMQ cluster tests (tests/cluster): node kills under load.
test-cluster: setup
	$(BIN)/python -m pytest -m cluster $(PYTEST_ARGS)

test-all: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's chromium for the dashboard's browser test (apt-get as root; otherwise the
# test is skipped and the summary says so in a banner).
browser:
	@LIFTLINE_WITH_CHROMIUM=1 scripts/ensure-system.sh

lint: setup
	$(BIN)/ruff check liftline tests benchmarks
	$(BIN)/mypy

bench: setup
	LIFTLINE_WITH_WRK=1 scripts/ensure-system.sh
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

setup: system venv

system:
	@scripts/ensure-system.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || \
	  { echo "Python 3.11 is needed (python3.11 or python3)"; exit 1; }
	@py=$$(command -v $(PYTHON) || command -v python3); \
	  $$py -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"' && \
	  { [ -x $(BIN)/python ] || $$py -m venv $(VENV) || \
	    { echo "python3 -m venv failed: on Debian, apt-get install python3-venv"; exit 1; }; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
