# Two entry points, both doing their own set-up in .venv on a fresh machine:
#   make depth VIDEO=path/to/video.mp4   depth for one video (extra CLI flags in ARGS="...")
#   make test                            the test suite (torch 2.13.0, the CPU build where PyTorch's CPU index answers)
# `make test` also builds .venv-annolid: Annolid 1.6.10 from PyPI, where tests/test_beside_annolid.py
# installs and removes this package's wheel beside it (built once, reused while its stamp stands).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ANNOLID_VENV := .venv-annolid
ANNOLID_BIN := $(ANNOLID_VENV)/bin
ANNOLID_VERSION := 1.6.10
TORCH_VERSION := 2.13.0
# PyTorch's documented route to its CPU wheels; PyPI's Linux wheel of the same version is the CUDA build
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.app: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[opencv,gui,exr,fast]'
	touch $@

$(VENV)/.test: $(BIN)/python pyproject.toml
	@if $(BIN)/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=10)' \
		'$(TORCH_CPU_INDEX)' 2>/dev/null; then \
		echo "installing torch==$(TORCH_VERSION) from PyTorch's CPU index $(TORCH_CPU_INDEX)"; \
		$(BIN)/pip install -q torch==$(TORCH_VERSION) --index-url '$(TORCH_CPU_INDEX)'; \
	else \
		echo "PyTorch's CPU index $(TORCH_CPU_INDEX) cannot be reached: torch==$(TORCH_VERSION) comes from pip's own" \
			"index (on Linux, PyPI's is the CUDA build; TORCH_CPU_INDEX=... names a mirror of the CPU index)"; \
		$(BIN)/pip install -q torch==$(TORCH_VERSION); \
	fi
	$(BIN)/pip install -q -e '.[test]'
	@$(BIN)/python -c 'import torch; print("torch", torch.__version__, "with CUDA " + torch.version.cuda if torch.version.cuda else "(CPU build)")'
	touch $@

# Annolid's depth modules import torchvision, which needs the torch build it was made for (PyPI's
# torchvision does not load beside the CPU build pinned above); Annolid 1.6.10 calls
# matplotlib.cm.get_cmap, gone in matplotlib 3.9; annolid.gui.app needs pyzmq.
$(ANNOLID_VENV)/.annolid:
	rm -rf $(ANNOLID_VENV)
	$(PYTHON) -m venv $(ANNOLID_VENV)
	$(ANNOLID_BIN)/pip install -q --upgrade pip
	$(ANNOLID_BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(ANNOLID_BIN)/pip install -q annolid==$(ANNOLID_VERSION) PySide6-Essentials pyzmq einops 'matplotlib<3.9'
	touch $@

# The wheels of Annolid and of the OpenCV it brought, so the tests reinstall them without the index.
$(ANNOLID_VENV)/.wheels: $(ANNOLID_VENV)/.annolid
	$(ANNOLID_BIN)/pip download -q --no-deps -d $(ANNOLID_VENV)/wheels annolid==$(ANNOLID_VERSION) \
		opencv-contrib-python==$$($(ANNOLID_BIN)/python -c 'import importlib.metadata as m; print(m.version("opencv-contrib-python"))')
	touch $@

# This package's own requirements, so that installing its wheel there in the tests needs no index.
$(ANNOLID_VENV)/.deps: $(ANNOLID_VENV)/.annolid pyproject.toml
	$(ANNOLID_BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' > $(ANNOLID_VENV)/requirements.txt
	$(ANNOLID_BIN)/pip install -q -r $(ANNOLID_VENV)/requirements.txt
	touch $@

.PHONY: depth test bench annolid-env
depth: $(VENV)/.app
	@test -n "$(VIDEO)" || { echo "usage: make depth VIDEO=path/to/video.mp4 [ARGS='--encoder vitb ...']" >&2; exit 2; }
	$(BIN)/annolid-depth "$(VIDEO)" $(ARGS)

annolid-env: $(ANNOLID_VENV)/.deps $(ANNOLID_VENV)/.wheels

# Two pytest processes (pytest-xdist), each taking whole test files (a file's module fixtures,
# such as its Ray instance, are made once), one torch thread each on a 2-core machine
TEST_WORKERS ?= 2
test: $(VENV)/.test annolid-env
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(VENV)/.test
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
