# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
PLUGINS := $(wildcard plugins/*/pyproject.toml)
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(PLUGINS))

.PHONY: demo test test-gpu install install-test lint bench bench-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PIP) install -q -e . $(addprefix -e ,$(PLUGIN_DIRS))

demo: install
	$(VENV)/bin/numbapool demo

install-test: $(PY)
	$(PIP) install -q -e ".[test]" $(addprefix -e ,$(PLUGIN_DIRS))

lint: install-test
	$(VENV)/bin/ruff check src tests tests_cuda tools plugins asv_bench

# The CUDA tests run in their own pytest process, under Numba's CUDA simulator (no GPU).
test: install-test lint bench-check
	$(PY) -m pytest -q
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest -q tests_cuda

# The same CUDA tests on a real GPU.
test-gpu: install-test
	$(PY) -m pytest -q tests_cuda

# `asv check`: every benchmark imports and is well formed (a broken benchmark fails CI).
bench-check: install-test
	cd asv_bench && ../$(VENV)/bin/asv check --python=same

# The asv suite on the current checkout, in this environment; extra flags via ASV_ARGS,
# e.g. make bench ASV_ARGS='--bench TimeCases'.
bench: install-test
	cd asv_bench && ../$(VENV)/bin/asv machine --yes >/dev/null && \
	  ../$(VENV)/bin/asv run --python=same --set-commit-hash=$$(git rev-parse HEAD) $(ASV_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
