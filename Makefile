# make reproduce : set up .venv and run the quick CPU reproduction -> reports/index.html
# make test      : set up .venv and run the tests
# make validate  : (root) performance model vs real runs on shaped links -> reports/validation.csv
# make cluster-test : (root) a real Slurm in network namespaces, the workflow's multi-node runs on it (~10 min)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
CORES ?= all

.PHONY: setup reproduce test validate cluster-test bench lint clean

# The constraint keeps DeepSpeed's source build (and pip) from fetching another, CUDA, torch.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	echo 'torch==2.13.0' > $(VENV)/constraints.txt
	DS_BUILD_OPS=0 PIP_CONSTRAINT=$(abspath $(VENV))/constraints.txt \
		$(BIN)/pip install --quiet -e '.[dev,mpi,workflow,deepspeed,cluster]'
	touch $@

setup: $(VENV)/.installed

reproduce: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --keep-going
	@echo "report: $(abspath reports/index.html)"

validate: setup
	$(BIN)/snakemake --cores $(CORES) validation
	$(BIN)/snakemake --cores $(CORES) --keep-going --rerun-incomplete --forcerun report
	@echo "validation: $(abspath reports/validation.csv)"

test: setup
	$(BIN)/python -m pytest

# Installs slurm-wlm and munge with apt if missing; starts and removes its own daemons and namespaces.
cluster-test: setup
	THINWIRE_CLUSTER_TEST=1 $(BIN)/python -m pytest -v -rA tests/cluster

bench: setup
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_compressors.py
	$(BIN)/python benchmarks/bench_perfmodel.py
	$(BIN)/python benchmarks/bench_sdp4bit.py
	$(BIN)/python benchmarks/bench_simulator_large.py
	$(BIN)/python benchmarks/bench_onebit_allreduce.py

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf results reports/index.html reports/claims.* reports/figures .snakemake
