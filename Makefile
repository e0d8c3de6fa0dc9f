# Fresh-machine entry points; each creates .venv and installs the project into it first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run bench test test-slow lint clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# The main job. Until MQAR training lands this is the EOS backend benchmark.
run: setup
	$(BIN)/python benchmarks/eos_backends.py --quick

bench: setup
	$(BIN)/python benchmarks/eos_backends.py

test: setup
	$(BIN)/python -m pytest -q -n 2 tests

test-slow: setup
	$(BIN)/python -m pytest -q -n 2 -m slow tests

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV)
