# Two entry points for a fresh clone with only Python installed:
#   make run   -> create .venv, install, run the built-in example end to end
#   make test  -> create .venv if needed, install dev deps, run the test suite but the slow cases
#   make test-slow -> the long cases (marked slow); CI runs both
#   make docs  -> build the documentation site into site/ (mkdocs build --strict)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -c constraints.txt

.PHONY: run test test-slow venv dev lint docs bench bench-env clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) -e '.[dev,ray,report,tensorboard,pandas,mujoco]'
	touch $@

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PIP) -e '.[docs]'
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.dev-installed

run: $(VENV)/.installed
	$(VENV)/bin/neuroevo run examples/xor_ga.toml --out runs/xor_ga --overwrite
	$(VENV)/bin/neuroevo best runs/xor_ga

test: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m "not slow" --durations=15

test-slow: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m slow --durations=15

docs: $(VENV)/.docs-installed
	$(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check src tests benchmarks examples

bench-env:
	bash benchmarks/setup_env.sh

bench: $(VENV)/.installed
	$(PY) benchmarks/population_forward.py

clean:
	rm -rf $(VENV) runs site
