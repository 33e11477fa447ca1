#!/usr/bin/env bash
# Installs what lowbit's build, tests, benchmarks and CI need, and only what is missing: Debian
# packages are checked with dpkg -s (apt-get update runs only when one is missing), Python modules
# by importing them. Run it, or source it from another script (scripts/test.sh, scripts/demo.sh).
#
# usage: bash scripts/deps.sh
set -euo pipefail

lowbit_install_deps() {
  local packages=(cmake ninja-build g++ clang libclang-rt-14-dev libomp-dev libxsimd-dev googletest
                  libgtest-dev libbenchmark-dev libopenblas-dev libdnnl-dev ocl-icd-opencl-dev git python3)
  local missing=() package
  for package in "${packages[@]}"; do
    dpkg -s "$package" > /dev/null 2>&1 || missing+=("$package")
  done
  if ! python3 -m pip --version > /dev/null 2>&1 && ! dpkg -s python3-pip > /dev/null 2>&1; then
    missing+=(python3-pip)
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  if ((${#missing[@]})); then
    echo "deps: installing Debian packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi

  # Python: numpy and ml_dtypes (golden data generators), conan (the packaging check).
  local modules=() module
  for module in numpy:numpy ml_dtypes:ml_dtypes conan:conan; do
    python3 -c "import ${module%%:*}" > /dev/null 2>&1 || modules+=("${module#*:}")
  done
  if ((${#modules[@]})); then
    echo "deps: installing Python packages: ${modules[*]}"
    # Debian's own python3 refuses pip installs outside a virtual environment (PEP 668).
    python3 -m pip install -q "${modules[@]}" \
      || python3 -m pip install -q --break-system-packages "${modules[@]}"
  fi
  if ! command -v conan > /dev/null 2>&1; then
    # pip may have put the conan script in a directory that is not on PATH.
    local bin
    bin=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
    export PATH="$PATH:$bin:$HOME/.local/bin"
  fi
}

lowbit_install_deps
