# dtp_eqx: `make test` and `make book` each set up their own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
export JAX_PLATFORMS ?= cpu
# Data: a folder named in DTP_EQX_DATA, else ../shared/data when it exists (our offline
# machines keep the datasets there), else the loaders' cache and download.
ifeq ($(origin DTP_EQX_DATA), undefined)
ifneq ($(wildcard ../shared/data/.),)
export DTP_EQX_DATA := $(abspath ../shared/data)
endif
endif

.PHONY: help test book lab clean

help:
	@echo "make test   install .[test] into $(VENV) and run the test suite"
	@echo "make book   install .[book] into $(VENV) and build the HTML book"
	@echo "make lab    open the book's pages in JupyterLab, with live widgets"
	@echo "make clean  remove the built book"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "dtp_eqx needs Python >= 3.10, but $(PYTHON) is " + sys.version.split()[0] + "; run make PYTHON=python3.x ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

$(VENV)/.installed-book: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[book]'
	@touch $@

# MathJax and the widget manager, pinned in book/package-lock.json, served by the book
# itself so that the rendered HTML works offline.
book/_vendor/.installed: book/package.json book/package-lock.json book/vendor_assets.py | $(BIN)/python
	@command -v npm >/dev/null || { echo "npm is needed to vendor the book's JavaScript (apt-get install npm)"; exit 1; }
	npm ci --prefix book --no-audit --no-fund --ignore-scripts --silent
	$(BIN)/python book/vendor_assets.py
	@touch $@

# Without npm the tests still run; the book build and browser tests skip, saying why.
test: $(VENV)/.installed-test
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory book/_vendor/.installed; \
	else echo "npm not found: the book build and browser tests will be skipped"; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

book: $(VENV)/.installed-book book/_vendor/.installed
	@start=$$(date +%s); \
	$(BIN)/jupyter-book build book -W -n --keep-going && \
	echo "Built the book in $$(( $$(date +%s) - start )) s (budget: 600 s on 2 CPU cores). Open $(CURDIR)/book/_build/html/index.html"

# The project's JupyterLab settings: double-clicking a page opens it as a notebook, and
# nothing is saved back into the tracked .md unless the reader saves it on purpose.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_SETTINGS): book/jupyterlab/overrides.json | $(VENV)/.installed-book
	mkdir -p $(dir $@) && cp $< $@

lab: $(VENV)/.installed-book $(LAB_SETTINGS)
	$(BIN)/jupyter lab --no-browser --ip 127.0.0.1 --port 8899 --allow-root book

clean:
	rm -rf book/_build book/_vendor book/_extra
