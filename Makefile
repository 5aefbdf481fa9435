# Two entry points that work on a fresh machine with only python3:
#   make demo   -- create .venv, install fastmix, fit a GMM to 10^6 generated points
#   make test   -- create .venv, install fastmix[test], run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo demo-gpu test test-gpu bench bench-gpu compare asv-quick docs lint clean

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

$(VENV)/.stamp-docs: $(VENV)/.stamp-base
	$(PIP) install -q -e '.[docs]'
	touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-base
	$(PIP) install -q -e '.[dev]'
	touch $@

$(VENV)/.stamp-cuda: $(VENV)/.stamp-test
	$(PIP) install -q -e '.[cuda,test]'
	touch $@

demo: $(VENV)/.stamp-base
	$(PY) -m fastmix demo $(ARGS)

# On a machine with an NVIDIA GPU (driver only; the CUDA 12 runtime comes from pip):
demo-gpu: $(VENV)/.stamp-cuda
	$(PY) -m fastmix demo --device cuda $(ARGS)

test-gpu: $(VENV)/.stamp-cuda
	FASTMIX_TEST_GPU=real $(PY) -m pytest -q tests/test_gpu.py tests/test_gpu_lowrank.py \
		tests/test_gpu_gemm.py tests/test_gpu_sgd.py tests/test_gpu_expansion.py $(PYTEST_ARGS)

bench-gpu: $(VENV)/.stamp-cuda
	$(PY) bench/gpu.py $(ARGS)

# TEST_WORKERS: pytest-xdist worker processes (0: in this process)
TEST_WORKERS ?= 2
test: $(VENV)/.stamp-test
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

compare: $(VENV)/.stamp-bench
	$(PY) bench/compare.py $(ARGS)

asv-quick: $(VENV)/.stamp-bench
	$(VENV)/bin/asv machine --yes > /dev/null  # a fresh machine has no asv machine file
	$(VENV)/bin/asv run --python=same --quick --show-stderr

# HTML documentation into docs/_build/html; any Sphinx warning fails the build.  The user
# guide's examples run as tests in `make test` (tests/test_docs.py).
docs: $(VENV)/.stamp-docs
	$(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html

# ruff (style and errors) and mypy (types; the level is set in pyproject.toml, [tool.mypy])
lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check fastmix tests bench docs
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .asv docs/_build docs/api/generated docs/benchmarks
