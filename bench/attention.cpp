// Decode and prefill attention over a low-bit KV cache, beside plain fp32 baselines that
// materialize the scores (Q Kᵀ into memory, softmax, then P V), oneDNN's f32 matmul on the prefill's
// products, and the memory read / copy references.
//
//   BM_decode/<kv format>/<isa>/S<tokens>/t<threads>   lowbit::attention::decode, B = 1, Hq = 32,
//                                                      Hkv = 8, d = 128 (the shape)
//   BM_decode/bf16_dp/...                              bf16 K and V, bf16 products (decode_options::bf16)
//   BM_decode/int8_q8/...                              int8 K and V with int8 queries (integer QKᵀ)
//   BM_decode/int8_int/..., int4_g32_int/...            integer QKᵀ and P V (decode_options::integer_pv)
//   BM_decode/int8_int_tiles/..., int4_g32_int_tiles/... the same on a cache with integer tiles
//                                                      (kv_shape::integer_tiles, decode_tiles.hpp);
//   BM_decode/int4_g64_int_tiles/..., int4_int_tiles/... int4 in groups of 64, and per token-head
//   BM_decode/int8_kivi32/..., int4_g32_kivi32/...     KIVI keys: per-channel scales over blocks of 32
//                                                      tokens (kv_cache's key_tokens), float path
//   BM_decode/f32_materialize/baseline/S<tokens>/t1    the baseline on fp32 K and V
// Counters: bytes_per_second = KV bytes read per call (codes + scales + zero points);
// GOP/s = 4 Hq S d (two multiply-adds per cached element and query head) per second.
//
//   BM_prefill/<kv format>/<isa>/H32/S2048/t<threads>     lowbit::attention::prefill, causal, B = 1,
//                                                          L = S = 2048 new tokens, Hq = Hkv = 32, d = 128
//   BM_prefill/<kv format>/<isa>/H32x8/S2048/t<threads>   the same with GQA, Hkv = 8
//   BM_prefill/int8_qk/...                                 int8 K and V, int8 QKᵀ (smoothed keys)
//   BM_prefill/<kv format>_dp/...                          bf16 products (prefill_options::bf16)
//   BM_prefill/int8_qk_bf16pv/...                          int8 QKᵀ and bf16 PV
//   BM_prefill/f32_materialize/baseline/H1/S2048/t1       one head: Q Kᵀ (causal half) into an S x S
//                                                          matrix, row softmax, P V; plain loops
//   BM_prefill/onednn_f32/onednn/H1/S2048/t<threads>      one head: oneDNN f32 matmuls Q Kᵀ (S x S x d)
//                                                          and P V (S x d x S), full (not causal) products
// Counters: GFLOP/s = useful causal products per second: per head, query i sees i + 1 keys, each
// pair 2 d flops in Q Kᵀ and 2 d in P V: 2 d S (S + 1) per head (oneDNN: its full 4 d S², so
// equal rates mean equal work per second); bytes_per_second = KV bytes read once + Q + output.
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
#include "lowbit/attention/prefill.hpp"
#include "memory.hpp"
#include "peers.hpp"

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
  bool bf16_products = false;  ///< prefill_options::bf16
  bool integer_pv = false;     ///< decode_options::integer_pv (with int8_query)
  bool integer_tiles = false;  ///< kv_shape::integer_tiles
  std::size_t key_tokens = 0;  ///< KIVI keys: kv_cache's key_tokens
};

const auto formats = std::make_tuple(kv_format<float>{"f32", 0}, kv_format<bf16>{"bf16", 0},
                                     kv_format<bf16>{"bf16_dp", 0, false, true},
                                     kv_format<scheme<int8, float>>{"int8", 0},
                                     kv_format<scheme<int8, float>>{"int8_q8", 0, true},
                                     kv_format<scheme<int8, float>>{"int8_int", 0, true, false, true},
                                     kv_format<scheme<int8, float>>{"int8_int_tiles", 0, true, false, true, true},
                                     kv_format<scheme<int4, fp16>>{"int4_g32", 32},
                                     kv_format<scheme<int4, fp16>>{"int4_g32_int", 32, true, false, true},
                                     kv_format<scheme<int4, fp16>>{"int4_g32_int_tiles", 32, true, false, true, true},
                                     kv_format<scheme<int4, fp16>>{"int4_g64_int_tiles", 64, true, false, true, true},
                                     kv_format<scheme<int4, fp16>>{"int4_int_tiles", 0, true, false, true, true},
                                     kv_format<scheme<uint4, fp16, true>>{"uint4_g32", 32},
                                     kv_format<scheme<int8, float>>{"int8_kivi32", 0, false, false, false, false, 32},
                                     kv_format<scheme<int4, fp16>>{"int4_g32_kivi32", 32, false, false, false, false, 32},
                                     kv_format<mx::fp8_e4m3>{"mxfp8_e4m3", 32});
// Prefill: int8_query here means prefill_options::int8_qk; "_dp": bf16 products (vdpbf16ps),
// "_bf16pv": int8 QKᵀ and bf16 PV.
const auto prefill_formats = std::make_tuple(kv_format<float>{"f32", 0}, kv_format<bf16>{"bf16", 0},
                                             kv_format<scheme<int8, float>>{"int8", 0},
                                             kv_format<scheme<int8, float>>{"int8_qk", 0, true},
                                             kv_format<bf16>{"bf16_dp", 0, false, true},
                                             kv_format<scheme<int8, float>>{"int8_qk_bf16pv", 0, true, true},
                                             kv_format<scheme<int8, float>>{"int8_int", 0, true, false, true},
                                     kv_format<scheme<int4, fp16>>{"int4_g32", 32},
                                     kv_format<scheme<int4, fp16>>{"int4_g32_int", 32, true, false, true},
                                             kv_format<scheme<int4, fp16>>{"int4_g32_dp", 32, false, true},
                                             kv_format<mx::fp8_e4m3>{"mxfp8_e4m3", 32});

template <class Element>
const attention::kv_cache<Element>& cache_of(std::size_t tokens, std::size_t group_size, bool tiles = false,
                                             std::size_t key_tokens = 0) {
  static std::unique_ptr<attention::kv_cache<Element>> caches[3];  // plain, integer tiles, KIVI keys
  static std::size_t groups[3];                                     // their group sizes
  const std::size_t slot = tiles ? 1 : key_tokens ? 2 : 0;
  std::unique_ptr<attention::kv_cache<Element>>& cache = caches[slot];
  if (!cache || cache->length(0) != tokens || groups[slot] != group_size) {
    cache.reset();
    groups[slot] = group_size;
    cache = std::make_unique<attention::kv_cache<Element>>(attention::kv_shape{1, kv_heads, head_dim, tokens, 0, 0, tiles},
                                                           group_size, key_tokens);
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
        const bool tiles = f.integer_tiles;
        const std::size_t key_tokens = f.key_tokens;
        attention::decode_options options{0.0f, 0, f.int8_query, f.integer_pv};
        options.bf16 = f.bf16_products;
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
          const attention::kv_cache<E>& cache = cache_of<E>(s, group, tiles, key_tokens);
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


// ---- prefill ---------------------------------------------------------------------------------
constexpr std::size_t prefill_tokens = 2048, prefill_q_heads = 32;

double prefill_flops(std::size_t heads, std::size_t s) { return 2.0 * head_dim * double(s) * double(s + 1) * double(heads); }

template <class Element>
const attention::kv_cache<Element>& prefill_cache_of(std::size_t kv, std::size_t group_size) {
  static std::unique_ptr<attention::kv_cache<Element>> cache;
  static std::size_t cached_kv = 0;
  if (!cache || cached_kv != kv) {
    cache.reset();
    cache = std::make_unique<attention::kv_cache<Element>>(attention::kv_shape{1, kv, head_dim, prefill_tokens}, group_size);
    const std::vector<float> k = random_floats(prefill_tokens * kv * head_dim, 11), v = random_floats(prefill_tokens * kv * head_dim, 12);
    cache->append(0, k.data(), v.data(), prefill_tokens);
    cached_kv = kv;
  }
  return *cache;
}

template <class Format>
void register_prefill(const Format& f) {
  using E = typename Format::element_type;
  for (isa path : supported_isas()) {
    if (path == isa::scalar || path == isa::sse42) continue;
    for (std::size_t kv : {std::size_t(32), std::size_t(8)})
      for (std::size_t threads : {1, 2}) {
        const std::string name = std::string("BM_prefill/") + f.name + "/" + isa_name(path) + "/H32" +
                                 (kv == 32 ? "" : "x" + std::to_string(kv)) + "/S" + std::to_string(prefill_tokens) + "/t" +
                                 std::to_string(threads);
        const std::size_t group = f.group_size;
        attention::prefill_options options;
        options.int8_qk = f.int8_query;
        options.bf16 = f.bf16_products;
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
          const attention::kv_cache<E>& cache = prefill_cache_of<E>(kv, group);
          const std::vector<float> q = random_floats(prefill_tokens * prefill_q_heads * head_dim, 13);
          std::vector<float> out(q.size());
          const std::size_t new_tokens[1] = {prefill_tokens};
          const auto mask = attention::prefill_mask::causal();
          for (auto _ : state) {
            if (threads <= 1) {
              attention::prefill(q.data(), cache, new_tokens, out.data(), prefill_q_heads, mask, options, serial_executor{}, path);
            } else {
              attention::prefill(q.data(), cache, new_tokens, out.data(), prefill_q_heads, mask, options,
                                 bench_memory::pool(threads), path);
            }
            benchmark::DoNotOptimize(out.data());
          }
          const double bytes = double(prefill_tokens) * kv * double(cache.bytes_per_token_head()) + 8.0 * double(q.size());
          state.SetBytesProcessed(static_cast<int64_t>(bytes * double(state.iterations())));
          state.counters["GFLOP/s"] = benchmark::Counter(1e-9 * prefill_flops(prefill_q_heads, prefill_tokens),
                                                         benchmark::Counter::kIsIterationInvariantRate);
        })->UseRealTime()->Unit(benchmark::kMillisecond);
      }
  }
}

// The baseline, one head of fp32 Q, K, V ([token][d]): the causal scores into an S x S matrix, a
// softmax per row, then P V, in plain loops.
void run_prefill_materialize(benchmark::State& state) {
  const std::size_t s = prefill_tokens;
  const std::vector<float> q = random_floats(s * head_dim, 1), k = random_floats(s * head_dim, 2), v = random_floats(s * head_dim, 3);
  std::vector<float> scores(s * s), out(s * head_dim);
  const float scale = 1.0f / std::sqrt(float(head_dim));
  for (auto _ : state) {
    for (std::size_t i = 0; i < s; ++i) {
      float* row = scores.data() + i * s;
      float max = -INFINITY;
      for (std::size_t j = 0; j <= i; ++j) {
        float dot = 0.0f;
        for (std::size_t e = 0; e < head_dim; ++e) dot += q[i * head_dim + e] * k[j * head_dim + e];
        row[j] = dot * scale;
        max = std::max(max, row[j]);
      }
      float sum = 0.0f;
      for (std::size_t j = 0; j <= i; ++j) sum += row[j] = std::exp(row[j] - max);
      for (std::size_t j = 0; j <= i; ++j) row[j] /= sum;
    }
    for (std::size_t i = 0; i < s; ++i) {
      float* o = out.data() + i * head_dim;
      std::fill(o, o + head_dim, 0.0f);
      for (std::size_t j = 0; j <= i; ++j)
        for (std::size_t e = 0; e < head_dim; ++e) o[e] += scores[i * s + j] * v[j * head_dim + e];
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(double(s) * head_dim * 16.0 * double(state.iterations())));
  state.counters["GFLOP/s"] = benchmark::Counter(1e-9 * prefill_flops(1, s), benchmark::Counter::kIsIterationInvariantRate);
}

#if defined(LOWBIT_BENCH_HAVE_DNNL)
// oneDNN f32 matmul on one head's products: S = Q Kᵀ (M = N = S, K = d) and O = P V (M = S, N = d,
// K = S), each with its right-hand side prepacked once (as onednn_linear does for weights).
void run_prefill_onednn(benchmark::State& state, int threads) {
  const std::size_t s = prefill_tokens;
  const std::vector<float> q = random_floats(s * head_dim, 1), k = random_floats(s * head_dim, 2);
  const std::vector<float> p = random_floats(s * s, 3), v_t = random_floats(head_dim * s, 4);
  std::vector<float> scores(s * s), out(s * head_dim);
  peers::onednn_linear qk(peers::onednn_linear::kind::f32, s, s, head_dim, k.data(), threads);
  peers::onednn_linear pv(peers::onednn_linear::kind::f32, s, head_dim, s, v_t.data(), threads);
  for (auto _ : state) {
    qk.run(q.data(), scores.data());
    pv.run(p.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(double(s) * head_dim * 16.0 * double(state.iterations())));
  state.counters["GFLOP/s"] = benchmark::Counter(4e-9 * double(s) * double(s) * head_dim, benchmark::Counter::kIsIterationInvariantRate);
}
#endif

const bool registered = [] {
  std::apply([](const auto&... f) { (register_format(f), ...); }, formats);
  for (std::size_t s : lengths)
    benchmark::RegisterBenchmark(("BM_decode/f32_materialize/baseline/S" + std::to_string(s) + "/t1").c_str(),
                                 [=](benchmark::State& state) { run_materialize(state, s); })
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  std::apply([](const auto&... f) { (register_prefill(f), ...); }, prefill_formats);
  benchmark::RegisterBenchmark(("BM_prefill/f32_materialize/baseline/H1/S" + std::to_string(prefill_tokens) + "/t1").c_str(),
                               run_prefill_materialize)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
#if defined(LOWBIT_BENCH_HAVE_DNNL)
  for (int threads : {1, 2})
    benchmark::RegisterBenchmark(
        ("BM_prefill/onednn_f32/onednn/H1/S" + std::to_string(prefill_tokens) + "/t" + std::to_string(threads)).c_str(),
        [=](benchmark::State& state) { run_prefill_onednn(state, threads); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
#endif
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
