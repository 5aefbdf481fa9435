# Two entry points that work on a fresh machine with only python3:
#   make demo   -- create .venv, install fastmix, fit a GMM to 10^6 generated points
#   make test   -- create .venv, install fastmix[test], run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test bench compare asv-quick clean

$(VENV)/.stamp-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-base
	$(PIP) install -q -e '.[test]'
	touch $@

$(VENV)/.stamp-bench: $(VENV)/.stamp-base
	$(PIP) install -q -e '.[bench,test]'
	touch $@

demo: $(VENV)/.stamp-base
	$(PY) -m fastmix demo $(ARGS)

test: $(VENV)/.stamp-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

compare: $(VENV)/.stamp-bench
	$(PY) bench/compare.py $(ARGS)

asv-quick: $(VENV)/.stamp-bench
	$(VENV)/bin/asv run --python=same --quick --show-stderr

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .asv
