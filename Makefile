# Two entry points: `make run` (the quickstart scenario) and `make test` (the test suite).
# Both create the virtual environment in .venv and install llmsim into it on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/quickstart
SCENARIO ?= scenarios/quickstart.yaml

CHECK_SCENARIOS ?= scenarios/quickstart.yaml scenarios/bursty_gamma.yaml
CHECK_BASELINE ?= benchmarks/check_baseline.json

.PHONY: run test lint bench check check-baseline clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# The profiler tests (llmsim profile, extra llmsim[profile]) run on CPU. Pin the CPU build:
	# this version is available locally, whereas a plain `pip install torch` pulls a multi-GB
	# CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	touch $@

run: $(VENV)/.installed
	$(BIN)/llmsim run $(SCENARIO) --out $(OUT)

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.test-installed
	$(BIN)/ruff check llmsim tests benchmarks
	$(BIN)/mypy

# The simulated results of shipped scenarios against the committed baseline: fails on a
# significant regression (docs/check.md). After a deliberate change, `make check-baseline`.
check: $(VENV)/.installed
	$(BIN)/llmsim check $(CHECK_SCENARIOS) --baseline $(CHECK_BASELINE) --seeds 5

check-baseline: $(VENV)/.installed
	$(BIN)/llmsim check $(CHECK_SCENARIOS) --baseline $(CHECK_BASELINE) --seeds 5 --update-baseline

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) out
