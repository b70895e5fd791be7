# Two entry points, both doing their own set-up in .venv on a fresh machine:
#   make depth VIDEO=path/to/video.mp4   depth for one video (extra CLI flags in ARGS="...")
#   make test                            the test suite (CPU build of torch pinned here only)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.app: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[opencv,gui,exr,fast]'
	touch $@

$(VENV)/.test: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: depth test bench
depth: $(VENV)/.app
	@test -n "$(VIDEO)" || { echo "usage: make depth VIDEO=path/to/video.mp4 [ARGS='--encoder vitb ...']" >&2; exit 2; }
	$(BIN)/annolid-depth "$(VIDEO)" $(ARGS)

test: $(VENV)/.test
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

bench: $(VENV)/.test
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
