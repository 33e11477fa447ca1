// Dequantization to fp32, every element format on every ISA path this CPU runs, beside the memory
// read / copy references (bench/memory.hpp) that say what memory-bound means here.
//
//   BM_dequantize/<format>/<isa>/<size>
// sizes (all 4096 columns):
//   l2       32 rows: 128 Ki elements, inputs + fp32 output (~0.6 MiB) resident in a 1 MiB L2
//   256KiB   256 KiB of packed codes (4-bit: 512 Ki elements, 2 MiB of output: L3)
//   64MiB    64 MiB of packed codes (4-bit: 512 MiB of output), non-temporal output stores
//   64MiB_normal_stores   the same with ordinary stores (what streaming saves)
//   64MiB_2threads        the same on two threads (lowbit::thread_pool), best ISA only
// Counters: bytes_per_second = packed codes + scales + zero points read, plus output written;
// items_per_second = elements. The scheme of each format is its usual one (listed in `formats`).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

#include "lowbit/arch/dispatch.hpp"
#include "lowbit/kernels/dequantize.hpp"
#include "common.hpp"
#include "memory.hpp"

namespace {

using namespace lowbit;
using namespace bench_common;

// The scheme each format is usually met with (GPTQ/AWQ-style int4 with fp16 scales, bitsandbytes
// NF4 with fp32 absmax per 64, ggml IQ4_NL with fp16 per 32, OCP MX with E8M0 per 32, ...).
const auto formats = std::make_tuple(
    bench_format<scheme<int4, fp16>>{"int4", 128}, bench_format<scheme<uint4, fp16, true>>{"uint4", 128},
    bench_format<mx::fp4>{"fp4_e2m1", 32}, bench_format<scheme<nf4, float>>{"nf4", 64},
    bench_format<scheme<sf4, float>>{"sf4", 64}, bench_format<scheme<iq4_nl, fp16>>{"iq4_nl", 32},
    bench_format<mx::int4>{"mxint4", 32}, bench_format<scheme<int8, fp16>>{"int8", 128},
    bench_format<scheme<uint8, fp16, true>>{"uint8", 128}, bench_format<mx::int8>{"mxint8", 32},
    bench_format<mx::fp8_e4m3>{"fp8_e4m3", 32}, bench_format<mx::fp8_e5m2>{"fp8_e5m2", 32},
    bench_format<mx::fp6_e3m2>{"fp6_e3m2", 32}, bench_format<mx::fp6_e2m3>{"fp6_e2m3", 32});

constexpr std::size_t cols = 4096;
constexpr std::size_t large_packed_bytes = std::size_t(64) << 20;

template <class Scale>
Scale typical_scale(uint32_t i) {
  if constexpr (std::is_same<Scale, e8m0>::value) {
    return e8m0::from_bits(static_cast<uint8_t>(118 + i % 8));
  } else {
    return scale_traits<Scale>::from_float(0.01f + 0.001f * static_cast<float>(i % 17));
  }
}

template <class Scheme>
quantized_matrix<Scheme> make_matrix(std::size_t rows, std::size_t group_size) {
  quantized_matrix<Scheme> q(rows, cols, group_size);
  bench_memory::fill_random(q.codes(), rows * q.row_bytes(), rows);
  for (std::size_t g = 0; g < q.shape().group_count(); ++g) {
    q.scales()[g] = typical_scale<typename Scheme::scale_type>(static_cast<uint32_t>(g));
    if (Scheme::has_zero) q.zeros()[g] = static_cast<uint8_t>((g * 7) % (1u << Scheme::bits));
  }
  return q;
}

/// One fp32 output buffer for every benchmark, as large as the largest output (pages faulted in).
float* output_buffer(std::size_t elements) {
  static aligned_buffer<float> buffer;
  if (buffer.size() < elements) buffer = aligned_buffer<float>(elements);
  return buffer.data();
}

template <class Scheme>
void run(benchmark::State& state, std::size_t rows, std::size_t group_size, isa path, store_policy policy,
         std::size_t threads) {
  const quantized_matrix<Scheme> q = make_matrix<Scheme>(rows, group_size);
  const quantized_view<Scheme> w = q.view();
  float* out = output_buffer(rows * cols);
  for (auto _ : state) {
    if (threads <= 1) {
      dequantize(w, out, cols, serial_executor{}, path, policy);
    } else {
      dequantize(w, out, cols, bench_memory::pool(threads), path, policy);
    }
    benchmark::ClobberMemory();
  }
  const std::size_t elements = rows * cols;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * elements));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * (w.storage_bytes() + elements * sizeof(float))));
  state.counters["packed_MiB"] = static_cast<double>(w.storage_bytes()) / (1 << 20);
}

template <class Format>
void register_format(const Format& f) {
  using S = typename Format::scheme_type;
  const std::size_t row_bytes = packed_bytes(cols, S::bits);
  const std::size_t mid_rows = (std::size_t(256) << 10) / row_bytes;
  const std::size_t large_rows = large_packed_bytes / row_bytes;
  const std::size_t group = f.group_size;
  struct size_case {
    std::string name;
    std::size_t rows;
    store_policy policy;
  };
  const size_case sizes[] = {{"l2", 32, store_policy::normal},
                             {"256KiB", mid_rows, store_policy::normal},
                             {"64MiB", large_rows, store_policy::streaming},
                             {"64MiB_normal_stores", large_rows, store_policy::normal}};
  for (isa path : supported_isas()) {
    for (const size_case& size : sizes) {
      const std::string name = std::string("BM_dequantize/") + f.name + "/" + isa_name(path) + "/" + size.name;
      benchmark::RegisterBenchmark(name.c_str(),
                                   [=](benchmark::State& state) { run<S>(state, size.rows, group, path, size.policy, 1); })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  const isa best = best_isa();
  const std::string name = std::string("BM_dequantize/") + f.name + "/" + isa_name(best) + "/64MiB_2threads";
  benchmark::RegisterBenchmark(
      name.c_str(), [=](benchmark::State& state) { run<S>(state, large_rows, group, best, store_policy::streaming, 2); })
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

const bool registered = [] {
  std::apply([](const auto&... f) { (register_format(f), ...); }, formats);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
