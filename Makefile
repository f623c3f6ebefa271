# steadycast: every target sets itself up on a fresh machine.
#   make demo   the whole job on the bundled real sample (in .venv)
#   make test   the test suite (quick: slow tests are left to `make test-all`), in .venv-test

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The tests' own environment: steadycast plus the model plugins the tests load through their
# entry points (misbehaving chaos models, the plugin template). They stay out of .venv, so a
# user's runs there (`make demo`, `.venv/bin/steadycast`) never load them.
TEST_VENV  := .venv-test
TEST_PY    := $(TEST_VENV)/bin/python
TEST_STAMP := $(TEST_VENV)/.installed
PLUGINS := examples/model_template tests/plugins/chaos_models
# A .venv made when the plugins were installed there has them removed, once.
NO_PLUGINS_STAMP := $(VENV)/.without-test-plugins

.PHONY: setup demo test test-all accuracy lint format bench reliability clean browser postgresql

setup: $(STAMP) $(NO_PLUGINS_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

$(NO_PLUGINS_STAMP): $(STAMP)
	$(PY) -m pip uninstall --quiet --yes steadycast-chaos-models steadycast-model-template 2>/dev/null || true
	touch $(NO_PLUGINS_STAMP)

$(TEST_STAMP): pyproject.toml $(wildcard examples/model_template/pyproject.toml tests/plugins/*/pyproject.toml)
	test -x $(TEST_PY) || $(PYTHON) -m venv $(TEST_VENV)
	$(TEST_PY) -m pip install --quiet --upgrade pip
	$(TEST_PY) -m pip install --quiet -e '.[dev,spark,dagster]'
	for p in $(PLUGINS); do $(TEST_PY) -m pip install --quiet -e $$p || exit 1; done
	touch $(TEST_STAMP)

# The demo tells a story from an empty workspace, so each `make demo` starts a fresh one.
demo: setup
	rm -rf demo-workspace
	$(VENV)/bin/steadycast demo demo-workspace

# Debian's chromium for the browser tests (Playwright cannot download browsers here).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; \
	else echo "browser tests need /usr/bin/chromium: run 'sudo apt-get install -y chromium' (they skip without it)"; fi

# Debian's PostgreSQL server for the source and sink tests (each test starts its own in a
# temporary directory; nothing runs as a service).
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; apt-get install -y postgresql || { apt-get update && apt-get install -y postgresql; }; \
	else echo "PostgreSQL tests need Debian's server: run 'sudo apt-get install -y postgresql' (they skip without it)"; fi

test: $(TEST_STAMP) browser postgresql
	$(TEST_PY) -m pytest -m "not slow" -q

test-all: $(TEST_STAMP) browser postgresql
	$(TEST_PY) -m pytest -q

# The accuracy check alone (it also runs in `make test`): the default pools on fixed samples of
# real series must not lose accuracy (tests/accuracy: M4 Weekly, and GEFCom2012 hourly load with
# its temperatures as a covariate).
accuracy: $(TEST_STAMP)
	$(TEST_PY) -m pytest tests/accuracy -q

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/run_all.py

# The long fault-injection suite; writes docs/RELIABILITY.md with its figures.
RELIABILITY_FIGURES := .reliability/figures.jsonl
reliability: $(TEST_STAMP) browser
	rm -f $(RELIABILITY_FIGURES)
	status=0; STEADYCAST_RELIABILITY=long STEADYCAST_RELIABILITY_FIGURES=$(CURDIR)/$(RELIABILITY_FIGURES) \
		$(TEST_PY) -m pytest tests/reliability -q || status=$$?; \
	$(TEST_PY) tests/reliability/report.py $(RELIABILITY_FIGURES) docs/RELIABILITY.md || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) $(TEST_VENV) demo-workspace .pytest_cache build *.egg-info src/*.egg-info
