# Two entry points: `make run` (the quickstart scenario) and `make test` (the test suite).
# Both create the virtual environment in .venv and install llmsim into it on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/quickstart
SCENARIO ?= scenarios/quickstart.yaml

.PHONY: run test lint bench clean

$(BIN)/llmsim: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/llmsim
	$(BIN)/llmsim run $(SCENARIO) --out $(OUT)

test: $(BIN)/llmsim
	$(BIN)/python -m pytest -q

lint: $(BIN)/llmsim
	$(BIN)/ruff check llmsim tests benchmarks
	$(BIN)/mypy

bench: $(BIN)/llmsim
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) out
