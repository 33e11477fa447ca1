#!/usr/bin/env bash
# The GPU run (on a machine with an NVIDIA GPU, nvcc and cuBLAS; installs nothing): configures
# lowbit with LOWBIT_WITH_CUDA=ON for sm_80 + sm_90a, builds the CUDA tests and benchmarks, runs the
# tests (every GEMM format and every KV format against the CPU library), then the benchmarks: the
# GEMM against cuBLAS fp16 and PyTorch's int4 weight-only GEMM (bench/cuda/torch_int4.py), decode
# attention against PyTorch SDPA fp16 (bench/cuda/sdpa_decode.py), the 2:4 GEMM against cuBLAS,
# lowbit's dense kernel of the same format and cuSPARSELt through PyTorch (bench/cuda/cusparselt_24.py).
# Prints the device and tool versions first. env: GPU_PARTS (default "gemm decode sparse24"; any of
# gemm, decode, sparse24: the 2:4 GEMM, int4 / int8 / fp16 / bf16 kept values with fp16 / bf16
# activations, and W8A8),
# BUILD_DIR (default build-cuda), JOBS, BENCH_ARGS, CUDA_ARCHS (default "80;90a")
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
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-80;90a}" -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_BENCH=OFF \
  -DLOWBIT_BUILD_EXAMPLES=OFF > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
parts=${GPU_PARTS:-gemm decode sparse24}
targets=()
[[ $parts == *gemm* ]] && targets+=(lowbit_test_cuda lowbit_bench_cuda)
[[ $parts == *decode* ]] && targets+=(lowbit_test_cuda_decode lowbit_bench_cuda_decode)
[[ $parts == *sparse24* ]] && targets+=(lowbit_test_cuda_sparse24 lowbit_bench_cuda_sparse24)
start=$SECONDS
cmake --build "$build" -j "$jobs" --target "${targets[@]}"
echo "---- build: $((SECONDS - start)) s"

if [[ $parts == *gemm* ]]; then
  echo "---- test: gemm"
  "$build/lowbit_test_cuda" | tee "$build/test_cuda.log" | grep -v '^ok ' || true
  grep -q '^PASSED' "$build/test_cuda.log"
fi
if [[ $parts == *decode* ]]; then
  echo "---- test: decode"
  "$build/lowbit_test_cuda_decode" | tee "$build/test_cuda_decode.log" | grep -v '^ok ' || true
  grep -q '^PASSED' "$build/test_cuda_decode.log"
fi
if [[ $parts == *sparse24* ]]; then
  echo "---- test: sparse24"
  "$build/lowbit_test_cuda_sparse24" | tee "$build/test_cuda_sparse24.log" | grep -v '^ok ' || true
  grep -q '^PASSED' "$build/test_cuda_sparse24.log"
fi
if [[ $parts == *gemm* ]]; then
  echo "---- benchmark: gemm (against cuBLAS fp16; then PyTorch's int4 weight-only GEMM, same machine, same call)"
  "$build/lowbit_bench_cuda" ${BENCH_ARGS:-}
  python3 bench/cuda/torch_int4.py || echo "(PyTorch int4 peer not run: no torch with CUDA here)"
fi
if [[ $parts == *decode* ]]; then
  echo "---- benchmark: decode attention (against PyTorch SDPA fp16, same machine, same call)"
  python3 bench/cuda/sdpa_decode.py || echo "(PyTorch SDPA peer not run: no torch with CUDA here)"
  "$build/lowbit_bench_cuda_decode" ${BENCH_ARGS:-}
fi
if [[ $parts == *sparse24* ]]; then
  echo "---- benchmark: 2:4 gemm (against cuBLAS fp16 / bf16 dense and lowbit's dense kernel, same run)"
  "$build/lowbit_bench_cuda_sparse24" ${BENCH_ARGS:-}
  echo "---- benchmark: cuSPARSELt 2:4 through PyTorch (fp16 / bf16, then int8), same machine, same call"
  python3 bench/cuda/cusparselt_24.py || echo "(cuSPARSELt peer not run: no torch with CUDA and cuSPARSELt here)"
  python3 bench/cuda/cusparselt_24.py --int8 || echo "(cuSPARSELt int8 peer not run)"
fi
