#!/usr/bin/env bash
# lowbit's full check, as CI runs it (.ci/run). Installs missing dependencies, then:
#   (a) GCC, Release, -Wall -Wextra -Werror: tests (-O2, the level distributions build with; -O3
#       took 1.4x its compile time), benchmarks and examples (-Og, 40% faster to build than -O1;
#       GCC -O0 trips on xsimd 8's AVX-512 shift casts; here they are only compiled and started,
#       never timed) built; ctest (this includes the no-exceptions test, tests/noexcept);
#       benchmarks listed; the demo run
#   (b) Clang, -O0 -gline-tables-only, AddressSanitizer + UndefinedBehaviorSanitizer, -Werror: tests; ctest
#   (c) the consumer projects: add_subdirectory, FetchContent, find_package (tests/consumers/run.sh)
#   (d) conan create with the offline CI profile (.ci/conan/profile), test_package included
#   (e) libFuzzer on the file readers and checkpoint importers (scripts/fuzz.sh): Clang, ASan +
#       UBSan, FUZZ_SECONDS (default 20) per harness from the committed seed corpus
#   (f) when nvcc is on PATH: the CUDA kernels (lowbit/cuda.cuh, through the GPU test, which
#       instantiates every kernel) compiled for sm_80 and sm_90a, the GPU benchmarks to sm_90a PTX, with
#       warnings as errors; no GPU is needed or used (scripts/gpu.sh runs them on one)
# Build directories: build-ci-gcc, build-ci-asan, build-ci-consumers, build-ci-conan, build-ci-fuzz (kept between
# runs, so a rerun is incremental, except build-ci-consumers, which is rebuilt).
#
# env: JOBS=N parallel jobs (default 2); LOWBIT_TEST_QUICK=1 runs phase (a) only.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${JOBS:-2}
quick=${LOWBIT_TEST_QUICK:-0}
script_start=$SECONDS
phase=setup
phase_start=$SECONDS
summary=()
passed_total=0

on_exit() {
  local rc=$?
  if ((rc != 0)); then
    echo
    echo "==== FAILED: phase [$phase] after $((SECONDS - phase_start)) s (exit code $rc)"
  fi
}
trap on_exit EXIT

begin_phase() {  # id, description
  phase=$1
  phase_start=$SECONDS
  echo
  echo "==== [$1] $2 (started at +$((SECONDS - script_start)) s)"
}
end_phase() {  # one-line result
  local elapsed=$((SECONDS - phase_start))
  summary+=("$(printf '[%s] %4d s  %s' "$phase" "$elapsed" "$1")")
  echo "==== [$phase] done in $elapsed s: $1"
}
run_ctest() {  # build directory; prints ctest's summary line, adds its count to passed_total
  local log=$1/ctest.log line
  ctest --test-dir "$1" --output-on-failure -j "$jobs" 2>&1 | tee "$log"
  line=$(grep -E '^[0-9]+% tests passed, 0 tests failed out of [0-9]+' "$log" | tail -n 1)
  [[ -n $line ]] || { echo "no ctest summary in $log" >&2; return 1; }
  passed_total=$((passed_total + ${line##* }))
  ctest_line=$line
}

begin_phase deps "dependencies (installed only if missing)"
source scripts/deps.sh
echo "cmake $(cmake --version | head -n 1 | cut -d' ' -f3), $(g++ --version | head -n 1), $(clang++ --version | head -n 1), $(conan --version)"
end_phase "present"

# (a) -------------------------------------------------------------------------------------------
begin_phase a "GCC Release -Werror: tests, benchmarks, examples; ctest"
cmake -S . -B build-ci-gcc -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
  -DCMAKE_CXX_COMPILER=g++ -DLOWBIT_WERROR=ON -DLOWBIT_SANITIZE= \
  -DLOWBIT_BUILD_TESTS=ON -DLOWBIT_BUILD_BENCH=ON -DLOWBIT_BUILD_EXAMPLES=ON -DLOWBIT_BENCH_EXAMPLE_FLAGS=-Og > build-ci-gcc.configure.log \
  || { cat build-ci-gcc.configure.log; exit 1; }
mv build-ci-gcc.configure.log build-ci-gcc/configure.log
build_start=$SECONDS
cmake --build build-ci-gcc -j "$jobs"
echo "---- build: $((SECONDS - build_start)) s"
run_ctest build-ci-gcc
gcc_ctest_line=$ctest_line
for bench in build-ci-gcc/bench/bench_*; do  # benchmarks are compiled, not timed: check they start
  [[ -x $bench ]] && "$bench" --benchmark_list_tests=true > /dev/null
done
if [[ -x build-ci-gcc/examples/lowbit_demo ]]; then
  echo "---- demo"
  demo_start=$SECONDS
  timeout 300 build-ci-gcc/examples/lowbit_demo
  echo "---- demo: $((SECONDS - demo_start)) s"
fi
end_phase "$gcc_ctest_line"

if [[ $quick != 1 ]]; then
  # (b) -----------------------------------------------------------------------------------------
  begin_phase b "Clang -O0 -gline-tables-only, AddressSanitizer + UndefinedBehaviorSanitizer, -Werror: tests; ctest"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  cmake -S . -B build-ci-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -gline-tables-only" \
    -DCMAKE_CXX_COMPILER=clang++ -DLOWBIT_WERROR=ON -DLOWBIT_SANITIZE=address,undefined \
    -DLOWBIT_BUILD_TESTS=ON -DLOWBIT_BUILD_BENCH=OFF -DLOWBIT_BUILD_EXAMPLES=OFF > build-ci-asan.configure.log \
    || { cat build-ci-asan.configure.log; exit 1; }
  mv build-ci-asan.configure.log build-ci-asan/configure.log
  build_start=$SECONDS
  cmake --build build-ci-asan -j "$jobs"
  echo "---- build: $((SECONDS - build_start)) s"
  run_ctest build-ci-asan
  end_phase "$ctest_line"

  # (c) -----------------------------------------------------------------------------------------
  begin_phase c "consumers: add_subdirectory, FetchContent, find_package"
  JOBS=$jobs bash tests/consumers/run.sh "$PWD/build-ci-consumers"
  passed_total=$((passed_total + 3))
  end_phase "3 consumer projects built and ran"

  # (d) -----------------------------------------------------------------------------------------
  begin_phase d "conan create (header-only package, offline profile, test_package)"
  mkdir -p build-ci-conan
  CONAN_HOME=$PWD/build-ci-conan/home conan create . -pr:a .ci/conan/profile --build=missing -nr \
    2>&1 | tee build-ci-conan/create.log
  grep -q "lowbit .* from Conan: ok" build-ci-conan/create.log \
    || { echo "test_package did not report success" >&2; exit 1; }
  passed_total=$((passed_total + 1))
  end_phase "lowbit package created, test_package built and ran"

  # (e) -----------------------------------------------------------------------------------------
  begin_phase e "libFuzzer: JSON, safetensors, GGUF, checkpoint importers (${FUZZ_SECONDS:-20} s each)"
  JOBS=$jobs bash scripts/fuzz.sh build-ci-fuzz
  passed_total=$((passed_total + 4))
  end_phase "4 fuzzers ran without a crash"

  # (f) -----------------------------------------------------------------------------------------
  begin_phase f "CUDA kernels: nvcc compile for sm_80 and sm_90a, -Werror (compile only)"
  if command -v nvcc > /dev/null; then
    mkdir -p build-ci-cuda
    # Each test instantiates every kernel of its part (GEMM, decode attention, 2:4 GEMM): compiled
    # for both architectures in one nvcc call (the host side once: 16% less time); each benchmark,
    # whose kernels the tests compile to SASS already, to sm_90a PTX only and unoptimized (-Xcicc
    # -O0: its C++ and device code checked without NVVM's optimizer or ptxas, 17 s instead of 53 for
    # bench_cuda.cu); the decode test's CPU reference with the host
    # compiler (to catch API drift; the CPU decode's warnings are phase a's to judge, with the
    # library's ISA flags). One process per line, $jobs at a time, the longest first.
    nvcc_line="nvcc -std=c++17 --expt-relaxed-constexpr -Iinclude -Xcompiler=-Wall,-Wextra,-Werror -Werror all-warnings"
    sm80=-gencode=arch=compute_80,code=sm_80
    sm90a=-gencode=arch=compute_90a,code=sm_90a
    ptx90a=-gencode=arch=compute_90a,code=compute_90a
    compiles=()
    for part in _sparse24 "" _decode; do
      compiles+=("$nvcc_line $sm80 $sm90a -c tests/cuda/test_cuda$part.cu -o build-ci-cuda/test${part}.o")
    done
    for part in "" _decode _sparse24; do
      compiles+=("$nvcc_line $ptx90a -Xcicc -O0 -c bench/cuda/bench_cuda$part.cu -o build-ci-cuda/bench${part}_ptx90a.o")
    done
    compiles+=("g++ -std=c++17 -O1 -Iinclude -c tests/cuda/decode_reference.cpp -o build-ci-cuda/decode_reference.o")
    printf '%s\n' "${compiles[@]}" | xargs -d '\n' -n 1 -P "$jobs" bash -c 'echo "---- ${0##* -c }"; $0'
    passed_total=$((passed_total + 1))
    end_phase "every CUDA kernel compiled for sm_80 and sm_90a (tests/cuda: GEMM, 2:4 GEMM and decode), bench/cuda to sm_90a PTX"
  else
    end_phase "skipped: nvcc is not on PATH"
  fi
fi

phase=summary
echo
echo "==== summary ($((SECONDS - script_start)) s in all)"
printf '%s\n' "${summary[@]}"
echo "$gcc_ctest_line  (phase a: GCC Release)"
echo "$passed_total passed, 0 failed"
