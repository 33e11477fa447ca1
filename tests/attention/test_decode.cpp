// Decode attention against a float64 reference of softmax(q Kᵀ / sqrt(d)) V on the dequantized
// cache: every KV format (fp32, bf16, int8, int4, uint4 with zero points, FP8, MX), head dims 64,
// 80, 96, 128, 256, MHA / GQA / MQA, sequences of different and odd lengths (0, 1, 17, ...) appended
// in pieces, chunk sizes that cut tiles, every ISA path; the integer QKᵀ path; paged caches with a
// shared prefix page; the cache's errors, its accessors' included.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/schemes.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/attention/decode.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit::attention;

struct decode_case {
  std::size_t head_dim, kv_heads, q_heads;
  std::vector<std::size_t> lengths;
  std::size_t group_size;  // 0: one scale per token and head
};

const decode_case cases[] = {{128, 2, 8, {1, 37, 200}, 0},   {80, 1, 4, {5, 0, 100}, 16}, {64, 3, 3, {17, 64}, 32},
                             {256, 1, 1, {33}, 64},          {64, 2, 16, {130}, 0},     {96, 2, 12, {50, 19}, 32},
                             {128, 1, 3, {45}, 0},  // an odd group over whole rows (decode_float_rows.hpp's head pairs)
                             {256, 2, 4, {29, 3}, 128}};

// softmax(q K^T scale) V in double, per sequence and query head, over the cache's own values.
template <class Element>
std::vector<double> reference_decode(const std::vector<float>& q, const kv_cache<Element>& cache, std::size_t q_heads) {
  const kv_shape& s = cache.shape();
  const std::size_t d = s.head_dim, group = q_heads / s.kv_heads;
  const double scale = 1.0 / std::sqrt(double(d));
  std::vector<double> out(q.size(), 0.0), keys, values;
  for (std::size_t b = 0; b < s.batch; ++b)
    for (std::size_t j = 0; j < q_heads; ++j) {
      const std::size_t h = j / group, n = cache.length(b);
      if (n == 0) continue;
      if (j % group == 0) {  // head h's keys and values, dequantized once for its query heads
        keys.resize(n * d);
        values.resize(n * d);
        for (std::size_t t = 0; t < n; ++t)
          for (std::size_t e = 0; e < d; ++e) {
            keys[t * d + e] = cache.keys().element(cache.row(b, h, t), e);
            values[t * d + e] = cache.values().element(cache.row(b, h, t), e);
          }
      }
      std::vector<double> p(n);
      double max = -INFINITY, sum = 0.0;
      for (std::size_t t = 0; t < n; ++t) {
        double dot = 0.0;
        for (std::size_t e = 0; e < d; ++e) dot += double(q[(b * q_heads + j) * d + e]) * keys[t * d + e];
        p[t] = dot * scale;
        max = std::max(max, p[t]);
      }
      for (double& v : p) sum += v = std::exp(v - max);
      for (std::size_t t = 0; t < n; ++t)
        for (std::size_t e = 0; e < d; ++e) out[(b * q_heads + j) * d + e] += p[t] / sum * values[t * d + e];
    }
  return out;
}

template <class Element>
void check_decode() {
  uint32_t seed = 900;
  for (const decode_case& c : cases) {
    kv_cache<Element> cache(kv_shape{c.lengths.size(), c.kv_heads, c.head_dim, 256}, c.group_size);
    for (std::size_t b = 0; b < c.lengths.size(); ++b) {
      // Appended in two pieces (prefill, then decode steps), as an engine does.
      const std::size_t stride = c.kv_heads * c.head_dim, first = c.lengths[b] / 3;
      const std::vector<float> k = random_matrix(c.lengths[b] + 1, stride, ++seed), v = random_matrix(c.lengths[b] + 1, stride, ++seed);
      cache.append(b, k.data(), v.data(), first);
      cache.append(b, k.data() + first * stride, v.data() + first * stride, c.lengths[b] - first);
      ASSERT_EQ(cache.length(b), c.lengths[b]);
    }
    const std::vector<float> q = random_matrix(c.lengths.size() * c.q_heads, c.head_dim, ++seed);
    const std::vector<double> ref = reference_decode(q, cache, c.q_heads);
    for (isa path : supported_isas())
      for (std::size_t chunk : {std::size_t(0), std::size_t(16), std::size_t(40)}) {
        std::vector<float> out(q.size(), -1.0f);
        decode(q.data(), cache, out.data(), c.q_heads, decode_options{0.0f, chunk}, serial_executor{}, path);
        // Outputs are convex combinations of V (|v| < ~5): an absolute bound of fp32 rounding.
        for (std::size_t i = 0; i < out.size(); ++i)
          ASSERT_NEAR(out[i], ref[i], 2e-5) << isa_name(path) << " d=" << c.head_dim << " chunk=" << chunk << " output " << i;
      }
  }
}

TEST(decode_attention, every_kv_format_matches_the_reference_on_every_path) {
  check_decode<float>();
  check_decode<bf16>();
  check_decode<scheme<int8, float>>();
  check_decode<scheme<int4, fp16>>();
  check_decode<scheme<uint4, fp16, true>>();
  check_decode<scheme<fp8_e4m3, float>>();
  check_decode<scheme<fp8_e5m2, bf16>>();
  check_decode<mx::int8>();
  check_decode<mx::fp4>();
}

// int8_query: the result is attention with each query head replaced by its int8 quantization
// (absmax / 127, round to nearest even), checked against the float64 reference of exactly that.
// The cases with one key scale per token and head, and head dims 80, 96, 256 the same way.
const decode_case int8_query_cases[] = {{128, 2, 8, {1, 37, 200}, 0}, {64, 2, 16, {130}, 0}, {128, 1, 3, {45}, 0},
                                        {80, 1, 4, {5, 0, 100}, 0},   {96, 2, 12, {50, 19}, 0}, {256, 1, 2, {33, 18}, 0}};

template <class Element>
void check_int8_query() {
  uint32_t seed = 1100;
  for (const decode_case& c : int8_query_cases) {
    kv_cache<Element> cache(kv_shape{c.lengths.size(), c.kv_heads, c.head_dim, 256});
    for (std::size_t b = 0; b < c.lengths.size(); ++b) {
      const std::vector<float> k = random_matrix(c.lengths[b] + 1, c.kv_heads * c.head_dim, ++seed),
                               v = random_matrix(c.lengths[b] + 1, c.kv_heads * c.head_dim, ++seed);
      cache.append(b, k.data(), v.data(), c.lengths[b]);
    }
    const std::vector<float> q = random_matrix(c.lengths.size() * c.q_heads, c.head_dim, ++seed);
    std::vector<float> quantized(q.size());
    for (std::size_t r = 0; r < q.size() / c.head_dim; ++r) {
      float absmax = 0.0f;
      for (std::size_t e = 0; e < c.head_dim; ++e) absmax = std::max(absmax, std::fabs(q[r * c.head_dim + e]));
      const float scale = absmax / 127.0f;
      for (std::size_t e = 0; e < c.head_dim; ++e)
        quantized[r * c.head_dim + e] = std::nearbyint(q[r * c.head_dim + e] / scale) * scale;
    }
    const std::vector<double> ref = reference_decode(quantized, cache, c.q_heads);
    for (isa path : supported_isas()) {
      std::vector<float> out(q.size(), -1.0f);
      decode(q.data(), cache, out.data(), c.q_heads, decode_options{0.0f, 40, true}, serial_executor{}, path);
      for (std::size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], ref[i], 2e-5) << "int8_query " << isa_name(path) << " d=" << c.head_dim << " output " << i;
    }
  }
}

TEST(decode_attention, int8_queries_run_integer_qk_on_int8_keys) {
  check_int8_query<scheme<int8, float>>();
  check_int8_query<scheme<int8, fp16>>();
  kv_cache<scheme<int8, float>> grouped(kv_shape{1, 1, 64, 8}, 32);
  kv_cache<float> plain(kv_shape{1, 1, 64, 8});
  const std::vector<float> q = random_matrix(1, 64, 5);
  std::vector<float> out(64);
  EXPECT_THROW(decode(q.data(), grouped, out.data(), 1, decode_options{0.0f, 0, true}), lowbit::error);
  EXPECT_THROW(decode(q.data(), plain, out.data(), 1, decode_options{0.0f, 0, true}), lowbit::error);
}

// The paged layout: pages scattered through the pool, appends across page boundaries; decode
// gives exactly the contiguous cache's result (the same 16-token tiles), and the reference's.
// The same tokens in a contiguous and a paged cache (pages out of order) give the same outputs.
template <class E>
void check_paged(std::size_t group_size) {
  const std::size_t d = 64, kv_heads = 2, q_heads = 4;
  const std::vector<std::size_t> lengths = {1, 70, 100};
  kv_cache<E> contiguous(kv_shape{3, kv_heads, d, 128}, group_size);
  kv_shape paged_shape{3, kv_heads, d, 0, 32, 12};
  kv_cache<E> paged(paged_shape, group_size);
  const uint32_t tables[3][4] = {{7, 0, 0, 0}, {3, 11, 1, 0}, {10, 2, 5, 8}};
  const std::size_t mapped[3] = {1, 3, 4};
  uint32_t seed = 1300;
  for (std::size_t b = 0; b < 3; ++b) {
    paged.map_pages(b, tables[b], mapped[b]);
    const std::vector<float> k = random_matrix(lengths[b], kv_heads * d, ++seed), v = random_matrix(lengths[b], kv_heads * d, ++seed);
    const std::size_t first = std::min<std::size_t>(33, lengths[b]);
    for (kv_cache<E>* c : {&contiguous, &paged}) {
      c->append(b, k.data(), v.data(), first);
      c->append(b, k.data() + first * kv_heads * d, v.data() + first * kv_heads * d, lengths[b] - first);
    }
  }
  const std::vector<float> q = random_matrix(3 * q_heads, d, ++seed);
  const std::vector<double> ref = reference_decode(q, paged, q_heads);
  for (isa path : supported_isas())
    for (std::size_t chunk : {std::size_t(0), std::size_t(16), std::size_t(48), std::size_t(40)}) {
      std::vector<float> a(q.size()), b(q.size());
      decode(q.data(), contiguous, a.data(), q_heads, decode_options{0.0f, chunk}, serial_executor{}, path);
      decode(q.data(), paged, b.data(), q_heads, decode_options{0.0f, chunk}, serial_executor{}, path);
      if (chunk % 16 == 0) {
        EXPECT_EQ(a, b) << isa_name(path) << " chunk=" << chunk;
      }
      for (std::size_t i = 0; i < b.size(); ++i) ASSERT_NEAR(b[i], ref[i], 2e-5) << isa_name(path) << " " << i;
    }
  // Errors: a page past the pool, more tokens than the mapped pages hold, a table that no longer
  // covers the tokens, page sizes that are not multiples of 16, map_pages on a contiguous cache.
  const uint32_t past[1] = {12};
  EXPECT_THROW(paged.map_pages(0, past, 1), lowbit::error);
  const std::vector<float> more = random_matrix(40, kv_heads * d, 1);
  EXPECT_THROW(paged.append(0, more.data(), more.data(), 32), lowbit::error);  // 1 + 32 > 32
  EXPECT_THROW(paged.map_pages(2, tables[2], 3), lowbit::error);             // 100 tokens > 96
  EXPECT_THROW(kv_cache<E>(kv_shape{1, 1, 64, 0, 24, 4}), lowbit::error);
  EXPECT_THROW(contiguous.map_pages(0, tables[0], 1), lowbit::error);
}

TEST(decode_attention, paged_cache_matches_the_contiguous_one) {
  check_paged<scheme<int4, fp16>>(32);
  check_paged<lowbit::bf16>(0);  // the AVX-512 kernel of decode_float_rows.hpp reads rows in place
  check_paged<float>(0);
}

// Shared prefix pages (the README: pages may be shared, e.g. a common prefix): two sequences'
// block tables start with the same two pages, then each has its own. The second sequence appends
// the same prefix tokens (rewriting the shared pages with the same codes), then its own; both
// decode as a contiguous cache holding the same tokens, and the first is unchanged by the second.
template <class E>
void check_shared_prefix(std::size_t group_size, bool tiles) {
  const std::size_t d = 64, kv_heads = 2, q_heads = 4, stride = kv_heads * d, prefix = 32;
  const std::size_t lengths[2] = {45, 60};
  kv_cache<E> contiguous(kv_shape{2, kv_heads, d, 64, 0, 0, tiles}, group_size);
  kv_cache<E> paged(kv_shape{2, kv_heads, d, 0, 16, 6, tiles}, group_size);
  const uint32_t tables[2][4] = {{4, 1, 3, 0}, {4, 1, 5, 2}};
  const std::vector<float> shared_k = random_matrix(prefix, stride, 1400), shared_v = random_matrix(prefix, stride, 1401);
  uint32_t seed = 1410;
  for (std::size_t b = 0; b < 2; ++b) {
    paged.map_pages(b, tables[b], 4);
    const std::size_t own = lengths[b] - prefix;
    const std::vector<float> k = random_matrix(own, stride, ++seed), v = random_matrix(own, stride, ++seed);
    for (kv_cache<E>* c : {&contiguous, &paged}) {
      c->append(b, shared_k.data(), shared_v.data(), prefix);
      c->append(b, k.data(), v.data(), own);
    }
  }
  const std::vector<float> q = random_matrix(2 * q_heads, d, ++seed);
  const std::vector<double> ref = reference_decode(q, contiguous, q_heads);
  decode_options options{0.0f, 16};
  if (tiles) options.int8_query = options.integer_pv = true;
  for (isa path : supported_isas()) {
    std::vector<float> a(q.size()), b(q.size());
    decode(q.data(), contiguous, a.data(), q_heads, options, serial_executor{}, path);
    decode(q.data(), paged, b.data(), q_heads, options, serial_executor{}, path);
    EXPECT_EQ(a, b) << isa_name(path) << " tiles=" << tiles;
    for (std::size_t i = 0; i < b.size() && !tiles; ++i) ASSERT_NEAR(b[i], ref[i], 2e-5) << isa_name(path) << " " << i;
  }
  for (std::size_t t = 0; t < prefix; ++t) EXPECT_EQ(paged.row(0, 1, t), paged.row(1, 1, t)) << t;
  EXPECT_NE(paged.row(0, 1, prefix), paged.row(1, 1, prefix));
}

TEST(decode_attention, sequences_share_prefix_pages) {
  check_shared_prefix<scheme<int4, fp16>>(32, false);
  check_shared_prefix<float>(0, false);
  check_shared_prefix<scheme<int8, float>>(0, true);  // the integer tiles of shared pages too
}

// The accessors check their sequence, head, token and element numbers (a key of head 7 of a
// 2-head cache read past its buffer before), in the contiguous and the paged layout; what is in
// range still reads.
TEST(decode_attention, cache_accessors_check_their_arguments) {
  kv_cache<scheme<int8, float>> cache(kv_shape{2, 2, 64, 32, 0, 0, true});
  const std::vector<float> k = random_matrix(10, 128, 1), v = random_matrix(10, 128, 2);
  cache.append(0, k.data(), v.data(), 10);
  EXPECT_NO_THROW(cache.key(0, 1, 9, 63));
  EXPECT_EQ(cache.row(0, 1, 31), 63u);  // rows past the length exist (append writes them)
  EXPECT_NO_THROW(cache.tile(0, 1, 31));
  EXPECT_EQ(cache.length(1), 0u);
  EXPECT_EQ(cache.capacity(1), 32u);
  EXPECT_THROW(cache.key(0, 7, 0, 0), lowbit::error);    // head 7 of 2
  EXPECT_THROW(cache.key(0, 2, 0, 0), lowbit::error);
  EXPECT_THROW(cache.key(2, 0, 0, 0), lowbit::error);    // sequence 2 of 2
  EXPECT_THROW(cache.key(0, 0, 10, 0), lowbit::error);   // token 10 of 10
  EXPECT_THROW(cache.key(1, 0, 0, 0), lowbit::error);    // sequence 1 holds none
  EXPECT_THROW(cache.key(0, 0, 0, 64), lowbit::error);   // element 64 of 64
  EXPECT_THROW(cache.length(2), lowbit::error);
  EXPECT_THROW(cache.capacity(5), lowbit::error);
  EXPECT_THROW(cache.row(0, 0, 32), lowbit::error);      // past the capacity of 32
  EXPECT_THROW(cache.row(0, 2, 0), lowbit::error);
  EXPECT_THROW(cache.row(2, 0, 0), lowbit::error);
  EXPECT_THROW(cache.tile(0, 0, 32), lowbit::error);
  EXPECT_THROW(cache.tile(0, 2, 0), lowbit::error);
  EXPECT_THROW(cache.tile(3, 0, 0), lowbit::error);
  EXPECT_THROW(cache.key_residual(0, 0, 0), lowbit::error);  // no KIVI keys
  EXPECT_THROW(cache.keys().element(2 * 2 * 32, 0), lowbit::error);
  EXPECT_THROW(cache.values().element(0, 64), lowbit::error);
  try {
    (void)cache.key(0, 7, 0, 0);
    FAIL() << "no error";
  } catch (const lowbit::error& e) {
    EXPECT_NE(std::string(e.what()).find("kv_cache::key: head 7 of 2 KV heads"), std::string::npos) << e.what();
  }
  kv_cache<float> untiled(kv_shape{1, 1, 16, 16});
  EXPECT_THROW(untiled.tile(0, 0, 0), lowbit::error);  // no integer tiles
  EXPECT_THROW(untiled.keys().element(16, 0), lowbit::error);
  EXPECT_THROW(untiled.values().element(0, 16), lowbit::error);

  // Paged: a sequence's capacity is its mapped pages; an unmapped one has none.
  kv_cache<scheme<int4, fp16>> paged(kv_shape{2, 2, 64, 0, 16, 4, true}, 32);
  const uint32_t pages[2] = {3, 1};
  paged.map_pages(0, pages, 2);
  paged.append(0, k.data(), v.data(), 10);
  EXPECT_EQ(paged.capacity(0), 32u);
  EXPECT_EQ(paged.row(0, 1, 17), (1u * 2 + 1) * 16 + 1);  // page 1, head 1, slot 1
  EXPECT_NO_THROW(paged.tile(0, 1, 31));
  EXPECT_NO_THROW(paged.key(0, 1, 9, 0));
  EXPECT_THROW(paged.row(0, 0, 32), lowbit::error);
  EXPECT_THROW(paged.tile(0, 0, 32), lowbit::error);
  EXPECT_THROW(paged.row(1, 0, 0), lowbit::error);   // sequence 1 has no pages
  EXPECT_THROW(paged.tile(1, 0, 0), lowbit::error);
  EXPECT_THROW(paged.key(0, 0, 10, 0), lowbit::error);
  EXPECT_THROW(paged.row(0, 2, 0), lowbit::error);
  EXPECT_THROW(paged.map_pages(2, pages, 2), lowbit::error);
  EXPECT_THROW(paged.map_pages(0, nullptr, 2), lowbit::error);
}

// decode_options::bf16 (q, K, P, V rounded to bf16, fp32 sums; vdpbf16ps on a bf16 cache on the
// avx512_vnni path). Against the float64 reference of exact attention: 2e-2 absolute, 2e-3 on
// average, as prefill's bf16 option; and every path within 1e-3 of the scalar one, which rounds
// the same operands (the sums differ in order only, so a rounded probability rarely moves).
template <class Element>
void check_bf16_products(std::size_t group_size) {
  uint32_t seed = 1700;
  for (const decode_case& c : cases) {
    kv_cache<Element> cache(kv_shape{c.lengths.size(), c.kv_heads, c.head_dim, 256}, group_size);
    for (std::size_t b = 0; b < c.lengths.size(); ++b) {
      const std::size_t stride = c.kv_heads * c.head_dim;
      const std::vector<float> k = random_matrix(c.lengths[b] + 1, stride, ++seed), v = random_matrix(c.lengths[b] + 1, stride, ++seed);
      cache.append(b, k.data(), v.data(), c.lengths[b]);
    }
    const std::vector<float> q = random_matrix(c.lengths.size() * c.q_heads, c.head_dim, ++seed);
    const std::vector<double> ref = reference_decode(q, cache, c.q_heads);
    decode_options options{0.0f, 40};
    options.bf16 = true;
    std::vector<float> scalar(q.size());
    decode(q.data(), cache, scalar.data(), c.q_heads, options, serial_executor{}, isa::scalar);
    for (isa path : supported_isas()) {
      std::vector<float> out(q.size(), -1.0f);
      decode(q.data(), cache, out.data(), c.q_heads, options, serial_executor{}, path);
      double total = 0.0;
      for (std::size_t i = 0; i < out.size(); ++i) {
        ASSERT_NEAR(out[i], ref[i], 2e-2) << isa_name(path) << " d=" << c.head_dim << " output " << i;
        ASSERT_NEAR(out[i], scalar[i], 1e-3) << isa_name(path) << " against scalar, d=" << c.head_dim << " output " << i;
        total += std::fabs(out[i] - ref[i]);
      }
      EXPECT_LT(total / double(out.size()), 2e-3) << "mean error " << isa_name(path) << " d=" << c.head_dim;
    }
  }
}

TEST(decode_attention, bf16_products_are_close_to_the_reference) {
  check_bf16_products<lowbit::bf16>(0);
  check_bf16_products<float>(0);
  check_bf16_products<scheme<int8, float>>(32);
}

TEST(decode_attention, threads_give_the_serial_result_and_errors_are_named) {
  kv_cache<scheme<int8, float>> cache(kv_shape{2, 2, 64, 300});
  const std::vector<float> k = random_matrix(300, 128, 1), v = random_matrix(300, 128, 2), q = random_matrix(2 * 4, 64, 3);
  cache.append(0, k.data(), v.data(), 300);
  cache.append(1, k.data(), v.data(), 77);
  std::vector<float> serial(q.size()), threaded(q.size());
  decode(q.data(), cache, serial.data(), 4, decode_options{0.0f, 32});
  thread_pool pool(3);
  decode(q.data(), cache, threaded.data(), 4, decode_options{0.0f, 32}, pool);
  EXPECT_EQ(serial, threaded);
  EXPECT_THROW(cache.append(1, k.data(), v.data(), 224), lowbit::error);  // 77 + 224 > 300
  EXPECT_THROW(cache.append(2, k.data(), v.data(), 1), lowbit::error);    // no sequence 2
  EXPECT_THROW(cache.append(0, nullptr, v.data(), 1), lowbit::error);
  EXPECT_THROW(decode(q.data(), cache, serial.data(), 3), lowbit::error);  // 3 heads over 2 KV heads
  EXPECT_THROW(decode(nullptr, cache, serial.data(), 4), lowbit::error);
  decode_options both{0.0f, 0, true};
  both.bf16 = true;  // int8_query and bf16 products exclude each other
  EXPECT_THROW(decode(q.data(), cache, serial.data(), 4, both), lowbit::error);
  EXPECT_THROW(kv_cache<float>(kv_shape{1, 1, 72, 8}), lowbit::error);     // head_dim % 16
  EXPECT_THROW(kv_cache<float>(kv_shape{0, 1, 64, 8}), lowbit::error);
  cache.clear(1);
  EXPECT_EQ(cache.length(1), 0u);
}

}  // namespace
}  // namespace lowbit_test
