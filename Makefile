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

# The main job: MQAR training on the default config (resumes if runs/mqar exists), then the
# test accuracy per slice.
run: setup
	$(BIN)/python train.py --config configs/mqar.py --workdir runs/mqar

bench: setup
	$(BIN)/python benchmarks/eos_backends.py

# The default suite, on CPU with XLA's optimisation passes off (tests/conftest.py), printing its
# 15 slowest tests; test-slow runs the slow ones with the passes on, as users' programs have them.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=15 tests

test-slow: setup
	LCSM_TEST_OPTIMIZE=1 $(BIN)/python -m pytest -q -n 2 --dist worksteal -m slow tests

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV)
