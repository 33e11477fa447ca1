// KIVI keys (kv_cache key_tokens > 0): keys quantized per channel over blocks of tokens, the
// newest incomplete block kept in fp32 until it fills. Checked: what the cache holds (residual
// tokens exact, a full block's channels each within a step of its own scale, so an outlier
// channel does not spoil the others), decode and prefill against a float64 reference on the
// dequantized cache on every path, contiguous and paged, tokens appended one by one and in
// pieces, odd lengths, int8 / int4 / uint4 / FP8 E4M3 and E5M2 codes; prefill's int8 QKᵀ on KIVI
// keys; and the errors, the accessors' included.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/schemes.hpp"
#include "lowbit/arch/dispatch.hpp"
#include "lowbit/attention/decode.hpp"
#include "lowbit/attention/prefill.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit::attention;

// The cache's keys (cache.key) and values of sequence b, KV head h in double: length x d each.
struct head_kv {
  std::vector<double> keys, values;
};
template <class Element>
head_kv dequantized(const kv_cache<Element>& cache, std::size_t b, std::size_t h) {
  const std::size_t d = cache.shape().head_dim, n = cache.length(b);
  head_kv kv{std::vector<double>(n * d), std::vector<double>(n * d)};
  for (std::size_t t = 0; t < n; ++t)
    for (std::size_t e = 0; e < d; ++e) {
      kv.keys[t * d + e] = cache.key(b, h, t, e);
      kv.values[t * d + e] = cache.values().element(cache.row(b, h, t), e);
    }
  return kv;
}

// softmax(q K^T / sqrt(d)) V in double for a query row that sees keys [0, visible): decode
// (visible = length) or one causal prefill row.
void attend(const float* q, const head_kv& kv, std::size_t d, std::size_t visible, double* out) {
  std::vector<double> p(visible);
  double max = -INFINITY, sum = 0.0;
  for (std::size_t t = 0; t < visible; ++t) {
    double dot = 0.0;
    for (std::size_t e = 0; e < d; ++e) dot += double(q[e]) * kv.keys[t * d + e];
    p[t] = dot / std::sqrt(double(d));
    max = std::max(max, p[t]);
  }
  for (double& v : p) sum += v = std::exp(v - max);
  std::fill(out, out + d, 0.0);
  for (std::size_t t = 0; t < visible; ++t)
    for (std::size_t e = 0; e < d; ++e) out[e] += p[t] / sum * kv.values[t * d + e];
}

// int8_qk: no outlier channel (prefill's int8 QKᵀ is documented for scores of standard deviation
// ~1; a 30x channel would scale its per-token steps with it), and prefill runs int8_qk too.
template <class Element>
void check_kivi(std::size_t key_tokens, bool paged, bool int8_qk = false) {
  const std::size_t d = 64, kv_heads = 2, q_heads = 4, group = q_heads / kv_heads;
  const std::vector<std::size_t> lengths = {1, 40, 97};
  const kv_shape shape = paged ? kv_shape{3, kv_heads, d, 0, 64, 8} : kv_shape{3, kv_heads, d, 128};
  kv_cache<Element> cache(shape, 32, key_tokens);
  const uint32_t tables[3][2] = {{5, 0}, {2, 0}, {7, 1}};
  uint32_t seed = 3100 + uint32_t(key_tokens);
  std::vector<std::vector<float>> keys(3);
  for (std::size_t b = 0; b < 3; ++b) {
    if (paged) cache.map_pages(b, tables[b], 2);
    const std::size_t stride = kv_heads * d, n = lengths[b];
    keys[b] = random_matrix(n, stride, ++seed);
    for (std::size_t t = 0; t < n && !int8_qk; ++t) keys[b][t * stride + 3] *= 30.0f;  // an outlier channel, as KIVI observed
    const std::vector<float> v = random_matrix(n, stride, ++seed);
    const std::size_t first = n / 2;  // a piece (prefill), then decode steps one token at a time
    cache.append(b, keys[b].data(), v.data(), first);
    for (std::size_t t = first; t < n; ++t) cache.append(b, keys[b].data() + t * stride, v.data() + t * stride, 1);
  }
  // What the cache holds: residual tokens exactly; quantized ones within one step of their own
  // channel (half a step of rounding; the value opposite a negative extreme may clip by up to one
  // step, as ggml's q4_0 range does; zero points round by half a step) plus the stored scale's
  // rounding times the codes. A step of the channel's own range over the block, never the
  // outlier channel's: per-token scales would miss this bound by ~30x.
  using traits = lowbit::format_traits<typename Element::format>;
  const float largest = traits::max_finite;
  using S = typename Element::scale_type;  // a stored scale's relative rounding, times the codes
  const float scale_rounding = std::is_same<S, float>::value ? 0.0f : std::is_same<S, lowbit::fp16>::value ? 0x1p-11f : 0x1p-8f;
  for (std::size_t b = 0; b < 3; ++b)
    for (std::size_t h = 0; h < kv_heads; ++h) {
      const std::size_t n = lengths[b], full = n / key_tokens * key_tokens;
      for (std::size_t t = 0; t < n; ++t)
        for (std::size_t e = 0; e < d; ++e) {
          const float x = keys[b][(t * kv_heads + h) * d + e];
          if (t >= full) {
            ASSERT_EQ(cache.key(b, h, t, e), x) << "residual token " << t;
            continue;
          }
          float absmax = 0.0f, lo = 0.0f, hi = 0.0f;
          const std::size_t t0 = t / key_tokens * key_tokens;
          for (std::size_t u = t0; u < t0 + key_tokens; ++u) {
            const float y = keys[b][(u * kv_heads + h) * d + e];
            absmax = std::max(absmax, std::fabs(y));
            lo = std::min(lo, y);
            hi = std::max(hi, y);
          }
          // symmetric: step absmax / largest; min-max with zero points: (hi - lo) / (2^bits - 1).
          // FP8 codes round relative to the value: half an ulp, |x| 2^-(mantissa + 1), or half
          // the subnormal spacing 2^(emin - mantissa) of the scaled value near zero.
          float step = Element::has_zero ? (hi - lo) / largest : absmax / largest;
          if constexpr (traits::kind == lowbit::format_kind::floating)
            step = std::fabs(x) * std::ldexp(1.0f, -(traits::mantissa_bits + 1)) +
                   absmax / largest * std::ldexp(1.0f, traits::emin - traits::mantissa_bits - 1);
          ASSERT_NEAR(cache.key(b, h, t, e), x, step * 1.01f + scale_rounding * (absmax + hi - lo) + 1e-6f) << "b=" << b << " t=" << t << " e=" << e;
        }
    }
  std::vector<head_kv> kv;  // [b * kv_heads + h]
  for (std::size_t b = 0; b < 3; ++b)
    for (std::size_t h = 0; h < kv_heads; ++h) kv.push_back(dequantized(cache, b, h));
  const std::vector<float> q = random_matrix(3 * q_heads, d, ++seed);
  std::vector<double> ref(q.size());
  for (std::size_t b = 0; b < 3; ++b)
    for (std::size_t j = 0; j < q_heads; ++j)
      attend(q.data() + (b * q_heads + j) * d, kv[b * kv_heads + j / group], d, lengths[b], ref.data() + (b * q_heads + j) * d);
  // Prefill: the last 9 tokens of each sequence (its length if shorter), causal.
  const std::size_t new_tokens[3] = {1, 9, 9};
  std::size_t rows = 0;
  for (std::size_t n : new_tokens) rows += n;
  const std::vector<float> qp = random_matrix(rows * q_heads, d, ++seed);
  std::vector<double> ref_p(qp.size());
  for (std::size_t b = 0, r = 0; b < 3; ++b)
    for (std::size_t i = 0; i < new_tokens[b]; ++i, ++r)
      for (std::size_t j = 0; j < q_heads; ++j)
        attend(qp.data() + (r * q_heads + j) * d, kv[b * kv_heads + j / group], d, lengths[b] - new_tokens[b] + i + 1,
               ref_p.data() + (r * q_heads + j) * d);
  for (lowbit::isa path : supported_isas()) {
    for (std::size_t chunk : {std::size_t(0), std::size_t(24)}) {
      std::vector<float> out(q.size(), -1.0f);
      decode(q.data(), cache, out.data(), q_heads, decode_options{0.0f, chunk}, lowbit::serial_executor{}, path);
      for (std::size_t i = 0; i < out.size(); ++i)
        ASSERT_NEAR(out[i], ref[i], 2e-5) << "decode " << lowbit::isa_name(path) << " chunk=" << chunk << " output " << i;
    }
    std::vector<float> out(qp.size(), -1.0f);
    prefill(qp.data(), cache, new_tokens, out.data(), q_heads, prefill_mask::causal(), {}, lowbit::serial_executor{}, path);
    for (std::size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref_p[i], 2e-5) << "prefill " << lowbit::isa_name(path) << " " << i;
    if (!int8_qk) continue;
    // int8 QKᵀ (smoothed int8 keys made from the KIVI keys): prefill's int8_qk tolerance.
    prefill(qp.data(), cache, new_tokens, out.data(), q_heads, prefill_mask::causal(), prefill_options{0.0f, true},
            lowbit::serial_executor{}, path);
    double total = 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], ref_p[i], 5e-2) << "prefill int8_qk " << lowbit::isa_name(path) << " " << i;
      total += std::fabs(out[i] - ref_p[i]);
    }
    EXPECT_LT(total / double(out.size()), 5e-3) << "prefill int8_qk mean error " << lowbit::isa_name(path);
  }
}

TEST(kivi_keys, decode_and_prefill_match_the_reference_contiguous_and_paged) {
  check_kivi<lowbit::scheme<lowbit::int8, float>>(32, false);
  check_kivi<lowbit::scheme<lowbit::int4, lowbit::fp16>>(16, true);
  check_kivi<lowbit::scheme<lowbit::uint4, lowbit::fp16, true>>(32, false);  // zero points per channel
  check_kivi<lowbit::scheme<lowbit::int8, lowbit::bf16>>(64, true);
  check_kivi<lowbit::scheme<lowbit::fp8_e4m3, float>>(32, false);
  check_kivi<lowbit::scheme<lowbit::fp8_e5m2, lowbit::bf16>>(16, true);
  check_kivi<lowbit::scheme<lowbit::int8, float>>(32, false, true);  // with prefill's int8_qk
  check_kivi<lowbit::scheme<lowbit::int4, lowbit::fp16>>(16, true, true);
}

TEST(kivi_keys, bytes_and_errors) {
  using E = lowbit::scheme<lowbit::int4, lowbit::fp16>;
  // d = 128, blocks of 32: keys 64 code bytes + 128 fp16 scales / 32 tokens = 72; values int4 / 32: 72.
  EXPECT_EQ((kv_cache<E>(kv_shape{1, 1, 128, 64}, 32, 32).bytes_per_token_head()), 144u);
  EXPECT_THROW((kv_cache<E>(kv_shape{1, 1, 64, 64}, 32, 24)), lowbit::error);      // not a multiple of 16
  EXPECT_THROW((kv_cache<E>(kv_shape{1, 1, 64, 80}, 32, 32)), lowbit::error);      // does not divide the capacity
  EXPECT_THROW((kv_cache<E>(kv_shape{1, 1, 64, 0, 48, 4}, 32, 32)), lowbit::error);  // nor page_tokens
  EXPECT_THROW((kv_cache<float>(kv_shape{1, 1, 64, 64}, 0, 32)), lowbit::error);  // fp32 keys have no scales
  kv_cache<lowbit::scheme<lowbit::int8, float>> cache(kv_shape{1, 1, 64, 64}, 0, 16);
  const std::vector<float> k = random_matrix(20, 64, 1), q = random_matrix(1, 64, 2);
  cache.append(0, k.data(), k.data(), 20);
  std::vector<float> out(64);
  EXPECT_THROW(decode(q.data(), cache, out.data(), 1, decode_options{0.0f, 0, true}), lowbit::error);  // int8_query
  EXPECT_THROW(decode(q.data(), cache, out.data(), 1, decode_options{0.0f, 0, true, true}), lowbit::error);
  EXPECT_NO_THROW(decode(q.data(), cache, out.data(), 1));
  // The residual holds tokens 16..19 (one complete block of 16); the accessors check their numbers.
  EXPECT_EQ(cache.key_residual(0, 0, 17)[5], k[64 * 17 + 5]);
  EXPECT_EQ(cache.key(0, 0, 19, 63), k[64 * 19 + 63]);
  EXPECT_NO_THROW(cache.key(0, 0, 15, 0));
  EXPECT_THROW(cache.key_residual(0, 0, 15), lowbit::error);  // in the complete block
  EXPECT_THROW(cache.key_residual(0, 0, 20), lowbit::error);  // past the length
  EXPECT_THROW(cache.key_residual(0, 1, 16), lowbit::error);  // head 1 of 1
  EXPECT_THROW(cache.key_residual(1, 0, 16), lowbit::error);  // sequence 1 of 1
  EXPECT_THROW(cache.key(0, 0, 20, 0), lowbit::error);
  EXPECT_THROW(cache.key(0, 0, 15, 64), lowbit::error);
  EXPECT_THROW(cache.key(0, 1, 0, 0), lowbit::error);
  EXPECT_THROW(cache.key_blocks().element(4 * 64, 0), lowbit::error);  // 4 blocks of 64 channels
  EXPECT_THROW(cache.key_blocks().element(0, 16), lowbit::error);
  cache.clear(0);  // the residual restarts with the sequence
  cache.append(0, k.data() + 64 * 3, k.data(), 1);
  EXPECT_EQ(cache.key(0, 0, 0, 5), k[64 * 3 + 5]);
  EXPECT_THROW(cache.key(0, 0, 1, 0), lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
