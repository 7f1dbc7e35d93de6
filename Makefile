# KSCU Workbench: two commands.
#   make run    install into .venv if needed, then open the workbench at http://127.0.0.1:7860
#   make test   install into .venv if needed (plus Debian's chromium for browser tests), run the tests
#   make test-fast   the tests not marked slow (no app, browser or full-size training): 6-8 min on 2 cores
# Extra pytest arguments: make test PYTEST_ARGS="-k tokenizer -x"

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# torch's pin, read from requirements.txt so there is one place to change it.
TORCH := $(shell grep -E '^torch==' requirements.txt)
CHROMIUM := /usr/bin/chromium
TEST_ENV := HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1
PYTEST_ARGS ?=

.PHONY: run test test-fast install browser bench clean-venv

run: install
	GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 $(PY) app.py

test: install browser
	$(TEST_ENV) $(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(TEST_ENV) $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

install: $(STAMP)

# torch goes in alone first: pip then takes the pinned CPU wheel from the machine's local wheels,
# and the second install finds it satisfied instead of resolving a multi-GB CUDA build.
# The stamp makes this a no-op until a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check "$(TORCH)"
	$(PIP) install --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# Debian's chromium, driven by the playwright package (never `playwright install`, which downloads
# a browser build). Where there is no apt-get, the browser tests are expected to skip.
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "warning: $(CHROMIUM) missing and no apt-get here: browser tests will skip" >&2; \
	else \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi

bench: install
	@shopt -s nullglob; scripts=(benchmarks/[!_]*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no benchmarks in benchmarks/"; exit 0; fi; \
	for f in "$${scripts[@]}"; do echo "== $$f"; $(TEST_ENV) $(PY) "$$f" || exit 1; done

clean-venv:
	rm -rf $(VENV)
