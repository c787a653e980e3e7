# Entry points that work on a fresh machine: `make demo`, `make test`, `make test-fast` and
# `make test-full`.
# Each creates .venv (Python 3.12) when it is missing and installs the package with its dev extra.
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) $(shell command -v python3.12) python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast test-full mutation golden gpu-carry clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 12), f"need Python 3.12, got {sys.version}"'
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VPY) -m samp_jax.app demo

# What CI runs (.ci/run): every test but those marked `full` (`make test-full` runs them too);
# tests marked `gpu` skip themselves without a GPU (tests/conftest.py). Two pytest
# workers (pytest-xdist), each test file on one worker: most tests are bound by single-threaded
# compilation, which two workers on two cores overlap, and the workers share one persistent XLA
# compilation cache (tests/conftest.py; SAMP_JAX_TEST_XLA_CACHE=off disables it). A tiny model's
# programs compile at XLA's level 0, in a half to two thirds of the time (tests/small_programs.py).
# TEST_JOBS=0 runs in one process. Workers share a GPU, so none preallocates its memory. Python
# writes bytecode during the run even where PYTHONDONTWRITEBYTECODE is set (into the ignored
# __pycache__ folders): each worker and each of the hundreds of processes the tests start then
# reads the project's modules, and pytest its assertion-rewritten test modules, compiled once
# (about 8 s of each worker's collection on a 2-core CPU). Files
# go to the workers in collection order (--no-loadscope-reorder; xdist's default starts the files
# with the most tests first), which tests/conftest.py begins with the longest files
# (LONGEST_FIRST), so that they overlap the many short ones instead of ending the run alone.
TEST_JOBS ?= 2
PYTEST := XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONDONTWRITEBYTECODE= $(VPY) -m pytest -q -n $(TEST_JOBS) --dist loadfile \
	--no-loadscope-reorder --durations=15
test: $(STAMP)
	$(PYTEST) -m "not full" tests

# Skips the tests marked `slow`: minutes each on a 2-core CPU; processes started, killed or
# restarted (distributed peers, a restart that reads the compilation cache, Ctrl-C, examples);
# whole workflows run end to end (several commands in a row, a search, every bench contender).
# The numerics, kernels, loaders, faults and each command's own tests stay in.
test-fast: $(STAMP)
	$(PYTEST) -m "not slow and not full" tests

# Every test. `full` marks the cases of a family or variant matrix beyond those `make test` runs
# (families that run another family's code under their own name; the FP16 and FFN-only INT8
# presets on families other than BERT, as fully INT8 runs FP16 between its sites and quantizes
# FFN-only's sites too; the search from folder to predictions on the families whose attention is
# BERT's; the 8-device run of every family) and the example that repeats workflows `make test`
# runs elsewhere on the real model.
test-full: $(STAMP)
	$(PYTEST) tests

# Applies each deliberate fault of tools/mutation_check.py (static scale ignored, floor instead
# of round, ...) to a copy of the tree, one at a time, and runs the fast tests that must catch
# it; every mutant must be killed. Writes docs/results/mutation.json and mutation.md.
mutation: $(STAMP)
	$(VPY) tools/mutation_check.py

# Regenerates tests/golden with Hugging Face's own code (torch + transformers 4.57, Python 3.11).
golden: $(STAMP)
	bash tools/make_golden.sh

# What benchmarks/gpu_check.sh needs on a GPU machine that has no package registry, in the
# ignored folders a device run carries (.whl and .carry): a flax 0.12.10 wheel and an FP16 copy
# of MiniLM (about 45 MB).
gpu-carry: $(STAMP)
	$(VPY) -m pip download -q --no-deps --only-binary :all: --dest .whl flax==0.12.10
	PYTHONPATH=. $(VPY) benchmarks/minilm_fp16.py --out .carry/minilm-fp16

clean:
	rm -rf $(VENV) .pytest_cache
