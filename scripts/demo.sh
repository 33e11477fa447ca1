#!/usr/bin/env bash
# lowbit's demo: installs missing dependencies, builds examples/lowbit_demo.cpp in Release (tests
# and benchmarks off) and runs it. It quantizes one weight matrix in every format lowbit has and
# prints bits per weight, signal-to-quantization-noise and dequantization speed per ISA path.
#
# env: JOBS=N parallel jobs (default 2); BUILD_DIR (default build-demo).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/deps.sh
build=${BUILD_DIR:-build-demo}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_BENCH=OFF -DLOWBIT_BUILD_EXAMPLES=ON > /dev/null
cmake --build "$build" --target lowbit_demo -j "${JOBS:-2}"
echo
"$build/examples/lowbit_demo"
