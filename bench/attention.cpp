// Decode attention over a low-bit KV cache, beside a plain fp32 baseline that materializes the
// scores (q Kᵀ into a vector, softmax, then P V) and the memory read / copy references.
//
//   BM_decode/<kv format>/<isa>/S<tokens>/t<threads>   lowbit::attention::decode, B = 1, Hq = 32,
//                                                      Hkv = 8, d = 128 (the shape)
//   BM_decode/int8_q8/...                              int8 K and V with int8 queries (integer QKᵀ)
//   BM_decode/f32_materialize/baseline/S<tokens>/t1    the baseline on fp32 K and V
// Counters: bytes_per_second = KV bytes read per call (codes + scales + zero points);
// GOP/s = 4 Hq S d (two multiply-adds per cached element and query head) per second.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <cstddef>
#include <string>
#include <tuple>
#include <vector>

#include "common.hpp"
#include "lowbit/attention/decode.hpp"
#include "memory.hpp"

namespace {

using namespace lowbit;
using namespace bench_common;

constexpr std::size_t q_heads = 32, kv_heads = 8, head_dim = 128;
const std::size_t lengths[] = {4096, 32768};

template <class Element>
struct kv_format {
  using element_type = Element;
  const char* name;
  std::size_t group_size;  ///< along the head dimension; 0: one scale per token and head
  bool int8_query = false;
};

const auto formats = std::make_tuple(kv_format<float>{"f32", 0}, kv_format<bf16>{"bf16", 0},
                                     kv_format<scheme<int8, float>>{"int8", 0},
                                     kv_format<scheme<int8, float>>{"int8_q8", 0, true},
                                     kv_format<scheme<int4, fp16>>{"int4_g32", 32},
                                     kv_format<scheme<uint4, fp16, true>>{"uint4_g32", 32},
                                     kv_format<mx::fp8_e4m3>{"mxfp8_e4m3", 32});

template <class Element>
const attention::kv_cache<Element>& cache_of(std::size_t tokens, std::size_t group_size) {
  static std::unique_ptr<attention::kv_cache<Element>> cache;
  if (!cache || cache->length(0) != tokens) {
    cache = std::make_unique<attention::kv_cache<Element>>(attention::kv_shape{1, kv_heads, head_dim, tokens}, group_size);
    const std::size_t step = 1024;
    for (std::size_t t = 0; t < tokens; t += step) {
      const std::size_t n = std::min(step, tokens - t);
      const std::vector<float> k = random_floats(n * kv_heads * head_dim, t + 1), v = random_floats(n * kv_heads * head_dim, t + 2);
      cache->append(0, k.data(), v.data(), n);
    }
  }
  return *cache;
}

template <class Format>
void register_format(const Format& f) {
  using E = typename Format::element_type;
  for (isa path : supported_isas()) {
    if (path == isa::scalar) continue;
    for (std::size_t s : lengths)
      for (std::size_t threads : {1, 2}) {
        const std::string name = std::string("BM_decode/") + f.name + "/" + isa_name(path) + "/S" + std::to_string(s) +
                                 "/t" + std::to_string(threads);
        const std::size_t group = f.group_size;
        const attention::decode_options options{0.0f, 0, f.int8_query};
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
          const attention::kv_cache<E>& cache = cache_of<E>(s, group);
          const std::vector<float> q = random_floats(q_heads * head_dim, 3);
          std::vector<float> out(q.size());
          for (auto _ : state) {
            if (threads <= 1) {
              attention::decode(q.data(), cache, out.data(), q_heads, options, serial_executor{}, path);
            } else {
              attention::decode(q.data(), cache, out.data(), q_heads, options, bench_memory::pool(threads), path);
            }
            benchmark::DoNotOptimize(out.data());
          }
          const double bytes = double(s) * kv_heads * double(cache.bytes_per_token_head());
          state.SetBytesProcessed(static_cast<int64_t>(bytes * double(state.iterations())));
          state.counters["GOP/s"] = benchmark::Counter(4e-9 * q_heads * double(s) * head_dim,
                                                       benchmark::Counter::kIsIterationInvariantRate);
        })->UseRealTime()->Unit(benchmark::kMicrosecond);
      }
  }
}

// The baseline: fp32 K and V per head ([head][token][d]), scores materialized.
void run_materialize(benchmark::State& state, std::size_t s) {
  const std::vector<float> k = random_floats(kv_heads * s * head_dim, 1), v = random_floats(kv_heads * s * head_dim, 2);
  const std::vector<float> q = random_floats(q_heads * head_dim, 3);
  std::vector<float> out(q.size()), scores(s);
  const float scale = 1.0f / std::sqrt(float(head_dim));
  for (auto _ : state) {
    for (std::size_t j = 0; j < q_heads; ++j) {
      const float* kh = k.data() + j / (q_heads / kv_heads) * s * head_dim;
      const float* vh = v.data() + j / (q_heads / kv_heads) * s * head_dim;
      float max = -INFINITY;
      for (std::size_t t = 0; t < s; ++t) {
        float dot = 0.0f;
        for (std::size_t e = 0; e < head_dim; ++e) dot += q[j * head_dim + e] * kh[t * head_dim + e];
        scores[t] = dot * scale;
        max = std::max(max, scores[t]);
      }
      float sum = 0.0f;
      for (std::size_t t = 0; t < s; ++t) sum += scores[t] = std::exp(scores[t] - max);
      float* o = out.data() + j * head_dim;
      std::fill(o, o + head_dim, 0.0f);
      for (std::size_t t = 0; t < s; ++t)
        for (std::size_t e = 0; e < head_dim; ++e) o[e] += scores[t] / sum * vh[t * head_dim + e];
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(double(s) * kv_heads * head_dim * 8.0 * double(state.iterations())));
  state.counters["GOP/s"] = benchmark::Counter(4e-9 * q_heads * double(s) * head_dim, benchmark::Counter::kIsIterationInvariantRate);
}

const bool registered = [] {
  std::apply([](const auto&... f) { (register_format(f), ...); }, formats);
  for (std::size_t s : lengths)
    benchmark::RegisterBenchmark(("BM_decode/f32_materialize/baseline/S" + std::to_string(s) + "/t1").c_str(),
                                 [=](benchmark::State& state) { run_materialize(state, s); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
