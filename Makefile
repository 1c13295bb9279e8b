# Zepix Admin: `make run` serves the dashboard, `make test` runs the whole suite.
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export PORT
# `make run` serves this machine in debug mode (and says so); production sets DJANGO_DEBUG=0.
DJANGO_DEBUG ?= 1
export DJANGO_DEBUG

.PHONY: run test setup chromium clean-venv

run: $(VENV)/.installed
	$(PY) manage.py setup
	$(PY) manage.py serve --port $(PORT)

setup: $(VENV)/.installed
	$(PY) manage.py setup

test: $(VENV)/.installed-test chromium
	$(PY) -m pytest

$(VENV)/bin/python:
	@PYTHON=$$(scripts/find-python) && echo "Using $$PYTHON" && "$$PYTHON" -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $(VENV)/.installed $@

# Browser tests drive Debian's Chromium; Playwright cannot download its own browser here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests..."; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

clean-venv:
	rm -rf $(VENV)
