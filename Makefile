# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
PLUGINS := $(wildcard plugins/*/pyproject.toml)
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(PLUGINS))

.PHONY: demo test install install-test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PIP) install -q -e . $(addprefix -e ,$(PLUGIN_DIRS))

demo: install
	$(VENV)/bin/numbapool demo

install-test: $(PY)
	$(PIP) install -q -e ".[test]" $(addprefix -e ,$(PLUGIN_DIRS))

lint: install-test
	$(VENV)/bin/ruff check src tests tools plugins

test: install-test lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
