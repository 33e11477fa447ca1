// Prefill attention against a float64 reference of softmax(q Kᵀ / sqrt(d) + mask) V on the
// dequantized cache: every KV format decode's tests use, every mask kind (with rows that see no key),
// head dims 64, 80, 128, 256, MHA / GQA / MQA, odd lengths (1, 17, 65, 130 or 70), new tokens fewer than
// and equal to the sequence's length, query blocks that cut the tiles, every ISA path; the paged
// cache, threads, the int8 QKᵀ path, and the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "common/schemes.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/attention/prefill.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit::attention;

struct prefill_case {
  std::size_t head_dim, kv_heads, q_heads;
  std::vector<std::size_t> lengths, new_tokens;
  std::size_t group_size;  // 0: one scale per token and head
};

// The long sequence, 2/3 of the work: shorter in CI's sanitizer build (-O0), still past several key
// tiles of 16 with a tail and split into two query blocks.
#ifdef LOWBIT_TEST_SANITIZED
constexpr std::size_t long_length = 70, long_new_tokens = 33;
#else
constexpr std::size_t long_length = 130, long_new_tokens = 65;
#endif

const prefill_case cases[] = {{64, 2, 4, {17, long_length, 1}, {17, long_new_tokens, 1}, 0},
                              {80, 1, 3, {65}, {33}, 16},
                              {128, 2, 2, {40, 9}, {7, 9}, 32},
                              {256, 1, 4, {20}, {20}, 64}};

// The masks' definitions, written out again from the documentation (not the kernel's code).
bool sees(const prefill_mask& m, std::size_t p, std::size_t k) {
  switch (m.kind) {
    case mask_kind::causal: return k <= p;
    case mask_kind::bidirectional: return true;
    case mask_kind::sliding_window: return k <= p && p - k < m.window;
    case mask_kind::sinks_window: return k <= p && (k < m.sinks || p - k < m.window);
    case mask_kind::block_sparse: {
      const std::size_t i = p / m.block, j = k / m.block;
      return k <= p && (i - j < m.local_blocks || (j + 1) % m.stride == 0);
    }
  }
  return false;
}

const prefill_mask masks[] = {prefill_mask::causal(),
                              prefill_mask::bidirectional(),
                              prefill_mask::sliding_window(5),
                              prefill_mask::sliding_window(40),
                              prefill_mask::sinks_and_window(3, 8),
                              prefill_mask::sinks_and_window(20, 17),
                              prefill_mask::block_sparse(8, 1, 3),
                              prefill_mask::block_sparse(16, 2, 2),
                              prefill_mask::block_sparse(4, 0, 5)};  // blocks 0-3 see nothing: zeros

std::string mask_name(const prefill_mask& m) {
  return "mask " + std::to_string(int(m.kind)) + " window=" + std::to_string(m.window) + " sinks=" +
         std::to_string(m.sinks) + " block=" + std::to_string(m.block) + "/" + std::to_string(m.local_blocks) + "/" +
         std::to_string(m.stride);
}

// softmax(q K^T scale + mask) V in double over the cache's own values; q rows: the new tokens of
// each sequence in order. A query that sees no key gives zeros.
template <class Element>
std::vector<double> reference_prefill(const std::vector<float>& q, const kv_cache<Element>& cache,
                                      const std::vector<std::size_t>& new_tokens, std::size_t q_heads,
                                      const prefill_mask& mask) {
  const kv_shape& s = cache.shape();
  const std::size_t d = s.head_dim, group = q_heads / s.kv_heads;
  const double scale = 1.0 / std::sqrt(double(d));
  std::vector<double> out(q.size(), 0.0);
  std::size_t row = 0;
  for (std::size_t b = 0; b < s.batch; ++b) {
    const std::size_t len = cache.length(b);
    // The cache's values of this sequence, dequantized once: kv[h][t][e].
    std::vector<double> keys(s.kv_heads * len * d), values(keys.size());
    for (std::size_t h = 0; h < s.kv_heads; ++h)
      for (std::size_t t = 0; t < len; ++t)
        for (std::size_t e = 0; e < d; ++e) {
          keys[(h * len + t) * d + e] = cache.keys().element(cache.row(b, h, t), e);
          values[(h * len + t) * d + e] = cache.values().element(cache.row(b, h, t), e);
        }
    for (std::size_t i = 0; i < new_tokens[b]; ++i, ++row) {
      const std::size_t p = len - new_tokens[b] + i;
      for (std::size_t j = 0; j < q_heads; ++j) {
        const std::size_t h = j / group;
        const float* qj = q.data() + (row * q_heads + j) * d;
        std::vector<double> w(len, 0.0);
        double max = -INFINITY, sum = 0.0;
        for (std::size_t k = 0; k < len; ++k) {
          if (!sees(mask, p, k)) continue;
          double dot = 0.0;
          for (std::size_t e = 0; e < d; ++e) dot += double(qj[e]) * keys[(h * len + k) * d + e];
          w[k] = dot * scale;
          max = std::max(max, w[k]);
        }
        if (max == -INFINITY) continue;
        for (std::size_t k = 0; k < len; ++k) sum += w[k] = sees(mask, p, k) ? std::exp(w[k] - max) : 0.0;
        double* o = out.data() + (row * q_heads + j) * d;
        for (std::size_t k = 0; k < len; ++k)
          if (w[k] != 0.0)
            for (std::size_t e = 0; e < d; ++e) o[e] += w[k] / sum * values[(h * len + k) * d + e];
      }
    }
  }
  return out;
}

template <class Element>
kv_cache<Element> make_cache(const prefill_case& c, uint32_t& seed, std::size_t group_size) {
  kv_cache<Element> cache(kv_shape{c.lengths.size(), c.kv_heads, c.head_dim, 144}, group_size);
  for (std::size_t b = 0; b < c.lengths.size(); ++b) {
    // The context first, then the new tokens (as an engine appends them before the prefill step).
    const std::size_t stride = c.kv_heads * c.head_dim, context = c.lengths[b] - c.new_tokens[b];
    const std::vector<float> k = random_matrix(c.lengths[b], stride, ++seed), v = random_matrix(c.lengths[b], stride, ++seed);
    cache.append(b, k.data(), v.data(), context);
    cache.append(b, k.data() + context * stride, v.data() + context * stride, c.new_tokens[b]);
  }
  return cache;
}

std::vector<float> make_queries(const prefill_case& c, uint32_t seed) {
  return random_matrix(std::accumulate(c.new_tokens.begin(), c.new_tokens.end(), std::size_t(0)) * c.q_heads, c.head_dim,
                       seed);
}

template <class Element>
void check_prefill(const std::vector<prefill_mask>& mask_list, std::size_t block_tokens) {
  uint32_t seed = 2000;
  for (const prefill_case& c : cases) {
    const kv_cache<Element> cache = make_cache<Element>(c, seed, c.group_size);
    const std::vector<float> q = make_queries(c, ++seed);
    for (const prefill_mask& mask : mask_list) {
      const std::vector<double> ref = reference_prefill(q, cache, c.new_tokens, c.q_heads, mask);
      for (isa path : supported_isas()) {
        std::vector<float> out(q.size(), -1.0f);
        prefill_options options;
        options.block_tokens = block_tokens;
        prefill(q.data(), cache, c.new_tokens.data(), out.data(), c.q_heads, mask, options, serial_executor{}, path);
        // Outputs are convex combinations of V (|v| < ~5) or zeros: an absolute bound of fp32 rounding.
        for (std::size_t i = 0; i < out.size(); ++i)
          ASSERT_NEAR(out[i], ref[i], 2e-5) << isa_name(path) << " d=" << c.head_dim << " " << mask_name(mask)
                                            << " block_tokens=" << block_tokens << " output " << i;
      }
    }
  }
}

const std::vector<prefill_mask> two_masks = {prefill_mask::causal(), prefill_mask::sinks_and_window(3, 8)};

TEST(prefill_attention, every_kv_format_matches_the_reference_on_every_path) {
  check_prefill<float>(two_masks, 0);
  check_prefill<bf16>(two_masks, 0);
  check_prefill<scheme<int8, float>>(two_masks, 0);
  check_prefill<scheme<int4, fp16>>(two_masks, 0);
  check_prefill<scheme<uint4, fp16, true>>(two_masks, 0);
  check_prefill<scheme<fp8_e4m3, float>>(two_masks, 0);
  check_prefill<scheme<fp8_e5m2, bf16>>(two_masks, 0);
  check_prefill<mx::int8>(two_masks, 0);
  check_prefill<mx::fp4>(two_masks, 0);
}

TEST(prefill_attention, every_mask_matches_the_reference_on_every_path) {
  const std::vector<prefill_mask> all(std::begin(masks), std::end(masks));
  check_prefill<scheme<int4, fp16>>(all, 0);
  check_prefill<scheme<int8, float>>(all, 5);  // 5-token query blocks: blocks cut the key tiles
}

// The masks' tile classification against the element rule: a tile called none has no visible
// pair, one called all has no hidden pair (what lets the kernel skip or not mask it).
TEST(prefill_attention, mask_tiles_agree_with_the_element_rule) {
  for (const prefill_mask& mask : masks)
    for (std::size_t p0 = 0; p0 < 150; p0 += 7)
      for (std::size_t p1 : {p0 + 1, p0 + 5, p0 + 64})
        for (std::size_t k0 = 0; k0 < 220; k0 += 16) {
          const std::size_t k1 = k0 + 16;
          bool any = false, all = true;
          for (std::size_t p = p0; p < p1; ++p)
            for (std::size_t k = k0; k < k1; ++k) {
              const bool v = sees(mask, p, k);
              EXPECT_EQ(v, mask.visible(p, k)) << mask_name(mask) << " p=" << p << " k=" << k;
              any = any || v;
              all = all && v;
            }
          const prefill_mask::cover cover = mask.tile(p0, p1, k0, k1);
          if (cover == prefill_mask::cover::none) {
            EXPECT_FALSE(any) << mask_name(mask) << " p " << p0 << ".." << p1 << " k " << k0;
          }
          if (cover == prefill_mask::cover::all) {
            EXPECT_TRUE(all) << mask_name(mask) << " p " << p0 << ".." << p1 << " k " << k0;
          }
        }
}

// The paged layout: pages scattered through the pool; prefill gives exactly the contiguous cache's
// result (the same tiles), and the reference's. Threads give exactly the serial result.
TEST(prefill_attention, paged_cache_and_threads_give_the_same_result) {
  using E = scheme<int4, fp16>;
  const std::size_t d = 64, kv_heads = 2, q_heads = 8;
  const std::vector<std::size_t> lengths = {1, 70, 100}, new_tokens = {1, 70, 37};
  kv_cache<E> contiguous(kv_shape{3, kv_heads, d, 128}, 32);
  kv_cache<E> paged(kv_shape{3, kv_heads, d, 0, 32, 12}, 32);
  const uint32_t tables[3][4] = {{7, 0, 0, 0}, {3, 11, 1, 0}, {10, 2, 5, 8}};
  const std::size_t mapped[3] = {1, 3, 4};
  uint32_t seed = 2300;
  for (std::size_t b = 0; b < 3; ++b) {
    paged.map_pages(b, tables[b], mapped[b]);
    const std::vector<float> k = random_matrix(lengths[b], kv_heads * d, ++seed), v = random_matrix(lengths[b], kv_heads * d, ++seed);
    for (kv_cache<E>* c : {&contiguous, &paged}) c->append(b, k.data(), v.data(), lengths[b]);
  }
  const std::vector<float> q = random_matrix(108 * q_heads, d, ++seed);
  thread_pool pool(3);
  for (const prefill_mask& mask : {prefill_mask::causal(), prefill_mask::block_sparse(16, 1, 2)}) {
    const std::vector<double> ref = reference_prefill(q, paged, new_tokens, q_heads, mask);
    for (isa path : supported_isas()) {
      std::vector<float> a(q.size()), b(q.size()), threaded(q.size());
      prefill(q.data(), contiguous, new_tokens.data(), a.data(), q_heads, mask, {}, serial_executor{}, path);
      prefill(q.data(), paged, new_tokens.data(), b.data(), q_heads, mask, {}, serial_executor{}, path);
      prefill(q.data(), paged, new_tokens.data(), threaded.data(), q_heads, mask, {}, pool, path);
      EXPECT_EQ(a, b) << isa_name(path);
      EXPECT_EQ(b, threaded) << isa_name(path);
      for (std::size_t i = 0; i < b.size(); ++i) ASSERT_NEAR(b[i], ref[i], 2e-5) << isa_name(path) << " " << i;
    }
  }
}

// int8_qk: keys smoothed by their channel means and quantized per token, queries per token and
// head, scores in int32. Against the float64 reference of exact attention: 5e-2 absolute, 5e-3 on
// average (scores here have a standard deviation of about 1, |v| < ~5; the int8 rounding of q and
// k moves a score by about 1%, an output by up to ~4e-2 at d = 256 where few keys are seen).
template <class Element>
void check_int8_qk() {
  uint32_t seed = 2500;
  for (const prefill_case& c : cases) {
    // Keys with a large per-channel offset (the outliers smoothing is for) on top of the noise.
    kv_cache<Element> cache(kv_shape{c.lengths.size(), c.kv_heads, c.head_dim, 144}, c.group_size);
    for (std::size_t b = 0; b < c.lengths.size(); ++b) {
      const std::size_t stride = c.kv_heads * c.head_dim;
      std::vector<float> k = random_matrix(c.lengths[b], stride, ++seed);
      const std::vector<float> v = random_matrix(c.lengths[b], stride, ++seed);
      for (std::size_t t = 0; t < c.lengths[b]; ++t) k[t * stride + 5] += 8.0f;
      cache.append(b, k.data(), v.data(), c.lengths[b]);
    }
    const std::vector<float> q = make_queries(c, ++seed);
    for (const prefill_mask& mask : {prefill_mask::causal(), prefill_mask::bidirectional(), prefill_mask::block_sparse(8, 1, 3)}) {
      const std::vector<double> ref = reference_prefill(q, cache, c.new_tokens, c.q_heads, mask);
      for (isa path : supported_isas()) {
        std::vector<float> out(q.size(), -1.0f);
        prefill(q.data(), cache, c.new_tokens.data(), out.data(), c.q_heads, mask, prefill_options{0.0f, true},
                serial_executor{}, path);
        double total = 0.0;
        for (std::size_t i = 0; i < out.size(); ++i) {
          ASSERT_NEAR(out[i], ref[i], 5e-2) << "int8_qk " << isa_name(path) << " d=" << c.head_dim << " "
                                            << mask_name(mask) << " output " << i;
          total += std::fabs(out[i] - ref[i]);
        }
        EXPECT_LT(total / double(out.size()), 5e-3) << "int8_qk mean error " << isa_name(path) << " d=" << c.head_dim;
      }
    }
  }
}

TEST(prefill_attention, int8_qk_with_smoothed_keys_is_close_to_the_reference) {
  check_int8_qk<float>();
  check_int8_qk<scheme<int8, float>>();
  check_int8_qk<scheme<int4, fp16>>();
}

// Smoothing, isolated: keys whose channels 3 and 17 sit at +40 and -25 over noise of standard
// deviation 1 (the offsets smoothing removes; they shift a query's scores alike, which softmax
// ignores). Unsmoothed, a token's int8 step would be 40 / 127, 13x that of the smoothed keys
// (~3.5 / 127). The documented int8_qk tolerance, 5e-2 absolute and 5e-3 on average: smoothed the
// errors measured 0.026 / 0.0017, with the channel mean forced to 0 0.16-0.19 / 0.017 (fails 3x).
TEST(prefill_attention, int8_qk_subtracts_large_channel_offsets) {
  for (std::size_t d : {64, 128}) {
    const std::size_t kv_heads = 2, q_heads = 4, stride = kv_heads * d;
    const std::vector<std::size_t> lengths = {70, 33}, new_tokens = {70, 9};
    kv_cache<float> cache(kv_shape{2, kv_heads, d, 80});
    uint32_t seed = 2600 + uint32_t(d);
    for (std::size_t b = 0; b < 2; ++b) {
      std::vector<float> k = random_matrix(lengths[b], stride, ++seed);
      const std::vector<float> v = random_matrix(lengths[b], stride, ++seed);
      for (std::size_t t = 0; t < lengths[b]; ++t)
        for (std::size_t h = 0; h < kv_heads; ++h) {
          k[t * stride + h * d + 3] += 40.0f;
          k[t * stride + h * d + 17] -= 25.0f;
        }
      cache.append(b, k.data(), v.data(), lengths[b]);
    }
    const std::vector<float> q = random_matrix(79 * q_heads, d, ++seed);
    const std::vector<double> ref = reference_prefill(q, cache, new_tokens, q_heads, prefill_mask::causal());
    for (isa path : supported_isas()) {
      std::vector<float> out(q.size(), -1.0f);
      prefill(q.data(), cache, new_tokens.data(), out.data(), q_heads, prefill_mask::causal(), prefill_options{0.0f, true},
              serial_executor{}, path);
      double total = 0.0, worst = 0.0;
      for (std::size_t i = 0; i < out.size(); ++i) {
        worst = std::max(worst, std::fabs(out[i] - ref[i]));
        total += std::fabs(out[i] - ref[i]);
      }
      EXPECT_LT(worst, 5e-2) << "int8_qk with channel offsets " << isa_name(path) << " d=" << d;
      EXPECT_LT(total / double(out.size()), 5e-3) << "int8_qk mean error with channel offsets " << isa_name(path) << " d=" << d;
    }
  }
}

// bf16 products (Q, K, P, V rounded to bf16, fp32 sums; vdpbf16ps on the avx512_vnni path), alone
// and with int8_qk (then PV only). Against the float64 reference of exact attention: 2e-2 absolute,
// 2e-3 on average (bf16 keeps 8 significant bits: a score moves by ~0.3%, an output by up to ~1e-2).
template <class Element>
void check_bf16(bool int8_qk, double tolerance, double mean_tolerance) {
  uint32_t seed = 2700;
  for (const prefill_case& c : cases) {
    const kv_cache<Element> cache = make_cache<Element>(c, seed, c.group_size);
    const std::vector<float> q = make_queries(c, ++seed);
    for (const prefill_mask& mask : {prefill_mask::causal(), prefill_mask::sliding_window(5), prefill_mask::block_sparse(8, 1, 3)}) {
      const std::vector<double> ref = reference_prefill(q, cache, c.new_tokens, c.q_heads, mask);
      for (isa path : supported_isas()) {
        std::vector<float> out(q.size(), -1.0f);
        prefill_options options;
        options.bf16 = true;
        options.int8_qk = int8_qk;
        prefill(q.data(), cache, c.new_tokens.data(), out.data(), c.q_heads, mask, options, serial_executor{}, path);
        double total = 0.0;
        for (std::size_t i = 0; i < out.size(); ++i) {
          ASSERT_NEAR(out[i], ref[i], tolerance) << "bf16 " << isa_name(path) << " d=" << c.head_dim << " "
                                                 << mask_name(mask) << " output " << i;
          total += std::fabs(out[i] - ref[i]);
        }
        EXPECT_LT(total / double(out.size()), mean_tolerance) << "bf16 mean error " << isa_name(path) << " d=" << c.head_dim;
      }
    }
  }
}

TEST(prefill_attention, bf16_products_are_close_to_the_reference) {
  check_bf16<float>(false, 2e-2, 2e-3);
  check_bf16<bf16>(false, 2e-2, 2e-3);
  check_bf16<scheme<int4, fp16>>(false, 2e-2, 2e-3);
  check_bf16<scheme<int8, float>>(true, 5e-2, 5e-3);
}

TEST(prefill_attention, errors_are_named) {
  kv_cache<float> cache(kv_shape{2, 2, 64, 32});
  const std::vector<float> k = random_matrix(32, 128, 1), v = random_matrix(32, 128, 2), q = random_matrix(20 * 4, 64, 3);
  cache.append(0, k.data(), v.data(), 10);
  cache.append(1, k.data(), v.data(), 10);
  std::vector<float> out(q.size());
  const std::size_t ok[2] = {10, 10}, too_many[2] = {10, 11};
  EXPECT_NO_THROW(prefill(q.data(), cache, ok, out.data(), 4));
  EXPECT_THROW(prefill(q.data(), cache, too_many, out.data(), 4), lowbit::error);  // 11 > length 10
  EXPECT_THROW(prefill(q.data(), cache, ok, out.data(), 3), lowbit::error);        // 3 heads over 2 KV heads
  EXPECT_THROW(prefill(q.data(), cache, ok, out.data(), 0), lowbit::error);
  EXPECT_THROW(prefill(nullptr, cache, ok, out.data(), 4), lowbit::error);
  EXPECT_THROW(prefill(q.data(), cache, ok, nullptr, 4), lowbit::error);
  EXPECT_THROW(prefill(q.data(), cache, nullptr, out.data(), 4), lowbit::error);
  EXPECT_THROW(prefill(q.data(), cache, ok, out.data(), 4, prefill_mask::sliding_window(0)), lowbit::error);
  EXPECT_THROW(prefill(q.data(), cache, ok, out.data(), 4, prefill_mask::sinks_and_window(4, 0)), lowbit::error);
  EXPECT_THROW(prefill(q.data(), cache, ok, out.data(), 4, prefill_mask::block_sparse(0, 1, 2)), lowbit::error);
  EXPECT_THROW(prefill(q.data(), cache, ok, out.data(), 4, prefill_mask::block_sparse(16, 1, 0)), lowbit::error);
  try {
    prefill(q.data(), cache, too_many, out.data(), 4);
    FAIL() << "no error";
  } catch (const lowbit::error& e) {
    EXPECT_NE(std::string(e.what()).find("new_tokens[1]=11"), std::string::npos) << e.what();
  }
  // No new tokens anywhere: nothing to do, nothing written.
  const std::size_t none[2] = {0, 0};
  EXPECT_NO_THROW(prefill(q.data(), cache, none, out.data(), 4));
}

}  // namespace
}  // namespace lowbit_test
