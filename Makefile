# The two commands of the quickstart are `make demo` and `make test`; both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint fmt mariadb system-deps bench test-faults clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/syncd demo $(DEMO_ARGS)

# MariaDB must answer before the MySQL tests run; start it when it is not running.
mariadb:
	@if ! mysqladmin --protocol=tcp -h127.0.0.1 -uroot ping >/dev/null 2>&1; then \
		echo "starting MariaDB"; \
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd; \
		for i in $$(seq 1 60); do \
			mysqladmin --protocol=tcp -h127.0.0.1 -uroot ping >/dev/null 2>&1 && break; sleep 1; \
		done; \
	fi
	@mysqladmin --protocol=tcp -h127.0.0.1 -uroot ping

# Debian packages the tests drive for real: promtool (metrics and alert rules), chromium
# (the overview page) and systemd-analyze (the unit file).
system-deps:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends $$missing; }; \
	fi

test: $(STAMP) mariadb system-deps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-faults: $(STAMP) mariadb
	$(BIN)/python -m pytest -q tests/faults $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check syncd tests bench
	$(BIN)/ruff format --check syncd tests bench
	$(BIN)/mypy syncd
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format syncd tests bench
	$(BIN)/ruff check --fix syncd tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
