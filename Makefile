# streamgate: `make run` and `make test` are all the set-up there is.
# Each target creates/uses the virtual environment in .venv.

# The first interpreter that runs and is 3.11+ (a pyenv shim may exist and not run).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; \
	done)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= conf/streamgate.toml

.PHONY: run test test-fast lint bench system-packages venv clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "streamgate needs Python 3.11 or newer (python3)" >&2; exit 1; }
	@sh .ci/system-packages.sh python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## run: start the gateway on the embedded default config (origin on 127.0.0.1:1935)
run: $(STAMP)
	$(BIN)/streamgate run -c $(CONFIG)

## system-packages: install ffmpeg, nginx and its RTMP module when root and missing
system-packages:
	@sh .ci/system-packages.sh interop

## test: every test, with the interop tests against real ffmpeg and nginx-rtmp
test: $(STAMP) system-packages
	$(BIN)/python -m pytest

## test-fast: the tests that need no external peer
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not interop"

## lint: ruff and mypy (strict) on the package and its tests (pyproject.toml [tool.mypy])
lint: $(STAMP)
	$(BIN)/ruff check streamgate tests bench
	$(BIN)/mypy

## bench: fan-out, capacity, start time, flood and churn against nginx-rtmp (< 10 min);
## writes bench-results/bench.{md,json,png} (see bench/README.md)
bench: $(STAMP) system-packages
	$(BIN)/python -m bench

## bench-quick: fan-out at 100 and 500 players only (< 2 min); bench-results/bench-quick.*
.PHONY: bench-quick
bench-quick: $(STAMP) system-packages
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
