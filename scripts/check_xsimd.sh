#!/usr/bin/env bash
# Builds and runs lowbit's tests against another xsimd (e.g. a checkout of the current release):
#   bash scripts/check_xsimd.sh /path/to/xsimd/include [build-dir]
# Debian's xsimd 8.1 is what CI uses; this checks that the code also builds with a newer one.
set -euo pipefail
cd "$(dirname "$0")/.."
include=$(realpath "$1")
build=${2:-build-xsimd-check}
[[ -f $include/xsimd/xsimd.hpp ]] || { echo "no xsimd/xsimd.hpp under $include" >&2; exit 1; }
config=$(mktemp -d)
cat > "$config/xsimdConfig.cmake" <<CFG
if(NOT TARGET xsimd)
  add_library(xsimd INTERFACE IMPORTED)
  set_target_properties(xsimd PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "$include")
endif()
CFG
grep -m2 -E "define XSIMD_VERSION_(MAJOR|MINOR)" "$include/xsimd/config/xsimd_config.hpp" || true
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLOWBIT_WERROR=ON -DLOWBIT_BUILD_BENCH=OFF \
  -Dxsimd_DIR="$config" > /dev/null
cmake --build "$build" -j "${JOBS:-2}"
ctest --test-dir "$build" -j "${JOBS:-2}" --output-on-failure
