#!/usr/bin/env bash
# Builds lowbit's libFuzzer harnesses (tests/fuzz) with Clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs each for FUZZ_SECONDS (default 20) from its committed seed
# corpus (tests/fuzz/corpus/<name>, copied into the build directory so the seeds stay as they
# are). A crash, a leak, a timeout (10 s) or an input needing more than 2 GB stops the script
# with the reproducer under <build>/artifacts/; turn it into a regression test.
#
# usage: scripts/fuzz.sh [build-dir]   env: FUZZ_SECONDS, JOBS (harnesses run JOBS at a time,
# default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-20}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -gline-tables-only" \
  -DCMAKE_CXX_COMPILER=clang++ -DLOWBIT_WERROR=ON -DLOWBIT_SANITIZE=address,undefined \
  -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_BENCH=OFF -DLOWBIT_BUILD_EXAMPLES=OFF -DLOWBIT_BUILD_FUZZERS=ON > /dev/null
cmake --build "$build" -j "${JOBS:-2}"
mkdir -p "$build/artifacts"
# One harness: its corpus copied, run, its output to $build/fuzz_<name>.log.
fuzz_one() {
  local name=$1 corpus=$build/corpus/$1
  mkdir -p "$corpus"
  cp -n tests/fuzz/corpus/$name/* "$corpus/"
  "$build/tests/fuzz/fuzz_$name" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="$build/artifacts/$name-" -print_final_stats=1 > "$build/fuzz_$name.log" 2>&1
}
# Each harness is one process: JOBS of them at a time.
names=(json safetensors gguf checkpoint)
declare -A pid_of
failed=0
for name in "${names[@]}"; do
  while (($(jobs -rp | wc -l) >= ${JOBS:-2})); do sleep 0.2; done
  echo "---- fuzz_$name: $seconds s from $(ls tests/fuzz/corpus/$name | wc -l) seed inputs"
  fuzz_one "$name" &
  pid_of[$name]=$!
done
for name in "${names[@]}"; do
  if wait "${pid_of[$name]}"; then
    echo "---- fuzz_$name: ok"
    grep -E "^(#[0-9]+.*DONE|Done )" "$build/fuzz_$name.log" | tail -n 2
  else
    echo "---- fuzz_$name: FAILED (reproducer under $build/artifacts/)"
    tail -n 60 "$build/fuzz_$name.log"
    failed=1
  fi
done
exit "$failed"
