#!/usr/bin/env bash
# Wheels the GPU image lacks, for benchmarks/gpu_slice.sh and benchmarks/gpu_check.py: pydantic,
# jsonschema and pytest (the versions of requirements.txt) with their dependencies, for the
# device's Python 3.12 on x86-64, into build/wheels (ignored by git; carry it with the call).
# Run here, once, from the repository root: bash benchmarks/gpu_wheels.sh
set -euo pipefail
want() { grep -E "^$1==" requirements.txt; }
python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d build/wheels \
  "$(want pydantic)" "$(want jsonschema)" "$(want pytest)"
ls build/wheels
