# Two entry points for a fresh machine:
#   make demo   set up .venv + Fashion-MNIST, then run `micromix run` (the default demo)
#   make test   set up the same way, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup data demo test test-all lint bench clean

$(BIN)/micromix: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "micromix needs Python >= 3.11 (tomllib); set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,ray]' || { echo "make: pip could not install micromix; it needs torch==2.13.0 (CPU wheel) from PyPI or a local wheel index." >&2; exit 1; }
	@touch $@

setup: $(BIN)/micromix data

data:
	@bash scripts/install_system.sh data

demo: setup
	$(BIN)/micromix run

# Tests use tiny models: one thread each is fastest, and avoids OpenMP spin-waits on busy CI.
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

test-all: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m ''

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info
