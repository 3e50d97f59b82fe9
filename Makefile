# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install lock browser run demo test test-fast screenshots bench lint format migrate contracts clean
.DEFAULT_GOAL := help

help:  ## this list of targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):[^#]*## (.*)/  make \1|\2/' \
		| awk -F'|' '{ printf "%-27s %s\n", $$1, $$2 }'

# What is installed is what requirements/ pins, every file checked against its hash; `make lock`
# moves the pins (docs/development.md).
LOCK := requirements/dev.txt
RUNTIME_LOCK := requirements/runtime.txt
PIP_COMPILE := pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

$(STAMP): pyproject.toml tools/pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e . -e tools
	touch $(STAMP)

install: $(STAMP)  ## the virtual environment .venv with the project and its dev and local extras, as locked

# pip-tools runs in a venv of its own (.venv-lock), so that locking needs no working .venv.
lock:  ## re-resolve requirements/ (runtime.txt: the images; dev.txt: make) from pyproject.toml
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet 'pip-tools>=7.6,<8'
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/$(PIP_COMPILE) --upgrade \
		--output-file=$(RUNTIME_LOCK) pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/$(PIP_COMPILE) --upgrade \
		--extra dev --extra local --output-file=$(LOCK) pyproject.toml

run: install  ## start PostgreSQL, Kafka, the four services and the duty console; Ctrl-C stops all
	$(BIN)/sqjz-run

demo: install  ## post the sample incidents of examples/ to a running system
	$(BIN)/python -m examples.demo

# tests/browser drive Debian's Chromium (Playwright's own browser download is not used). Installed
# with apt-get where this machine can (root); otherwise said plainly, and those tests are skipped
# (or fail, with REQUIRE_BROWSER_TESTS=1 as .ci/run sets). A CJK font, or screenshots show boxes.
browser:  ## Chromium and a CJK font for the browser tests, where root and apt-get can install them
	@if command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q .; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing Chromium and fonts-noto-cjk for the browser tests (apt-get)..."; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq chromium fonts-noto-cjk >/dev/null 2>&1 \
			|| { apt-get update -qq >/dev/null && apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; } \
			|| echo "NOTE: apt-get could not install chromium and fonts-noto-cjk: the browser tests (tests/browser) will not run."; \
	else \
		echo "NOTE: the browser tests (tests/browser) will not run: Chromium (the Debian package chromium)" \
			"or a CJK font (fonts-noto-cjk) is missing, and installing them needs root and apt-get."; \
	fi

test: install browser  ## unit, end-to-end and browser tests on a real PostgreSQL and broker; names the slowest
	$(BIN)/python -m pytest --durations=15

test-fast: install  ## while you work: pure domain logic and the contracts, in under a minute
	$(BIN)/python -m pytest tests/unit tests/contracts

# The newest Python the dependencies support (requires-python's upper bound is what this proves):
# the fast tests and the local PostgreSQL and broker again, on a venv of its own. PYTHON313 is
# python3.13 on PATH where it runs (a pyenv shim may not), else pyenv's. Without one the run is
# skipped with a note, or fails where REQUIRE_NEWEST_PYTHON=1 (as .ci/run sets): CI must not
# pass without having tried.
PYTHON313 ?= $(or $(shell python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null),\
	$(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13)),python3.13)
VENV313 := .venv-3.13

.PHONY: test-newest-python typecheck
test-newest-python:  ## the fast and local-infrastructure tests again on Python 3.13, in .venv-3.13
	@if ! $(PYTHON313) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; then \
		echo "NOTE: no Python 3.13 ($(PYTHON313)): the tests on the newest Python did not run." \
			"Set PYTHON313 to one."; \
		if [ -n "$$REQUIRE_NEWEST_PYTHON" ]; then exit 1; fi; \
		exit 0; \
	fi; \
	set -e; \
	if [ ! $(VENV313)/.installed -nt pyproject.toml ] || [ ! $(VENV313)/.installed -nt tools/pyproject.toml ] || [ ! $(VENV313)/.installed -nt requirements/dev.txt ]; then \
		$(PYTHON313) -m venv $(VENV313); \
		$(VENV313)/bin/python -m pip install --quiet --upgrade pip; \
		$(VENV313)/bin/python -m pip install --quiet --require-hashes -r requirements/dev.txt; \
		$(VENV313)/bin/python -m pip install --quiet --no-deps -e . -e tools; \
		touch $(VENV313)/.installed; \
	fi; \
	$(VENV313)/bin/python -m pytest tests/unit tests/contracts \
		tests/integration/test_local_postgres.py tests/integration/test_walking_skeleton.py

screenshots: install browser  ## docs/screenshots/*.png of the duty console, with real data
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest tests/browser -k screenshots

bench: install  ## load, floor, intake, audit, memory (about 15 min); bench/results/<date>.json
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

lint: install  ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install  ## mypy, strict on shared/ and the services' pure domain modules (pyproject.toml)
	$(BIN)/mypy

format: install  ## ruff format and the fixes ruff can make
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: install  ## apply every service's migrations (the console's too) to the database of DATABASE_URL
	for service in intake escalation notification audit console; do \
		$(BIN)/sqjz-migrate upgrade $$service || exit 1; done

contracts: install  ## regenerate docs/api, docs/events (OpenAPI, AsyncAPI, event schemas), docs/rules.md
	$(BIN)/sqjz-contracts
	$(BIN)/sqjz-rulebook

clean:  ## remove .venv, .local (the local database, broker data and keys) and caches
	rm -rf $(VENV) .venv-lock .local .pytest_cache
