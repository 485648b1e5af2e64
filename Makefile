# make reproduce : set up .venv and run the quick CPU reproduction -> reports/index.html
# make test      : set up .venv and run the tests
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
CORES ?= all

.PHONY: setup reproduce test bench lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,mpi,workflow]'
	touch $@

setup: $(VENV)/.installed

reproduce: setup
	$(BIN)/snakemake --cores $(CORES) --keep-going --rerun-incomplete
	@echo "report: $(abspath reports/index.html)"

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_compressors.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf results reports/index.html reports/claims.* reports/figures .snakemake
