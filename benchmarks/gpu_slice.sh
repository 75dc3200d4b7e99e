#!/usr/bin/env bash
# The one device call of benchmarks/gpu_slice.py (docs/scaling.md), from the repository root:
#   device run, carry ["build/wheels"], timeout_s 540:  bash benchmarks/gpu_slice.sh
# build/wheels holds pydantic, jsonschema, pytest and their dependencies for Python 3.12
# (benchmarks/gpu_check.py says how to download them). Everything comes back in three files:
# $OUT/gpu_slice.tar.gz (the slice's analysis and the record), gpu_slice.json and gpu_slice.log.
set -o pipefail
export PYTHONUNBUFFERED=1
out="${OUT:-build/gpu_slice}"
mkdir -p "$out"
python3 benchmarks/gpu_slice.py --out "$out" --budget "${BUDGET:-450}" "$@" 2>&1 | tee "$out/gpu_slice.log"
