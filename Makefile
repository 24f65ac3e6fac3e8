# pyfa: `make demo` runs the main job, `make test` the test suite. Both set up .venv on first use.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test bench lint docs clean

install: $(STAMP)

# torch==2.13.0 first: pip takes the local CPU wheel, and the project's torch range then accepts it.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/pyfa demo

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_linear.py

lint: install
	$(VENV)/bin/ruff check pyfa tests benchmarks
	$(VENV)/bin/pyfa lint julia/PyFA/src julia/PyFA/test

docs: install
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) site dist build runs .pytest_cache .hypothesis
