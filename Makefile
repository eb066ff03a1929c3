# `make demo` and `make test` work on a fresh machine: each builds .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEGASUS_WHEELS := pegasus-wms==5.1.3 pegasus-wms.worker==5.1.3 pegasus-wms.common==5.1.3 six

.PHONY: demo test clean

$(STAMP): setup.cfg pyproject.toml Makefile
	@echo "First run: building $(VENV) from PyPI (about 20 s)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -e '.[test]'
	# stock Pegasus, for the interoperability tests: --no-deps keeps its globus-sdk<4 pin out
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(PEGASUS_WHEELS)
	touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache *.egg-info
