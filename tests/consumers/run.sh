#!/usr/bin/env bash
# Configures, builds and runs the three consumer projects of tests/consumers/: lowbit through
# add_subdirectory, through FetchContent from a local git repository, and through find_package
# after `cmake --install` into a temporary prefix. No network is used.
#
# usage: tests/consumers/run.sh [build-dir]   (default: <repo>/build-ci-consumers, wiped first)
# env:   JOBS (default 2); CXX picks the compiler; LOWBIT_GIT_REPOSITORY / LOWBIT_GIT_TAG override
#        what FetchContent fetches. By default it fetches HEAD of this repository; when the working
#        tree has changes, it fetches a snapshot commit of the working tree in a scratch repository
#        inside the build directory instead, so that all three consumers test the same code.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build-ci-consumers}
jobs=${JOBS:-2}
generator=()
if command -v ninja > /dev/null; then generator=(-G Ninja); fi
common=("${generator[@]}" -DCMAKE_BUILD_TYPE=Release)
if [[ -n ${CXX:-} ]]; then common+=(-DCMAKE_CXX_COMPILER="$CXX"); fi

rm -rf "$build"
mkdir -p "$build"

configure_build_run() {  # name, then extra cmake arguments
  local name=$1
  shift
  echo "--- consumer: $name"
  cmake -S "$here/$name" -B "$build/$name" "${common[@]}" "$@" | tee "$build/$name.configure.log"
  cmake --build "$build/$name" -j "$jobs"
  ctest --test-dir "$build/$name" --output-on-failure -V | grep -E '^[0-9]+: \[|tests passed|tests failed' || true
  ctest --test-dir "$build/$name" --output-on-failure > /dev/null
  echo "--- consumer: $name passed"
}

# 1. add_subdirectory of the source tree.
configure_build_run add_subdirectory -DLOWBIT_SOURCE_DIR="$root"

# 2. find_package after cmake --install into a temporary prefix.
echo "--- installing lowbit into $build/prefix"
cmake -S "$root" -B "$build/lowbit" "${common[@]}" \
  -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_BENCH=OFF -DLOWBIT_BUILD_EXAMPLES=OFF > "$build/lowbit.configure.log"
cmake --build "$build/lowbit"
cmake --install "$build/lowbit" --prefix "$build/prefix" > "$build/lowbit.install.log"
for f in include/lowbit/lowbit.hpp share/cmake/lowbit/lowbitConfig.cmake share/cmake/lowbit/lowbitConfigVersion.cmake \
         share/cmake/lowbit/lowbitTargets.cmake share/cmake/lowbit/LowbitXsimd.cmake; do
  [[ -f $build/prefix/$f ]] || { echo "install is missing $f" >&2; exit 1; }
done
configure_build_run find_package -DCMAKE_PREFIX_PATH="$build/prefix"
grep -q "lowbit 0.1.0 from $build/prefix/" "$build/find_package.configure.log" \
  || { echo "find_package found lowbit somewhere other than $build/prefix" >&2; exit 1; }

# 3. FetchContent from a local git repository at a fixed commit.
repo=${LOWBIT_GIT_REPOSITORY:-}
tag=${LOWBIT_GIT_TAG:-}
if [[ -z $repo ]]; then
  if [[ -z $(git -C "$root" status --porcelain) ]]; then
    repo=$root
    tag=$(git -C "$root" rev-parse HEAD)
  else
    repo=$build/snapshot
    echo "--- the working tree has changes: FetchContent fetches a snapshot of it ($repo)"
    mkdir -p "$repo"
    (cd "$root" && git ls-files -z --cached --others --exclude-standard \
      | tar --null -T - --ignore-failed-read -cf - 2> /dev/null) | tar -xf - -C "$repo"
    git -C "$repo" init -q
    git -C "$repo" add -A
    git -C "$repo" -c user.name=lowbit-consumers -c user.email=consumers@lowbit.invalid \
      commit -q -m "working tree snapshot for the FetchContent consumer"
    tag=$(git -C "$repo" rev-parse HEAD)
  fi
fi
[[ -n $tag ]] || tag=$(git -C "$repo" rev-parse HEAD)
echo "--- FetchContent: $repo at $tag"
configure_build_run fetchcontent -DLOWBIT_GIT_REPOSITORY="$repo" -DLOWBIT_GIT_TAG="$tag"

echo "3 passed, 0 failed (consumers: add_subdirectory, find_package, fetchcontent)"
