# One entry point for every check: `make check` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STACK ?= pilot
STAMP := $(VENV)/.installed

.PHONY: setup plan test lint typecheck check generate bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

plan: setup ## offline plan of a stack (STACK=pilot)
	$(BIN)/swarmstack plan $(STACK)

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/pyright

check: lint typecheck test

generate: setup ## regenerate the config schema, README config reference and golden plans
	$(BIN)/swarmstack generate
	$(BIN)/pytest tests/test_golden.py --update-golden -q

bench: setup
	$(BIN)/python benchmarks/plan_bench.py

clean:
	rm -rf out .pytest_cache .ruff_cache
