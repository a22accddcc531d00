# Two commands on a fresh machine, nothing typed before them:
#   make demo   explain the demo model's planted false positive (writes shapseg_demo/)
#   make test   the whole test suite (what CI runs)
# Each first builds .venv when it is missing or older than pyproject.toml: the matching
# torch/torchvision pair, then this project with its test extras (editable).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.14.1 torchvision==0.29.1
BIN    := $(VENV)/bin

.PHONY: demo test venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: venv
	$(BIN)/shapseg demo --out shapseg_demo

test: venv
	$(BIN)/python -m pytest Testing --durations=40
