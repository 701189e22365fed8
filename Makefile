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

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/indicators.py
	$(BIN)/python benchmarks/daily.py

.PHONY: install daily test bench
