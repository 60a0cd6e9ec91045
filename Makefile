# commune-monitor — the two commands:
#   make run    start a local broker and an agent on this machine, print where to look
#   make test   lint, type-check and run the whole test suite (real Mosquitto, snmpd, snmpsim)
# and:
#   make check  lint, type-check and the tests that need no server (a minute)
#   make lock   update requirements.lock (every dev/CI dependency, pinned with hashes)
#   make windows-lock  update deploy/windows/requirements-win.lock (the Windows kit's)
#   make collector-dist  an offline bundle to install or upgrade a collector host

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
TYPED  := agent collector fleet
LINTED := $(TYPED) tests bench deploy

.PHONY: all run test check lint typecheck pytest bench clean venv lock windows-lock \
	collector-dist

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

# An offline bundle for a collector host (deploy/OPERATIONS.md, "Upgrades"), made where
# PyPI is reachable: this package's wheel, built with the locked setuptools; every wheel
# the lock names, for the host's CPython and platform, checked against the lock's hashes
# (the lock's markers are read on this machine: make it on Linux); the lock; SHA256SUMS.
# The default host is Debian 12: CPython 3.11, glibc 2.36, x86_64. Another, e.g. Debian 13:
#   make collector-dist DIST_PYTHON=3.13 DIST_GLIBC=2.41
DIST_PYTHON ?= 3.11
DIST_GLIBC  ?= 2.36
DIST_ARCH   ?= x86_64
VERSION     := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' agent/__init__.py)
BUNDLE      := dist/collector-$(VERSION)
# pip takes a wheel only for a platform it is named: every manylinux this glibc runs.
PLATFORMS   := manylinux2014_$(DIST_ARCH) $(foreach minor,\
	$(shell seq 5 $(word 2,$(subst ., ,$(DIST_GLIBC)))),manylinux_2_$(minor)_$(DIST_ARCH))

collector-dist: $(STAMP)
	rm -rf build $(BUNDLE) $(BUNDLE).tar.gz
	mkdir -p $(BUNDLE)
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation -w $(BUNDLE) .
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --require-hashes \
		--only-binary=:all: --implementation cp --python-version $(DIST_PYTHON) \
		$(addprefix --platform ,$(PLATFORMS)) -d $(BUNDLE) -r $(LOCK)
	cp $(LOCK) $(BUNDLE)/requirements.lock
	cd $(BUNDLE) && sha256sum *.whl requirements.lock > SHA256SUMS
	tar -czf $(BUNDLE).tar.gz -C dist collector-$(VERSION)
	@echo "$(BUNDLE)/ and $(BUNDLE).tar.gz: CPython $(DIST_PYTHON), glibc $(DIST_GLIBC), $(DIST_ARCH)"

run: $(STAMP)
	VENV=$(VENV) deploy/dev/run-local.sh

bench: $(STAMP)
	$(BIN)/python bench/agent_bench.py
	$(BIN)/python bench/collector_bench.py --communes 200 --rate 3000 --seconds 20
	$(BIN)/python bench/sink_bench.py --rounds 1 --cycles 1
	$(BIN)/python bench/spool_bench.py --rounds 1
	$(BIN)/python bench/round_bench.py --communes 200 --rounds 5 --burst-rounds 2 --burst 100 --batches 10
	$(BIN)/python bench/report_bench.py --short
	$(BIN)/python bench/store_year_bench.py --short
	$(BIN)/python bench/reads_bench.py --seconds 20 --communes 300
	$(BIN)/python bench/heldfacts_bench.py --communes 100 --rounds 1

clean:
	rm -rf $(VENV) run .mypy_cache .ruff_cache .pytest_cache
