# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test install install-test lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PIP) install -q -e .

demo: install
	$(VENV)/bin/numbapool demo

install-test: $(PY)
	$(PIP) install -q -e ".[test]"

lint: install-test
	$(VENV)/bin/ruff check src tests tools

test: install-test lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
