# `make demo` and `make test` create .venv when it is missing and install the project into it.
# torch/torchvision come from the package registry: the machine-local CPU-only torch wheel in
# PIP_FIND_LINKS has no matching torchvision, so find-links is switched off for the install.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint gpu-check peers

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	PIP_FIND_LINKS= $(PY) -m pip install --quiet --upgrade pip
	PIP_FIND_LINKS= $(PY) -m pip install --quiet -e '.[dev,export,slurm,tensorboard]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m benchmarks.suite

# the whole default suite (what CI runs), then the linter
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m ruff check .

# the fast tier for development
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not e2e"

lint: $(STAMP)
	$(PY) -m ruff check .

# on a CUDA machine: the cuda tests and the GPU speed tables into results/gpu/<kind>/
gpu-check:
	PYTHONPATH=. $(or $(wildcard $(PY)),python3) -m benchmarks.speed.gpu_check

# MMAction2's loader and fusion beside ours (builds its own virtual environment)
peers: $(STAMP)
	$(PY) -m benchmarks.speed.peer_loader
