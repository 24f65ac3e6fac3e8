# pyfa: `make demo` runs the main job, `make test` the test suite. Both set up .venv on first use.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# `make docs` uses a light venv of its own: pyfa without its dependencies (no torch, no juliacall)
# and the `docs` extra of pyproject.toml.
DOCS_VENV  ?= .venv-docs
DOCS_PY    := $(DOCS_VENV)/bin/python
DOCS_STAMP := $(DOCS_VENV)/.installed-stamp

.PHONY: install demo test bench lint docs clean

install: $(STAMP)

# torch==2.13.0 first: pip takes the local CPU wheel, and the project's torch range then accepts it.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	@# The distribution was called `pyfa` before it became `pyfa-alignment`: drop that old install.
	@if $(PY) -m pip show -q pyfa >/dev/null 2>&1; then $(PY) -m pip uninstall -q -y pyfa; fi
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/pyfa demo

test: install
	$(PY) -m pytest

# Every benchmarks/bench_*.py, each printing ratios measured against a baseline in the same run.
bench: install
	@status=0; for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || status=1; done; exit $$status

# Opt-in, never run by other targets: download Julia if none is found and install pyfa's Julia
# packages, Enzyme and Mooncake included (about 1 GB, minutes, once).
.PHONY: julia
julia: install
	$(PY) -m pyfa.julia install

lint: install
	$(VENV)/bin/ruff check pyfa tests benchmarks
	$(VENV)/bin/pyfa lint julia/PyFA/src julia/PyFA/ext julia/PyFA/test

# The documentation, into site/ (warnings are errors). Open site/index.html, or serve it:
# python -m http.server -d site
docs: $(DOCS_STAMP)
	rm -rf site
	$(DOCS_PY) -m sphinx -b html -W --keep-going -q -d build/doctrees docs site
	@echo "docs: site/index.html (or serve it: python -m http.server -d site)"

# pyfa itself with --no-deps, then the requirements of its `docs` extra, read from the installed
# metadata (so pyproject.toml is their only list).
$(DOCS_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DOCS_VENV)
	echo '*' > $(DOCS_VENV)/.gitignore
	$(DOCS_PY) -m pip install -q --upgrade pip
	$(DOCS_PY) -m pip install -q --no-deps -e .
	$(DOCS_PY) -c 'import re; from importlib.metadata import requires; \
	  print("\n".join(r.split(";")[0] for r in requires("pyfa-alignment") if re.search("extra *== *.docs.", r)))' \
	  > $(DOCS_VENV)/docs-requirements.txt
	$(DOCS_PY) -m pip install -q --no-warn-conflicts -r $(DOCS_VENV)/docs-requirements.txt
	touch $(DOCS_STAMP)

clean:
	rm -rf $(VENV) $(DOCS_VENV) site dist build runs .pytest_cache .hypothesis
