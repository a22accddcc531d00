# Two commands on a fresh machine, nothing typed before them:
#   make demo   explain the demo model's planted false positive (writes shapseg_demo/)
#   make test   the whole test suite (what CI runs)
# Each first builds .venv when it is missing or older than pyproject.toml: the matching
# torch/torchvision pair, then this project with its test extras (editable).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.14.1 torchvision==0.29.1
BIN    := $(VENV)/bin
# The module's real-MRML tests (Testing/mrml) run in their own environment: slicer-core
# installs a top-level `slicer` package that collides with the `slicer` package shap needs.
# Slicer 5.10+ runs Python 3.12; any Python the wheel exists for works.
MRML_VENV   ?= .venv-mrml
MRML_PYTHON ?= $(shell PYENV_VERSION=3.12.1 pyenv which python3.12 2>/dev/null || (python3.12 -c "" 2>/dev/null && echo python3.12) || echo $(PYTHON))
MRML_DEPS   ?= slicer-core==5.12.4.0 pytest numpy scipy SimpleITK slicerio matplotlib psutil
# --no-compile, then compileall on both cores: pip byte-compiles file by file on one (torch
# alone: 20 of its 60 s). Compiled here, not on first import: where PYTHONDONTWRITEBYTECODE is
# set (this machine kind sets it) nothing would ever be cached, and every process that imports
# torch and nnU-Net would compile them again: 8 of the 12 s a worker took to load a model.
PIP         = -m pip install --quiet --disable-pip-version-check --no-compile
COMPILE     = -m compileall -qq -j 0

.PHONY: demo test venv

venv: $(VENV)/.installed $(MRML_VENV)/.installed

$(MRML_VENV)/.installed: pyproject.toml Makefile
	$(MRML_PYTHON) -m venv $(MRML_VENV)
	$(MRML_VENV)/bin/python $(PIP) $(MRML_DEPS)
	-$(MRML_VENV)/bin/python $(COMPILE) $(MRML_VENV)/lib
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP) $(TORCH)
	$(BIN)/python $(PIP) -e '.[test]'
	-$(BIN)/python $(COMPILE) $(VENV)/lib
	touch $@

demo: $(VENV)/.installed
	$(BIN)/shapseg demo --out shapseg_demo

test: venv
	$(BIN)/python -m pytest Testing --durations=40
