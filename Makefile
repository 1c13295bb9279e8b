# Zepix Admin: `make run` serves the dashboard, `make test` runs the whole suite.
# CI (.ci/run) runs `make lint typecheck test`; `make test-fast` is the quick loop (no browser, no
# server processes).
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT
# `make run` serves this machine in debug mode (and says so); production sets DJANGO_DEBUG=0.
DJANGO_DEBUG ?= 1
export DJANGO_DEBUG
# Every install is held to the versions in requirements.lock (transitive dependencies included).
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock

.PHONY: run test test-fast lint typecheck lock setup chromium axe-core redis-server postgresql clean-venv

run: $(VENV)/.installed
	$(PY) manage.py setup
	$(PY) manage.py serve --port $(PORT)

setup: $(VENV)/.installed
	$(PY) manage.py setup

# Three workers (pytest-xdist), a test file each at a time (a file's shared server stays shared).
# The tests wait on the processes they start for a third of their time: on this 2-core machine
# the first pass took 5:40 on two workers, 4:49 on three, 5:19 on four (and starved a test).
PYTEST_PARALLEL := -n 3 --dist loadfile
# The tests start some 250 commands and a hundred servers and consumers, each compiling the
# project's modules again where PYTHONDONTWRITEBYTECODE is set (as on these machines): 0.1-0.2 s
# of each start's 0.9 s. Their bytecode is kept under .cache, out of the source tree.
PYTEST := env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(CURDIR)/.cache/pycache $(PY) -m pytest

# Then the tests of the central database again, on a throw-away PostgreSQL cluster
# (ZEPIX_TEST_POSTGRES=1: zepix_admin/settings_test.py starts it and stops it).
test: $(VENV)/.installed-dev chromium axe-core redis-server postgresql
	$(PYTEST) $(PYTEST_PARALLEL)
	ZEPIX_TEST_POSTGRES=1 $(PYTEST) -m "not slow and not browser" -q $(PYTEST_PARALLEL)

test-fast: $(VENV)/.installed-dev
	$(PYTEST) -m "not slow and not browser" -q $(PYTEST_PARALLEL)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# mypy's Django plugin loads the test settings, which make throw-away folders and remove them
# when the process ends; mypy ends without that (os._exit): a pair was left in /tmp each run.
typecheck: $(VENV)/.installed-dev
	ZEPIX_DATA_DIR=$(CURDIR)/.cache/mypy/data ZEPIX_CONFIG_DIR=$(CURDIR)/.cache/mypy/config $(VENV)/bin/mypy .

# Re-pin every package after changing a requirements file: a fresh venv, then its exact versions.
lock: | $(VENV)/bin/python
	rm -rf $(VENV)-lock
	@PYTHON=$$(scripts/find-python) && "$$PYTHON" -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet -r requirements-dev.txt
	{ echo "# Every package, pinned: made by \`make lock\` from requirements-dev.txt in a fresh venv."; \
	  echo "# Installs use it as constraints (pip install -c requirements.lock -r requirements.txt)."; \
	  $(VENV)-lock/bin/pip freeze --all | grep -v '^pip==\|^setuptools=='; } > requirements.lock
	rm -rf $(VENV)-lock

$(VENV)/bin/python:
	@PYTHON=$$(scripts/find-python) && echo "Using $$PYTHON" && "$$PYTHON" -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements.lock | $(VENV)/bin/python
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-test.txt requirements-dev.txt requirements.lock | $(VENV)/bin/python
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $(VENV)/.installed $@

# Browser tests drive Debian's Chromium; Playwright cannot download its own browser here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests..."; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The several-machines tests start a private redis-server (a free port, no persistence).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "Installing Debian's redis-server for the tests..."; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# The central-database tests also run on PostgreSQL 15's server programs (initdb, pg_ctl).
postgresql:
	@test -x /usr/lib/postgresql/15/bin/initdb || { \
		echo "Installing Debian's postgresql for the tests..."; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql >/dev/null; }

# The accessibility checks inject axe-core (the npm package) into the pages under test.
AXE_CORE_VERSION := 4.14.1
axe-core:
	@test -f .cache/npm/node_modules/axe-core/axe.min.js || { \
		command -v npm >/dev/null 2>&1 || { \
			if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
			$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq npm >/dev/null; }; \
		npm install --silent --no-audit --no-fund --prefix .cache/npm axe-core@$(AXE_CORE_VERSION); }

clean-venv:
	rm -rf $(VENV)
