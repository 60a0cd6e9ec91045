# commune-monitor — the two commands:
#   make run    start a local broker and an agent on this machine, print where to look
#   make test   lint, type-check and run the whole test suite (real Mosquitto, snmpd, snmpsim)

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
TYPED  := agent collector fleet
LINTED := $(TYPED) tests bench deploy

.PHONY: all run test lint typecheck pytest bench clean venv

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[collector,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(BIN)/mypy --strict $(TYPED)

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

run: $(STAMP)
	VENV=$(VENV) deploy/dev/run-local.sh

bench: $(STAMP)
	$(BIN)/python bench/agent_bench.py

clean:
	rm -rf $(VENV) run .mypy_cache .ruff_cache .pytest_cache
