# cellextract: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= all

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Simulates demo/data/demo_1p.tif (with ground truth) and runs the whole DAG of
# config/config.yaml into results/demo_1p/, then writes the HTML report.
demo: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(BIN)/snakemake --cores $(CORES) --rerun-incomplete
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(BIN)/snakemake --cores 1 --report results/demo_1p/report.html
	@echo "demo done: results/demo_1p/ (report: results/demo_1p/report.html)"

test: install
	$(BIN)/python -m pytest -m "not slurm" tests

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not slurm" tests

lint: install
	$(BIN)/snakemake --lint -s Snakefile --configfile config/config.yaml

clean:
	rm -rf demo results .snakemake

# make test-slurm: the workflow on a private single-node Slurm (installs and starts it).
include mk/slurm.mk
