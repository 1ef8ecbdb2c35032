# `make demo` and `make test` create .venv when it is missing and install the project into it.
# torch/torchvision come from the package registry: the machine-local CPU-only torch wheel in
# PIP_FIND_LINKS has no matching torchvision, so find-links is switched off for the install.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	PIP_FIND_LINKS= $(PY) -m pip install --quiet --upgrade pip
	PIP_FIND_LINKS= $(PY) -m pip install --quiet -e '.[dev,export]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m benchmarks.suite

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
