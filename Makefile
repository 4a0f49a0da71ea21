# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates or updates .venv/ from pyproject.toml, then does its job.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.semcontrib-installed
CORE := semcontrib segmentation dashboard
PYTEST_ARGS ?=

.PHONY: venv test lint typecheck pytest wheelcheck demo browser-deps bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,ray,concepts,faces,study]"
	# ViRelAy's reader, for tests/test_virelay.py; --no-deps because it pins pillow<11 (its model module
	# needs only h5py, pyyaml, numpy, pillow and matplotlib, which semcontrib already installs)
	$(BIN)/python -m pip install --quiet --no-deps "virelay==0.6.1"
	touch $(STAMP)

venv: $(STAMP)

# Chromium and its driver for the dashboard's browser tests (Debian packages).
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

lint: venv
	$(BIN)/ruff check $(CORE) tests benchmarks data docs

typecheck: venv
	$(BIN)/mypy $(CORE)

pytest: venv browser-deps
	# one torch thread per worker: two workers already use both cores
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --headless --durations=15 $(PYTEST_ARGS)

# The wheel, installed into a bare folder and used from outside the repository.
wheelcheck: venv
	PY=$(CURDIR)/$(BIN)/python bash tests/check_wheel.sh

test: lint typecheck wheelcheck pytest

demo: venv
	$(BIN)/semcontrib demo

bench: venv
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) demo_corpus .mypy_cache .ruff_cache .pytest_cache
