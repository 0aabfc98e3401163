# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench chat commander clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("chatbridge needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV) || { echo "could not create $(VENV): on Debian/Ubuntu, apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded,bench]'
	@touch $(STAMP)

run: $(STAMP)  ## start the service (embedded Redis unless REDIS_URL or REDIS_HOST is set)
	$(BIN)/python -m bots

chat: $(STAMP)  ## talk from this terminal: make chat NAME=me
	$(BIN)/python -m bots chat --user $(or $(NAME),me)

test: $(STAMP)  ## the whole suite, against a redis-server it starts itself
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## performance figures into docs/benchmarks.md (SIZE=tiny|default|full)
	$(BIN)/python -m benchmarks --size $(or $(SIZE),default) --output docs/benchmarks.md

commander: $(STAMP)  ## Redis Commander (npm ci once; needs nodejs npm) on the service's Redis
	$(BIN)/python -m bots.commander

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tools/commander/node_modules
