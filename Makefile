# commune-monitor — the two commands:
#   make run    start a local broker and an agent on this machine, print where to look
#   make test   lint, type-check and run the whole test suite (real Mosquitto, snmpd, snmpsim)
# and:
#   make check  lint, type-check and the tests that need no server (a minute)
#   make lock   update requirements.lock (every dev/CI dependency, pinned with hashes)
#   make windows-lock  update deploy/windows/requirements-win.lock (the Windows kit's)

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
TYPED  := agent collector fleet
LINTED := $(TYPED) tests bench deploy

.PHONY: all run test check lint typecheck pytest bench clean venv lock windows-lock

all: test

# Exactly the locked versions, checked against their hashes; then this package itself,
# built with the locked setuptools (no unlocked build environment).
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
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

check: lint typecheck $(STAMP)
	$(BIN)/pytest -m "not servers" -q

lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
		--extra collector --extra dev --generate-hashes -o $(LOCK)

# The Windows kit's lock: the agent's dependencies resolved for win_amd64, no markers,
# hashes of the wheels for every supported CPython (needs the network).
windows-lock: $(STAMP)
	$(BIN)/python -m collector.kit.lock deploy/windows/requirements-win.lock

run: $(STAMP)
	VENV=$(VENV) deploy/dev/run-local.sh

bench: $(STAMP)
	$(BIN)/python bench/agent_bench.py

clean:
	rm -rf $(VENV) run .mypy_cache .ruff_cache .pytest_cache
