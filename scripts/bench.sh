#!/usr/bin/env bash
# Builds the benchmarks (Release), runs them and writes JSON plus a markdown table per binary:
#   bash scripts/bench.sh [bench_name ...] [-- google-benchmark flags]
# e.g. bash scripts/bench.sh dequantize -- --benchmark_filter='avx512_vnni|memory'
# Output: bench-results/<name>.json and bench-results/<name>.md (the tables in the README).
set -euo pipefail
cd "$(dirname "$0")/.."
names=()
while (($#)) && [[ $1 != -- ]]; do names+=("$1"); shift; done
[[ ${1:-} == -- ]] && shift
source scripts/deps.sh
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOWBIT_BUILD_TESTS=OFF \
  -DLOWBIT_BUILD_EXAMPLES=OFF -DLOWBIT_BUILD_BENCH=ON > /dev/null
if ((${#names[@]} == 0)); then
  for source in bench/*.cpp; do names+=("$(basename "$source" .cpp)"); done
fi
mkdir -p bench-results
for name in "${names[@]}"; do
  cmake --build build-bench -j "${JOBS:-2}" --target "bench_$name"
  "build-bench/bench/bench_$name" --benchmark_out="bench-results/$name.json" --benchmark_out_format=json "$@"
  python3 scripts/bench_table.py "bench-results/$name.json" > "bench-results/$name.md"
  echo "wrote bench-results/$name.json and bench-results/$name.md"
done
