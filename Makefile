# Two commands on a fresh machine: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
WEB_HOST ?= 127.0.0.1
WEB_PORT ?= 8000
export WEB_HOST WEB_PORT

.PHONY: run test install demo lint typecheck check bench bench-audit clean

$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

var/dev.env:
	$(BIN)/python -m config.devenv

run: install var/dev.env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap_login
	@echo ""
	@echo "  Open http://$(WEB_HOST):$(WEB_PORT)/ and sign in with the login above."
	@echo "  API: http://$(WEB_HOST):$(WEB_PORT)/api/docs/   Stop with Ctrl-C."
	@echo ""
	@# Samples of earlier processes would be added to this run's (metrics multiprocess mode).
	find "$${PROMETHEUS_MULTIPROC_DIR:-var/prometheus}" -maxdepth 1 -name '*.db' -delete 2>/dev/null || true
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

# A fresh metrics directory per test session, shared by the tests and their worker processes.
test: install
	@metrics=$$(mktemp -d -t everesthood-metrics-XXXXXX); \
	echo "EVERESTHOOD_ENV_FILE= PROMETHEUS_MULTIPROC_DIR=$$metrics $(BIN)/pytest $(PYTEST_ARGS)"; \
	EVERESTHOOD_ENV_FILE= PROMETHEUS_MULTIPROC_DIR=$$metrics $(BIN)/pytest $(PYTEST_ARGS); \
	status=$$?; rm -rf "$$metrics"; exit $$status

demo: install var/dev.env
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

check: lint typecheck test

bench: install
	$(BIN)/python bench/run_latency.py
	$(BIN)/python bench/logging.py

bench-audit: install
	$(BIN)/python bench/audit.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
