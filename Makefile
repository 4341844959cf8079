# Two commands on a fresh machine with Python 3.11+ and make:
#   make run   - the main job on the embedded data
#   make test  - the whole suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml setup.py src/rot180/functional/_directc.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rot180 train

# With a C compiler and Python's headers on the machine the optional helper must have built (its
# build failing is otherwise silent: the NumPy engine takes over and the helper's tests skip).
HAVE_CC := $(shell command -v cc >/dev/null 2>&1 && echo 1)
test: $(STAMP)
	ROT180_REQUIRE_HELPER=$$([ -n "$(HAVE_CC)" ] && $(PY) -c "import os, sysconfig; \
	print(int(os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))))") \
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/conv.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
