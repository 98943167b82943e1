# dtp_eqx: `make test` and `make book` each set up their own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
export JAX_PLATFORMS ?= cpu
export MPLBACKEND ?= Agg

.PHONY: help test book clean

help:
	@echo "make test   install .[test] into $(VENV) and run the test suite"
	@echo "make book   install .[book] into $(VENV) and build the HTML book"
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

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

book: $(VENV)/.installed-book
	@start=$$(date +%s); \
	$(BIN)/jupyter-book build book -W -n --keep-going && \
	echo "Built the book in $$(( $$(date +%s) - start )) s. Open $(CURDIR)/book/_build/html/index.html"

clean:
	rm -rf book/_build
