# galcat: two commands for a newcomer.
#   make run   - install into .venv and run the default workflow (synthetic survey)
#   make test  - install into .venv and run the whole test suite (what CI runs)
#   make test-fast - the pure-Python tests only (no SLURM, no whole-DAG runs): for contributors
#   make test-min  - the fast tests against the lowest versions pyproject.toml allows
#   make reliability - run the fault suite and rewrite docs/reliability.md from it
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest-xdist workers of `make test`: the whole-DAG tests wait on subprocesses and on
# SLURM's polling much of the time, so two workers fill two cores (tests/conftest.py
# keeps the tests of each expensive session fixture on one worker)
TEST_WORKERS ?= 2

.PHONY: install run test test-fast test-min reliability lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[ml,dev]'
	command -v source-extractor >/dev/null 2>&1 || (DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq source-extractor >/dev/null)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores all

test: $(STAMP)
	$(BIN)/ruff check .
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: $(STAMP)
	$(BIN)/ruff check .
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m "not slow" -q

reliability: $(STAMP)
	GALCAT_RELIABILITY_DOC=docs/reliability.md PATH=$(CURDIR)/$(BIN):$$PATH \
	  $(BIN)/pytest -q tests/faults tests/test_nightly.py

# The lower bounds in pyproject.toml are tested, not guessed: uv resolves every direct
# dependency to the lowest version allowed (the networks' pinned stack is left out); what
# those pull in is held at or below constraints.txt, which the main install just fetched.
MIN := .venv-min
test-min:
	rm -rf $(MIN) $(MIN)-uv
	$(PYTHON) -m venv $(MIN)-uv
	$(MIN)-uv/bin/pip install --quiet uv
	$(MIN)-uv/bin/uv venv --quiet -p $(PYTHON) $(MIN)
	$(PYTHON) .ci/transitive_pins.py pyproject.toml constraints.txt > $(MIN)/transitive.txt
	$(MIN)-uv/bin/uv pip compile --quiet --no-header --resolution lowest-direct \
	  --python-version 3.11 --extra dev -c $(MIN)/transitive.txt pyproject.toml \
	  -o $(MIN)/requirements.txt
	$(MIN)-uv/bin/uv pip install --quiet -p $(MIN)/bin/python -r $(MIN)/requirements.txt
	$(MIN)-uv/bin/uv pip install --quiet -p $(MIN)/bin/python --no-deps -e .
	grep -E '^(numpy|pandas|astropy|photutils|statmorph|zarr|snakemake|dask)==' $(MIN)/requirements.txt
	PATH=$(CURDIR)/$(MIN)/bin:$$PATH $(MIN)/bin/pytest -m "not slow" -q --ignore=tests/models

bench: $(STAMP)
	$(BIN)/python bench/dag_plan.py --objects 10000 100000 1000000

clean:
	rm -rf results .snakemake
