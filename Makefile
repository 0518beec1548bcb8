# cellextract: the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= all

.PHONY: install demo test test-fast test-slurm lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/cellextract simulate --kind 1p --dims 128 128 --frames 1000 --neurons 40 --seed 1 --out demo/data/demo_1p.tif
	$(BIN)/cellextract run demo/data/demo_1p.tif --name demo_1p --out demo/results --cores $(CORES)

test: install
	$(BIN)/python -m pytest -m "not slurm" tests

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not slurm" tests

lint: install
	$(BIN)/snakemake --lint -s Snakefile --configfile config/config.yaml

clean:
	rm -rf demo results .snakemake
