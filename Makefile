# make reproduce : set up .venv and run the quick CPU reproduction -> reports/index.html
# make reproduce CONFIG=sheet.yaml : the same with your runs sheet, checked first (`thinwire check`)
# make standard  : the standard sheet (config/standard.yaml, checked first): every claim 2 cores can power in
#                  ~90 min (`make standard CORES=2`) -> reports-standard/index.html; the quick results stay
# make test      : set up .venv (and, as root, Chromium for the browser test) and run the tests
# make chromium  : (root) apt-install Debian's chromium and chromium-driver if missing (tests/test_browser.py)
# make validate  : (root) performance model vs real runs on shaped links -> reports/validation.csv
# make cluster-test : (root) a real Slurm in network namespaces, the workflow's multi-node runs on it (~10 min)
# make gpu-check [DRY=1] : the prepared device check (thinwire/gpucheck.py; DRY=1: tiny, on the CPU, < 2 min)
# make gpu-wheels : the wheels the GPU machine lacks, and the commit, into .gpu/ (carried to the device)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
CORES ?= all

.PHONY: setup chromium reproduce standard test validate cluster-test bench lint clean gpu-check gpu-wheels

# The constraint keeps DeepSpeed's source build (and pip) from fetching another, CUDA, torch.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	echo 'torch==2.13.0' > $(VENV)/constraints.txt
	DS_BUILD_OPS=0 PIP_CONSTRAINT=$(abspath $(VENV))/constraints.txt \
		$(BIN)/pip install --quiet -e '.[dev,mpi,workflow,deepspeed,cluster,fast]'
	touch $@

setup: $(VENV)/.installed

# Snakemake reads a --configfile before any of the project's code runs (a sheet that is not YAML is its
# own traceback): `thinwire check` reads and plans the sheet first, with a one-line error.
reproduce: setup
ifneq ($(strip $(CONFIG)),)
	@$(BIN)/thinwire check '$(CONFIG)'
endif
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --keep-going $(if $(strip $(CONFIG)),--configfile '$(CONFIG)')
	@echo "report: $(abspath reports/index.html)"

# The standard sheet: the quick sheet's runs where they already power their claims, longer runs and equal
# tuning grids where a claim's declared power needs them (config/standard.yaml; README "The standard sheet").
# Its results and report go to results-standard/ and reports-standard/ (the sheet's results:/reports:).
STANDARD := config/standard.yaml
standard: setup
	@$(BIN)/thinwire check $(STANDARD)
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --keep-going --configfile $(STANDARD)
	@echo "report: $(abspath reports-standard/index.html)"

validate: setup
	$(BIN)/snakemake --cores $(CORES) validation
	$(BIN)/snakemake --cores $(CORES) --keep-going --rerun-incomplete --forcerun report
	@echo "validation: $(abspath reports/validation.csv)"

# Debian's chromium and chromium-driver, which tests/test_browser.py drives: installed with apt when
# missing and root; otherwise, or when apt fails (no network), a message, and the browser test skips.
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium: $$(command -v chromium), chromedriver: $$(command -v chromedriver)"; \
	elif [ "$$(id -u)" = 0 ]; then \
		( DEBIAN_FRONTEND=noninteractive timeout 900 apt-get update -o DPkg::Lock::Timeout=60 && \
		  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -o DPkg::Lock::Timeout=60 \
		    chromium chromium-driver ) \
		|| echo "chromium: apt could not install chromium chromium-driver; tests/test_browser.py will skip"; \
	else \
		echo "chromium: missing and not root: 'sudo apt-get install chromium chromium-driver', else tests/test_browser.py skips"; \
	fi

test: setup chromium
	$(BIN)/python -m pytest

# Installs slurm-wlm and munge with apt if missing; starts and removes its own daemons and namespaces.
cluster-test: setup
	THINWIRE_CLUSTER_TEST=1 $(BIN)/python -m pytest -v -rA tests/cluster

# On a machine with a GPU and this venv: the check in place (archive into $$OUT, else results/gpu-check).
# On the device tool's machine (no venv, no registry): `bash benchmarks/gpu_check_device.sh` with .gpu carried.
gpu-check: setup
	$(BIN)/python -m thinwire.gpucheck $(if $(DRY),--dry)

# Packages thinwire imports that the device image lacks (its python is 3.12), as wheels, at this venv's
# versions; and the commit, since the device's copy of the tree has no .git.
# DeepSpeed (sdist only on PyPI) is built here into a wheel without its ops, with its own needs beside it.
GPU_WHEELS := array-api-compat jsonschema jsonschema-specifications referencing rpds-py \
	hjson pydantic pydantic-core annotated-types typing-inspection numba llvmlite
gpu-wheels: setup
	rm -rf .gpu/wheels && mkdir -p .gpu/wheels
	DS_BUILD_OPS=0 PIP_CONSTRAINT=$(abspath $(VENV))/constraints.txt \
		$(BIN)/pip wheel -q --no-deps --no-build-isolation -w .gpu/wheels deepspeed==0.19.6
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .gpu/wheels $$($(BIN)/pip list --format=freeze 2>/dev/null | grep -iE '^($(shell echo $(GPU_WHEELS) | sed 's/ /|/g' | sed 's/-/[-_]/g'))==')
	printf '{"commit": "%s", "dirty": %s}\n' "$$(git rev-parse HEAD)" \
		"$$(test -z "$$(git status --porcelain --untracked-files=no)" && echo false || echo true)" > .gpu/commit
	@ls .gpu/wheels; cat .gpu/commit

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
	rm -rf results reports/index.html reports/claims.* reports/figures reports/papers reports/runs.html \
		reports/summary.png reports/style.css reports/table.js reports/provenance.json .snakemake
