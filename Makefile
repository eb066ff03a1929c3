# `make demo` and `make test` work on a fresh machine: each builds .venv on first use.
# As root, the personal HTCondor pool's jobs run as an ordinary user, who cannot reach a Python
# in root's home (pyenv's, say): the environment is then built on the system's Python.
PYTHON ?= $(if $(and $(filter 0,$(shell id -u)),$(wildcard /usr/bin/python3)),/usr/bin/python3,python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PEGASUS_WHEELS := pegasus-wms==5.1.3 pegasus-wms.worker==5.1.3 pegasus-wms.common==5.1.3 six
# a real Globus client, in its own environment as users install it, for tests/test_real_clients.py
GLOBUS_CLI := .venv-globus-cli/bin/globus
GLOBUS_CLI_VERSION := 3.43.0
# the seed's legacy Timer CLI (globus-sdk 2), in its own environment too, for the same tests
TIMER_CLI := .venv-timer-cli/bin/globus-timer
TIMER_CLI_VERSION := 0.2.9

.PHONY: demo test clean

$(STAMP): setup.cfg pyproject.toml Makefile
	@echo "First run: building $(VENV) from PyPI (about 20 s)"
	$(PYTHON) -m venv --clear $(VENV)
	# compat: a plain path in a .pth, where the default editable finder costs every Python
	# start-up (each command, each sidecar) about 17 ms of imports
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off \
		--config-settings editable_mode=compat -e '.[test]'
	# stock Pegasus, for the interoperability tests: --no-deps keeps its globus-sdk<4 pin out
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(PEGASUS_WHEELS)
	touch $@

$(GLOBUS_CLI): Makefile
	@echo "Installing globus-cli $(GLOBUS_CLI_VERSION) into .venv-globus-cli (the emulator's conformance tests)"
	$(PYTHON) -m venv --clear .venv-globus-cli
	.venv-globus-cli/bin/python -m pip install --quiet --disable-pip-version-check globus-cli==$(GLOBUS_CLI_VERSION)
	touch $@

$(TIMER_CLI): Makefile
	@echo "Installing globus-timer-cli $(TIMER_CLI_VERSION) into .venv-timer-cli (the emulator's conformance tests)"
	$(PYTHON) -m venv --clear .venv-timer-cli
	# setuptools: the CLI imports distutils, which Python 3.12 dropped and setuptools provides
	.venv-timer-cli/bin/python -m pip install --quiet --disable-pip-version-check globus-timer-cli==$(TIMER_CLI_VERSION) setuptools
	touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP) $(GLOBUS_CLI) $(TIMER_CLI)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .venv-globus-cli .venv-timer-cli demo-output .pytest_cache .ruff_cache *.egg-info
