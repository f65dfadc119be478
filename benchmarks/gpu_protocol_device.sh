#!/usr/bin/env bash
# The accelerator machine's one prepared run of benchmarks/gpu_protocol.py (README, "The study's protocol on a GPU").
#
# That machine has JAX, numpy, pandas, scikit-learn, h5py, ... on Python 3.12 but no TensorFlow, Keras or
# pydantic; the missing wheels travel in .whl/ (benchmarks/device_wheels.txt says which and how to fetch them).
# Usage there:  bash benchmarks/gpu_protocol_device.sh [gpu_protocol.py options]
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
out="${OUT:-/tmp/gpu-protocol}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>&1 || echo "no nvidia-smi" > "$out/gpu.csv"
python3 benchmarks/gpu_protocol.py --out "$out/gpu_protocol.json" "$@" 2>&1 | tee "$out/gpu_protocol.log"
