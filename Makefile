# Two commands: `make run` and `make test`. Everything else is a step they call.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
PROXY_PORT ?= 8787
export LLM386_HOME ?= $(CURDIR)/var

LOCK   := requirements.lock
TOOLS  := .venv-tools
# One resolution for every install: the lock pins each package, direct and transitive, with hashes.
UV_COMPILE = $(TOOLS)/bin/uv pip compile pyproject.toml requirements/build.in --extra dev \
	--generate-hashes --universal --python-version 3.11 --quiet

.PHONY: run test bench lint typecheck pytest setup chromium postgresql demo clean lock \
	check-upgrades check-lowest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Install from the lock and nothing else: --require-hashes refuses any file whose hash the lock
# does not list, and --no-deps stops pip from resolving anything the lock does not name.
$(STAMP): $(BIN)/python $(LOCK) pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		--no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

setup: $(STAMP)

# Debian's chromium for the browser journeys (Playwright never downloads a browser here).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		SUDO=$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi

# Debian's PostgreSQL 15 server binaries: the tests start a real server from them (tests/pg_server.py).
PG_BIN ?= /usr/lib/postgresql/15/bin
postgresql:
	@if [ ! -x $(PG_BIN)/initdb ]; then \
		echo "Installing Debian's PostgreSQL 15 for the PostgreSQL backend tests"; \
		SUDO=$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql-15 \
			|| { echo "Cannot install postgresql-15: install it (apt-get install postgresql-15) or set PG_BIN"; exit 1; }; \
	fi

demo: setup
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/llm386 migrate
	$(BIN)/python manage.py llm386_demo --url http://$(HOST):$(PORT)

# The proxy runs beside the web app on the same store; Ctrl-C (or either one exiting) stops both.
run: demo
	@echo "llm386web:   http://$(HOST):$(PORT)"
	@echo "llm386 proxy: http://$(HOST):$(PROXY_PORT)  (ANTHROPIC_BASE_URL=http://$(HOST):$(PROXY_PORT)  OPENAI_BASE_URL=http://$(HOST):$(PROXY_PORT)/v1)"
	@$(BIN)/llm386 proxy --host $(HOST) --port $(PROXY_PORT) & proxy=$$!; \
		trap 'kill $$proxy 2>/dev/null; wait $$proxy' EXIT INT TERM; \
		LLM386_PROXY_URL=http://$(HOST):$(PROXY_PORT) $(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# LLM386_REQUIRE_PG=1: the PostgreSQL tests fail, never skip, when the server cannot be started.
pytest: setup chromium postgresql
	LLM386_REQUIRE_PG=1 LLM386_PG_BIN=$(PG_BIN) $(BIN)/python -m pytest

test: lint typecheck pytest

bench: setup
	$(BIN)/python -m bench.run_all
	$(BIN)/python -m bench.report

# The locking tool, itself installed from a hashed lock.
$(TOOLS)/bin/uv: requirements/tools.lock
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/tools.lock

# Re-resolve within pyproject's bounds and rewrite the lock (keeps current pins where allowed;
# `make lock UPGRADE=--upgrade` or `UPGRADE="--upgrade-package anthropic"` moves them).
lock: $(TOOLS)/bin/uv
	$(UV_COMPILE) $(UPGRADE) -o $(LOCK)
	@echo "Wrote $(LOCK); run make test, then commit it with pyproject.toml."

# Drift check, not part of `make test`: the newest versions the bounds allow, in a throwaway venv.
check-upgrades: $(TOOLS)/bin/uv
	bash .ci/check-resolution newest

# Lower-bound check: the oldest versions pyproject's direct dependencies allow.
check-lowest: $(TOOLS)/bin/uv
	bash .ci/check-resolution lowest-direct

# Long fuzz campaigns (10,000 cases per entry point; 200 SIGKILLs in the crash test); crashes
# land in tests/fuzz/corpus/.
.PHONY: fuzz
fuzz: setup
	LLM386_FUZZ=long LLM386_FUZZ_LONG=1 nice $(BIN)/python -m pytest tests/fuzz -p no:randomly -q

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache
