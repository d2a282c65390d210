# galcat: two commands for a newcomer.
#   make run   - install into .venv and run the default workflow (synthetic survey)
#   make test  - install into .venv and run the whole test suite (what CI runs)
#   make test-fast - the pure-Python tests only (no SLURM, no whole-DAG runs): for contributors
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast lint bench clean

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
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/ruff check .
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m "not slow" -q

bench: $(STAMP)
	$(BIN)/python bench/dag_plan.py --objects 10000 100000 1000000

clean:
	rm -rf results .snakemake
