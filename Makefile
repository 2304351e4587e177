# Two entry points for a fresh clone with only Python installed:
#   make run   -> create .venv, install, run the built-in example end to end
#   make test  -> create .venv if needed, install dev deps, run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -c constraints.txt

.PHONY: run test venv dev lint bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip >/dev/null
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.dev-installed

run: $(VENV)/.installed
	$(VENV)/bin/neuroevo run examples/xor_ga.toml --out runs/xor_ga

test: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check src tests benchmarks examples

clean:
	rm -rf $(VENV) runs
