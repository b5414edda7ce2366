#!/usr/bin/env bash
# Developer build: compiles into build/<name> (default "dev") and stages an importable
# package there, so several people can build side by side without pip:
#   ./dev.sh [name] && PYTHONPATH=build/<name>/pkg python -m pytest tests/...
set -euo pipefail
cd "$(dirname "$0")"
name=${1:-dev}
shift || true
bdir=build/$name
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} -DLOGITOPS_TESTING=ON \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" "$@" >/dev/null
cmake --build "$bdir"
mkdir -p "$bdir/pkg/logitops"
for f in python/logitops/*; do ln -sf "$PWD/$f" "$bdir/pkg/logitops/"; done
ln -sf "$PWD/$bdir"/_*.so "$bdir/pkg/logitops/"  # _core, and _testing
