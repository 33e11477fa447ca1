#!/usr/bin/env bash
# The GPU run (on a machine with an NVIDIA GPU, nvcc and cuBLAS; installs nothing): configures
# lowbit with LOWBIT_WITH_CUDA=ON for sm_80 + sm_90a, builds the CUDA test and benchmark, runs the
# test (every format against the CPU reference), then the benchmark against cuBLAS fp16.
# Prints the device and tool versions first. env: BUILD_DIR (default build-cuda), JOBS, BENCH_ARGS
# (e.g. --quick). xsimd (the library target's one dependency) is found as usual, or in
# .gpu-deps/ (a copy of its headers and CMake files carried to a bare machine).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-cuda}
jobs=${JOBS:-$(nproc)}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
nvcc --version | tail -n 2
prefix=()
[[ -d .gpu-deps ]] && prefix=(-DCMAKE_PREFIX_PATH="$PWD/.gpu-deps")
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)

cmake -S . -B "$build" "${generator[@]}" "${prefix[@]}" -DCMAKE_BUILD_TYPE=Release -DLOWBIT_WITH_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="80;90a" -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_BENCH=OFF \
  -DLOWBIT_BUILD_EXAMPLES=OFF > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
start=$SECONDS
cmake --build "$build" -j "$jobs" --target lowbit_test_cuda lowbit_bench_cuda
echo "---- build: $((SECONDS - start)) s"

echo "---- test"
"$build/lowbit_test_cuda" | tee "$build/test_cuda.log" | grep -v '^ok ' || true
grep -q '^PASSED' "$build/test_cuda.log"
echo "---- benchmark"
"$build/lowbit_bench_cuda" ${BENCH_ARGS:-}
