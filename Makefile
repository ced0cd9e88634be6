# The two commands a newcomer needs (see README):
#   make demo   install, start the embedded stack, walk the loop, serve until Ctrl-C
#   make test   install, then lint, type-check and run every test (what CI runs)
# One virtualenv per Python: `make test PYTHON=python3.13 VENV=.venv-3.13` (see .ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo dev test lint unit e2e stress bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tributary demo

dev: $(STAMP)
	$(BIN)/tributary dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two processes: most tests wait on servers, so two cores run them in about half the time.
# A file's tests stay in one process (--dist loadfile), sharing its session fixtures.
test: lint
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadfile

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider --ignore=tests/e2e

e2e: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/e2e

# Not in CI: the workflow and end-to-end tests STRESS_RUNS times (default 20) under a CPU
# hog (one busy process per core), every failure listed with its test id at the end.
# STRESS_TESTS=tests runs the whole suite instead.
STRESS_RUNS ?= 20
STRESS_TESTS ?= tests/workflows tests/e2e
stress: $(STAMP)
	$(BIN)/python tests/stress.py --runs $(STRESS_RUNS) --tests $(STRESS_TESTS) -- $(STRESS_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/publish_bench.py

clean:
	rm -rf $(VENV) .venv-3.* .tributary .mypy_cache .ruff_cache .pytest_cache
