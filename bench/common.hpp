// What the benchmark binaries share: the format list entry, deterministic random inputs, the
// <N>x<K>/m<M>/t<threads> name tail and the GEMM counters.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bench_common {

/// A format as benchmarked: its scheme, its name in benchmark names, its usual group size.
template <class Scheme>
struct bench_format {
  using scheme_type = Scheme;
  const char* name;
  std::size_t group_size;
};

/// count floats in [-1, 1), the same for the same seed on every run.
inline std::vector<float> random_floats(std::size_t count, uint64_t seed) {
  std::vector<float> v(count);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<int32_t>(s >> 32)) * (1.0f / 2147483648.0f);
  }
  return v;
}

inline std::string shape_name(std::size_t n, std::size_t k, std::size_t m, std::size_t threads) {
  return std::to_string(n) + "x" + std::to_string(k) + "/m" + std::to_string(m) + "/t" + std::to_string(threads);
}

/// bytes_per_second = weight + io bytes per call; GOP/s = 2 M N K per second; weight_GB/s.
inline void set_gemm_counters(benchmark::State& state, std::size_t m, std::size_t n, std::size_t k, double weight_bytes,
                              double io_bytes) {
  state.SetBytesProcessed(static_cast<int64_t>(static_cast<double>(state.iterations()) * (weight_bytes + io_bytes)));
  state.counters["GOP/s"] = benchmark::Counter(2e-9 * double(m) * double(n) * double(k),
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_GB/s"] = benchmark::Counter(1e-9 * weight_bytes, benchmark::Counter::kIsIterationInvariantRate);
}

/// Copies of w (an n x k matrix), together at least 128 MB (4x this machine's L3), for the M = 1
/// _cold cases: calls take them in turn, so each finds its weights evicted by the others' and
/// reads them from memory, as a decode step through a model's layers does. A single matrix of
/// 23-30 MB stays largely in the 32 MB L3 between calls: there M = 1 measures the kernel's
/// instruction rate, not streaming.
template <class Weights>
const std::vector<Weights>& cold_copies(const Weights& w, std::size_t n, std::size_t k) {
  static std::vector<Weights> copies;
  static std::size_t made_n = 0, made_k = 0;
  if (made_n != n || made_k != k) {
    copies = std::vector<Weights>();  // the old copies' memory back first
    const std::size_t count = std::max<std::size_t>(2, ((std::size_t(128) << 20) + w.storage_bytes() - 1) / w.storage_bytes());
    copies.assign(count, w);
    made_n = n;
    made_k = k;
  }
  return copies;
}

}  // namespace bench_common
