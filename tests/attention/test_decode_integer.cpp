// Decode attention in integers on both sides (int8_query + integer_pv) against a float64
// reference of attention with the int8-quantized queries on the dequantized cache, within the
// bound decode_integer.hpp states for the u8 probabilities: per output,
//   (0.5 / 255) · max|code| · max s_v · Σ_t max_{|t'-t| < 16} p_t' / Σ_t p_t   (+ fp32 rounding)
// (the window maximum bounds the maximum of any 16-token tile holding t). int8 and int4 K / V,
// one scale per token-head or groups, head dims 64, 80, 128, 256, GQA / MHA, odd lengths, chunk
// sizes that cut tiles, the paged layout, threads, every ISA path; and the option's errors. Each
// case runs on a cache with integer tiles too (kv_shape::integer_tiles: the AVX-512 tile kernel,
// the portable paths on its rows), and appends one token at a time there.
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

struct int_case {
  std::size_t head_dim, kv_heads, q_heads;
  std::vector<std::size_t> lengths;
  std::size_t group_size;  // 0: one scale per token and head
};

// Each query head quantized as the kernel does (absmax / 127, round half to even).
std::vector<float> quantized_queries(const std::vector<float>& q, std::size_t d) {
  std::vector<float> out(q.size());
  for (std::size_t r = 0; r < q.size() / d; ++r) {
    float absmax = 0.0f;
    for (std::size_t e = 0; e < d; ++e) absmax = std::max(absmax, std::fabs(q[r * d + e]));
    const float scale = absmax > 0.0f ? absmax / 127.0f : 1.0f;
    for (std::size_t e = 0; e < d; ++e) out[r * d + e] = std::nearbyint(q[r * d + e] / scale) * scale;
  }
  return out;
}

// The float64 result and each output's bound.
template <class Element>
void reference(const std::vector<float>& q, const kv_cache<Element>& cache, std::size_t q_heads, std::vector<double>& out,
               std::vector<double>& bound) {
  const kv_shape& s = cache.shape();
  const std::size_t d = s.head_dim, group = q_heads / s.kv_heads;
  const double scale = 1.0 / std::sqrt(double(d));
  const double max_code = std::is_same<typename Element::format, lowbit::int4>::value ? 8.0 : 128.0;
  const auto& vm = cache.values().matrix;
  out.assign(q.size(), 0.0);
  bound.assign(q.size(), 0.0);
  for (std::size_t b = 0; b < s.batch; ++b)
    for (std::size_t j = 0; j < q_heads; ++j) {
      const std::size_t h = j / group, n = cache.length(b);
      if (n == 0) continue;
      std::vector<double> p(n);
      double max = -INFINITY, sum = 0.0, max_scale = 0.0;
      for (std::size_t t = 0; t < n; ++t) {
        double dot = 0.0;
        for (std::size_t e = 0; e < d; ++e) dot += double(q[(b * q_heads + j) * d + e]) * cache.keys().element(cache.row(b, h, t), e);
        p[t] = dot * scale;
        max = std::max(max, p[t]);
        for (std::size_t g = 0; g < vm.groups_per_row(); ++g)
          max_scale = std::max(max_scale, double(lowbit::scale_traits<typename Element::scale_type>::to_float(
                                              vm.scales()[cache.row(b, h, t) * vm.groups_per_row() + g])));
      }
      for (double& v : p) sum += v = std::exp(v - max);
      double windows = 0.0;
      for (std::size_t t = 0; t < n; ++t) {
        double m = 0.0;
        for (std::size_t u = t >= 15 ? t - 15 : 0; u < std::min(n, t + 16); ++u) m = std::max(m, p[u]);
        windows += m;
      }
      const double limit = 0.5 / 255.0 * max_code * max_scale * windows / sum * 1.01 + 3e-5;
      for (std::size_t t = 0; t < n; ++t)
        for (std::size_t e = 0; e < d; ++e)
          out[(b * q_heads + j) * d + e] += p[t] / sum * cache.values().element(cache.row(b, h, t), e);
      for (std::size_t e = 0; e < d; ++e) bound[(b * q_heads + j) * d + e] = limit;
    }
}

const decode_options integer_options(std::size_t chunk) { return decode_options{0.0f, chunk, true, true}; }

template <class Element>
void check_integer(const std::vector<int_case>& cases, const std::vector<float>& spreads = {1.0f, 6.0f}) {
  for (bool tiles : {false, true}) {
  uint32_t seed = 2100;
  for (const int_case& c : cases) {
    kv_cache<Element> cache(kv_shape{c.lengths.size(), c.kv_heads, c.head_dim, 250, 0, 0, tiles}, c.group_size);
    for (std::size_t b = 0; b < c.lengths.size(); ++b) {
      const std::size_t stride = c.kv_heads * c.head_dim, first = c.lengths[b] / 3;
      const std::vector<float> k = random_matrix(c.lengths[b] + 1, stride, ++seed), v = random_matrix(c.lengths[b] + 1, stride, ++seed);
      cache.append(b, k.data(), v.data(), first);
      if (tiles) {  // decode steps
        for (std::size_t t = first; t < c.lengths[b]; ++t) cache.append(b, k.data() + t * stride, v.data() + t * stride, 1);
      } else {
        cache.append(b, k.data() + first * stride, v.data() + first * stride, c.lengths[b] - first);
      }
    }
    // Spread queries (flat attention) and sharp ones (a few tokens take most of the weight).
    for (float spread : spreads) {
      const std::vector<float> q = random_matrix(c.lengths.size() * c.q_heads, c.head_dim, ++seed, spread);
      std::vector<double> ref, bound;
      reference(quantized_queries(q, c.head_dim), cache, c.q_heads, ref, bound);
      for (lowbit::isa path : supported_isas())
        for (std::size_t chunk : {std::size_t(0), std::size_t(16), std::size_t(40)}) {
          std::vector<float> out(q.size(), -1.0f);
          decode(q.data(), cache, out.data(), c.q_heads, integer_options(chunk), lowbit::serial_executor{}, path);
          for (std::size_t i = 0; i < out.size(); ++i)
            ASSERT_NEAR(out[i], ref[i], bound[i]) << lowbit::isa_name(path) << " d=" << c.head_dim << " g=" << c.group_size
                                                  << " chunk=" << chunk << " spread=" << spread << " tiles=" << tiles
                                                  << " output " << i;
        }
    }
  }
  }
}

TEST(decode_integer, int8_kv_within_the_stated_bound_on_every_path) {
  check_integer<lowbit::scheme<lowbit::int8, float>>({{128, 2, 8, {1, 37, 200}, 0},
                                                      {80, 1, 4, {5, 0, 100}, 16},
                                                      {64, 3, 3, {17, 64}, 32},
                                                      {256, 1, 2, {33}, 64},
                                                      {96, 2, 6, {45, 3}, 0}});
  check_integer<lowbit::scheme<lowbit::int8, lowbit::fp16>>({{128, 1, 4, {77}, 0}, {96, 1, 2, {20}, 32}});
}

TEST(decode_integer, int4_kv_within_the_stated_bound_on_every_path) {
  check_integer<lowbit::scheme<lowbit::int4, lowbit::fp16>>({{128, 2, 8, {1, 37, 200}, 32},
                                                             {80, 1, 4, {5, 0, 100}, 0},
                                                             {64, 3, 3, {17, 64}, 64},
                                                             {256, 1, 2, {33}, 32},
                                                             {96, 2, 6, {45, 3}, 32}});
  check_integer<lowbit::scheme<lowbit::int4, float>>({{128, 1, 4, {77}, 0}, {96, 1, 2, {20}, 0}});
}

// Head dimension 128 with one, two or four scale groups: the tile kernel's unrolled shapes, for
// groups of four query heads (and eight: two blocks; five, seven: a block of four and its rest
// on the loops), int8 and int4, odd lengths.
TEST(decode_integer, unrolled_tile_shapes_within_the_bound) {
  check_integer<lowbit::scheme<lowbit::int4, lowbit::fp16>>({{128, 1, 4, {45}, 64},
                                                             {128, 1, 8, {19, 50}, 32},
                                                             {128, 1, 5, {33}, 0},
                                                             {128, 1, 7, {21}, 64}},
                                                            {1.0f});
  check_integer<lowbit::scheme<lowbit::int8, float>>({{128, 1, 4, {45}, 64}, {128, 1, 8, {19}, 32}, {128, 1, 5, {33}, 0}},
                                                     {1.0f});
}

#if defined(LOWBIT_COMPILED_AVX512)
// The tile kernel's short exp: within 1e-6 of e^x (relative) on the scores' range above -10,
// within 2e-7 absolute below, exactly 1 at 0, and 0 far below (no clamp needed).
TEST(decode_integer, tile_exp_is_accurate) {
  if (!lowbit::isa_supported(lowbit::isa::avx512)) GTEST_SKIP() << "no AVX-512 here";
  for (float x = -120.0f; x <= 0.0f; x += 0.0173f) {
    const double e = std::exp(double(x)), got = _mm512_cvtss_f32(lowbit::attention::detail::exp_tile(_mm512_set1_ps(x)));
    if (x > -10.0f) {
      ASSERT_NEAR(got, e, 1e-6 * e) << x;
    } else {
      ASSERT_NEAR(got, e, 2e-7) << x;
    }
  }
  EXPECT_EQ(_mm512_cvtss_f32(lowbit::attention::detail::exp_tile(_mm512_setzero_ps())), 1.0f);
  EXPECT_EQ(_mm512_cvtss_f32(lowbit::attention::detail::exp_tile(_mm512_set1_ps(-200.0f))), 0.0f);
}

// The integer tile kernel's 2^x (its scores are in base 2): within 3e-6 relative down to the
// denormals, one denormal step below, 0 far below.
TEST(decode_integer, tile_exp2_is_accurate) {
  if (!lowbit::isa_supported(lowbit::isa::avx512)) GTEST_SKIP() << "no AVX-512 here";
  for (float x = -150.0f; x <= 0.0f; x += 0.0137f) {
    const double e = std::exp2(double(x)), got = _mm512_cvtss_f32(lowbit::attention::detail::exp2_tile(_mm512_set1_ps(x)));
    ASSERT_NEAR(got, e, 3e-6 * e + 1.5e-45) << x;
  }
  EXPECT_NEAR(_mm512_cvtss_f32(lowbit::attention::detail::exp2_tile(_mm512_setzero_ps())), 1.0f, 1e-6f);
  EXPECT_EQ(_mm512_cvtss_f32(lowbit::attention::detail::exp2_tile(_mm512_set1_ps(-200.0f))), 0.0f);
}
#endif

// Scores hundreds apart: tiles whose probabilities underflow (denormal or 0) next to the running
// maximum still give results within the bound (no inf or NaN from their weights' step).
TEST(decode_integer, tiles_far_below_the_maximum) {
  check_integer<lowbit::scheme<lowbit::int8, float>>({{64, 1, 2, {70}, 0}}, {300.0f});
  check_integer<lowbit::scheme<lowbit::int4, lowbit::fp16>>({{64, 1, 2, {70}, 32}}, {300.0f});
}

// Paged: the same tiles as the contiguous cache when chunks are multiples of 16 (bit-identical),
// and within the bound always, with and without integer tiles; threads give the serial result.
TEST(decode_integer, paged_and_threaded_give_the_contiguous_result) {
  using E = lowbit::scheme<lowbit::int4, lowbit::fp16>;
  const std::size_t d = 128, kv_heads = 2, q_heads = 8;
  const std::vector<std::size_t> lengths = {1, 70, 100};
  kv_cache<E> contiguous(kv_shape{3, kv_heads, d, 128}, 32);
  kv_cache<E> paged(kv_shape{3, kv_heads, d, 0, 32, 12}, 32);
  kv_cache<E> contiguous_tiles(kv_shape{3, kv_heads, d, 128, 0, 0, true}, 32);
  kv_cache<E> paged_tiles(kv_shape{3, kv_heads, d, 0, 32, 12, true}, 32);
  const uint32_t tables[3][4] = {{7, 0, 0, 0}, {3, 11, 1, 0}, {10, 2, 5, 8}};
  const std::size_t mapped[3] = {1, 3, 4};
  uint32_t seed = 2300;
  for (std::size_t b = 0; b < 3; ++b) {
    paged.map_pages(b, tables[b], mapped[b]);
    paged_tiles.map_pages(b, tables[b], mapped[b]);
    const std::vector<float> k = random_matrix(lengths[b], kv_heads * d, ++seed), v = random_matrix(lengths[b], kv_heads * d, ++seed);
    for (kv_cache<E>* c : {&contiguous, &paged, &contiguous_tiles, &paged_tiles}) {
      c->append(b, k.data(), v.data(), std::min<std::size_t>(33, lengths[b]));
      for (std::size_t t = 33; t < lengths[b]; ++t)  // decode steps: one token at a time
        c->append(b, k.data() + t * kv_heads * d, v.data() + t * kv_heads * d, 1);
    }
  }
  const std::vector<float> q = random_matrix(3 * q_heads, d, ++seed, 3.0f);
  std::vector<double> ref, bound;
  reference(quantized_queries(q, d), paged, q_heads, ref, bound);
  for (lowbit::isa path : supported_isas())
    for (std::size_t chunk : {std::size_t(0), std::size_t(48), std::size_t(40)}) {
      std::vector<float> a(q.size()), b(q.size()), at(q.size()), bt(q.size());
      decode(q.data(), contiguous, a.data(), q_heads, integer_options(chunk), lowbit::serial_executor{}, path);
      decode(q.data(), paged, b.data(), q_heads, integer_options(chunk), lowbit::serial_executor{}, path);
      decode(q.data(), contiguous_tiles, at.data(), q_heads, integer_options(chunk), lowbit::serial_executor{}, path);
      decode(q.data(), paged_tiles, bt.data(), q_heads, integer_options(chunk), lowbit::serial_executor{}, path);
      if (chunk % 16 == 0) {
        EXPECT_EQ(a, b) << lowbit::isa_name(path) << " chunk=" << chunk;
        EXPECT_EQ(at, bt) << lowbit::isa_name(path) << " chunk=" << chunk << " (tiles)";
      }
      for (std::size_t i = 0; i < b.size(); ++i) {
        ASSERT_NEAR(b[i], ref[i], bound[i]) << lowbit::isa_name(path) << " " << i;
        ASSERT_NEAR(bt[i], ref[i], bound[i]) << lowbit::isa_name(path) << " " << i << " (tiles)";
      }
    }
  for (kv_cache<E>* c : {&paged, &paged_tiles}) {
    std::vector<float> serial(q.size()), threaded(q.size());
    decode(q.data(), *c, serial.data(), q_heads, integer_options(16));
    lowbit::thread_pool pool(3);
    decode(q.data(), *c, threaded.data(), q_heads, integer_options(16), pool);
    EXPECT_EQ(serial, threaded);
  }
}

TEST(decode_integer, needs_int8_or_int4_codes_without_zero_points) {
  const std::vector<float> k = random_matrix(4, 64, 1), q = random_matrix(1, 64, 2);
  std::vector<float> out(64);
  kv_cache<lowbit::scheme<lowbit::uint4, lowbit::fp16, true>> zeros(kv_shape{1, 1, 64, 8}, 32);
  kv_cache<lowbit::bf16> plain(kv_shape{1, 1, 64, 8});
  kv_cache<lowbit::scheme<lowbit::int4, lowbit::fp16>> int4_g16(kv_shape{1, 1, 64, 8}, 16);  // splits a 128-bit lane
  kv_cache<lowbit::scheme<lowbit::int8, float>> int8(kv_shape{1, 1, 64, 8});
  zeros.append(0, k.data(), k.data(), 4);
  plain.append(0, k.data(), k.data(), 4);
  int4_g16.append(0, k.data(), k.data(), 4);
  int8.append(0, k.data(), k.data(), 4);
  EXPECT_THROW(decode(q.data(), zeros, out.data(), 1, integer_options(0)), lowbit::error);
  EXPECT_THROW(decode(q.data(), plain, out.data(), 1, integer_options(0)), lowbit::error);
  EXPECT_THROW(decode(q.data(), int4_g16, out.data(), 1, integer_options(0)), lowbit::error);
  EXPECT_THROW(decode(q.data(), int8, out.data(), 1, decode_options{0.0f, 0, false, true}), lowbit::error);  // no int8_query
  EXPECT_NO_THROW(decode(q.data(), int8, out.data(), 1, integer_options(0)));
}

TEST(decode_integer, integer_tiles_need_int8_or_int4_codes_and_per_token_keys) {
  using int4_fp16 = lowbit::scheme<lowbit::int4, lowbit::fp16>;
  using uint4_zero = lowbit::scheme<lowbit::uint4, lowbit::fp16, true>;
  const kv_shape tiled{1, 1, 64, 32, 0, 0, true};
  EXPECT_THROW(kv_cache<lowbit::bf16>{tiled}, lowbit::error);
  EXPECT_THROW(kv_cache<uint4_zero>(tiled, 32), lowbit::error);
  EXPECT_THROW(kv_cache<int4_fp16>(tiled, 16), lowbit::error);           // splits a 32-element block
  EXPECT_THROW(kv_cache<int4_fp16>(tiled, 32, 16), lowbit::error);       // KIVI keys
  // The float paths still read the rows of a tiled cache.
  kv_cache<lowbit::scheme<lowbit::int8, float>> cache(tiled);
  const std::vector<float> k = random_matrix(20, 64, 5), q = random_matrix(1, 64, 6);
  cache.append(0, k.data(), k.data(), 20);
  std::vector<float> a(64), b(64);
  kv_cache<lowbit::scheme<lowbit::int8, float>> rows(kv_shape{1, 1, 64, 32});
  rows.append(0, k.data(), k.data(), 20);
  decode(q.data(), cache, a.data(), 1);
  decode(q.data(), rows, b.data(), 1);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace lowbit_test
