#!/usr/bin/env bash
# The device machine's side of `make gpu-check` (README, "GPU check"): run in the repository root there by
# the device tool, with .gpu/ carried (`make gpu-wheels` fills it here first). Installs the carried wheels
# (packages the device image lacks) into /tmp/site, makes thinwire importable from this checkout without
# building it (its subpackages linked into thinwire/, as pyproject's package-dir maps them: do not run it in
# your own checkout), and runs the check; the archive lands in $OUT. Arguments go to `python3 -m thinwire.gpucheck` (e.g. --budget-s 300).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .gpu/wheels ] || { echo "gpu_check_device.sh: .gpu/wheels missing: run make gpu-wheels here and carry .gpu" >&2; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
# The subpackages linked into thinwire/ of this (throwaway) copy, so that `thinwire` imports from the
# repository root, which is also the working directory of every process the check starts.
for d in algorithms simulators workloads analysis; do ln -sfn "../$d" "thinwire/$d"; done
export PYTHONPATH=$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec python3 -m thinwire.gpucheck "$@"
