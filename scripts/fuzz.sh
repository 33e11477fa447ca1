#!/usr/bin/env bash
# Builds lowbit's libFuzzer harnesses (tests/fuzz) with Clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs each for FUZZ_SECONDS (default 30) from its committed seed
# corpus (tests/fuzz/corpus/<name>, copied into the build directory so the seeds stay as they
# are). A crash, a leak, a timeout (10 s) or an input needing more than 2 GB stops the script
# with the reproducer under <build>/artifacts/; turn it into a regression test.
#
# usage: scripts/fuzz.sh [build-dir]   env: FUZZ_SECONDS, JOBS
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-30}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -gline-tables-only" \
  -DCMAKE_CXX_COMPILER=clang++ -DLOWBIT_WERROR=ON -DLOWBIT_SANITIZE=address,undefined \
  -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_BENCH=OFF -DLOWBIT_BUILD_EXAMPLES=OFF -DLOWBIT_BUILD_FUZZERS=ON > /dev/null
cmake --build "$build" -j "${JOBS:-2}"
mkdir -p "$build/artifacts"
for name in json safetensors gguf checkpoint; do
  corpus=$build/corpus/$name
  mkdir -p "$corpus"
  cp -n tests/fuzz/corpus/$name/* "$corpus/"
  echo "---- fuzz_$name: $seconds s from $(ls "$corpus" | wc -l) inputs"
  "$build/tests/fuzz/fuzz_$name" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="$build/artifacts/$name-" -print_final_stats=1 2>&1 | grep -E "^(#|stat::number_of_executed_units|==|SUMMARY|Done)" | tail -n 4
  test "${PIPESTATUS[0]}" -eq 0
done
