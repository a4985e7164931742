# Two entry points: `make run` (the quickstart scenario) and `make test` (the test suite).
# Both create the virtual environment in .venv and install llmsim into it on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/quickstart
SCENARIO ?= scenarios/quickstart.yaml
TORCH ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

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
	# The profiler tests (llmsim profile, extra llmsim[profile]) run on CPU with torch's CPU build
	# (about 200 MB), never the multi-GB CUDA build a plain `pip install torch` pulls from PyPI:
	# the `+cpu` version exists only as a local wheel or on PyTorch's CPU index. Without either
	# (offline), the profiler tests are skipped and say why; `make test TORCH=` skips torch.
	@if [ -n "$(TORCH)" ]; then \
	  $(BIN)/python -m pip install --quiet "$(TORCH)" 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet --extra-index-url $(TORCH_INDEX) "$(TORCH)" \
	  || echo "torch ($(TORCH)) not installed: the profiler tests will be skipped"; \
	fi
	touch $@

run: $(VENV)/.installed
	$(BIN)/llmsim run $(SCENARIO) --out $(OUT)

# One test worker per core, at most four; a test module runs whole on one worker, so its shared
# fixtures are built once.
test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadscope

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
