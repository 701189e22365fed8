# Two commands do all the set-up on a fresh machine (Python 3.11+):
#   make daily   the daily flow on the bundled real data -> reports/daily
#   make test    the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

daily: $(STAMP)
	$(BIN)/alphapulse daily --data data/sp500_sample.parquet --out reports/daily

# one worker per core (at most 4), whole test files per worker so module fixtures run once
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

# ruff over the tree, then the import contracts in pyproject.toml over the installed layout
# (scripts/lint_imports.py: plain lint-imports cannot see the package-dir mapping).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python scripts/lint_imports.py

# The GPU check on a CPU: the same script and code paths, GPU parts "skipped: no GPU" (docs/gpu.md).
gpu-rehearse: $(STAMP)
	bash scripts/gpu_wheels.sh --list
	OUT=out/gpu-rehearse/level1 bash scripts/gpu_check.sh --rehearse
	OUT=out/gpu-rehearse/level2 bash scripts/gpu_check.sh --rehearse --level 2

bench: $(STAMP)
	$(BIN)/python benchmarks/indicators.py
	$(BIN)/python benchmarks/daily.py

.PHONY: install daily test lint gpu-rehearse bench
