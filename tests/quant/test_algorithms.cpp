// The reference quantization algorithms on synthetic layers with a known answer, and against RTN
// on their own objective, the layer-output error ‖X Wᵀ − X Ŵᵀ‖² (Ŵ as the kernels see it):
// MSE clipping, GPTQ (with and without activation order), AWQ and SmoothQuant (through the int8
// GEMM's channel_scales). Each is also run on a thread pool: the bits must not change.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "lowbit/core/parallel.hpp"
#include "lowbit/kernels/gemm.hpp"
#include "lowbit/kernels/reference/dequantize.hpp"
#include "lowbit/layout/panel.hpp"
#include "lowbit/quant/awq.hpp"
#include "lowbit/quant/clip_search.hpp"
#include "lowbit/quant/gptq.hpp"
#include "lowbit/quant/quantize.hpp"
#include "lowbit/quant/smoothquant.hpp"
#include "lowbit/prune/prune24.hpp"
#include "lowbit/prune/sparsegpt.hpp"
#include "lowbit/sparse/sparse24_quantize.hpp"

namespace lowbit_test {
namespace {

using namespace lowbit;
using int4_g = scheme<int4, float>;
using uint4_z = scheme<uint4, float, true>;

struct layer {
  std::size_t n, k, samples;
  std::vector<float> w, x;  // n x k, samples x k
};

/// Correlated activations (a random mixing of independent features, a few channels much larger:
/// the structure GPTQ and AWQ exploit) and heavy-tailed weights.
layer make_layer(std::size_t n, std::size_t k, std::size_t samples, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::student_t_distribution<float> t(5.0f);
  layer l{n, k, samples, std::vector<float>(n * k), std::vector<float>(samples * k)};
  for (auto& v : l.w) v = 0.05f * t(rng);
  std::vector<float> mix(k * k);
  for (auto& v : mix) v = normal(rng) / std::sqrt(float(k));
  for (std::size_t s = 0; s < samples; ++s) {
    std::vector<float> z(k);
    for (auto& v : z) v = normal(rng);
    for (std::size_t j = 0; j < k; ++j) {
      float acc = z[j];
      for (std::size_t i = 0; i < k; ++i) acc += 0.8f * mix[j * k + i] * z[i];
      l.x[s * k + j] = acc * (j % 17 == 3 ? 12.0f : 1.0f);  // outlier channels
    }
  }
  return l;
}

/// ‖X Wᵀ − (X / s)[:, order] Ŵᵀ‖², Ŵ dequantized as the kernels see it.
template <class Scheme>
double output_error(const layer& l, const quantized_matrix<Scheme>& q, const std::vector<uint32_t>& order = {},
                    const std::vector<float>& s = {}) {
  double total = 0.0;
  for (std::size_t r = 0; r < l.n; ++r)
    for (std::size_t i = 0; i < l.samples; ++i) {
      double exact = 0.0, approx = 0.0;
      for (std::size_t j = 0; j < l.k; ++j) {
        exact += double(l.x[i * l.k + j]) * l.w[r * l.k + j];
        const std::size_t input = order.empty() ? j : order[j];
        const double xv = double(l.x[i * l.k + input]) / (s.empty() ? 1.0 : s[input]);
        approx += xv * reference::dequantize_element(q.view(), r, j);
      }
      total += (exact - approx) * (exact - approx);
    }
  return total;
}

TEST(RtnMse, NeverWorseThanRtnOnWeightError) {
  const layer l = make_layer(16, 128, 1, 1);
  quant_options o;
  o.group_size = 32;
  const auto weight_error = [&](const auto& q) {
    double e = 0;
    for (std::size_t r = 0; r < l.n; ++r)
      for (std::size_t k = 0; k < l.k; ++k) {
        const double d = l.w[r * l.k + k] - reference::dequantize_element(q.view(), r, k);
        e += d * d;
      }
    return e;
  };
  const double rtn = weight_error(quantize<int4_g>(l.w.data(), l.n, l.k, l.k, o));
  const double mse = weight_error(quantize_rtn_mse<int4_g>(l.w.data(), l.n, l.k, l.k, o));
  EXPECT_LT(mse, rtn * 0.95);  // heavy tails: clipping pays
  EXPECT_LE(weight_error(quantize_rtn_mse<uint4_z>(l.w.data(), l.n, l.k, l.k, o)),
            weight_error(quantize<uint4_z>(l.w.data(), l.n, l.k, l.k, o)));
  EXPECT_THROW(quantize_rtn_mse<int4_g>(l.w.data(), l.n, l.k, l.k, o, clip_grid{0, 0.5f}), lowbit::error);
}

TEST(Gptq, BeatsRtnOnCorrelatedActivations) {
  const layer l = make_layer(24, 128, 256, 2);
  quant_options o;
  o.group_size = 32;
  gptq_options g;
  g.group_size = 32;
  g.block_size = 48;  // not a multiple of the group: lazy blocks and groups cut each other
  const double rtn = output_error(l, quantize<int4_g>(l.w.data(), l.n, l.k, l.k, o));
  const permuted_matrix<int4_g> plain = quantize_gptq<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, g);
  EXPECT_TRUE(plain.input_order.empty());
  const double gptq = output_error(l, plain.weights);
  EXPECT_LT(gptq, 0.8 * rtn) << "gptq " << gptq << " rtn " << rtn;

  g.act_order = true;
  const permuted_matrix<int4_g> ordered = quantize_gptq<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, g);
  ASSERT_EQ(ordered.input_order.size(), l.k);
  std::vector<bool> seen(l.k, false);
  for (uint32_t i : ordered.input_order) seen.at(i) = true;
  for (bool b : seen) EXPECT_TRUE(b);  // a permutation
  const double act = output_error(l, ordered.weights, ordered.input_order);
  EXPECT_LT(act, 0.8 * rtn) << "act_order " << act << " rtn " << rtn;

  // Zero points and per-channel scales too; and the result runs through the GEMM as stored.
  gptq_options z;
  z.group_size = 0;
  const permuted_matrix<uint4_z> zq = quantize_gptq<uint4_z>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, z);
  quant_options per_channel;
  EXPECT_LT(output_error(l, zq.weights), output_error(l, quantize<uint4_z>(l.w.data(), l.n, l.k, l.k, per_channel)));
}

TEST(Gptq, KnownAnswers) {
  // Weights already on the quantization grid: GPTQ finds them exactly (no error to feed back).
  layer l = make_layer(8, 64, 128, 3);
  quant_options o;
  o.group_size = 32;
  const quantized_matrix<int4_g> grid = quantize<int4_g>(l.w.data(), l.n, l.k, l.k, o);
  for (std::size_t r = 0; r < l.n; ++r)
    for (std::size_t k = 0; k < l.k; ++k) l.w[r * l.k + k] = reference::dequantize_element(grid.view(), r, k);
  gptq_options g;
  g.group_size = 32;
  const permuted_matrix<int4_g> exact = quantize_gptq<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, g);
  for (std::size_t r = 0; r < l.n; ++r)
    for (std::size_t k = 0; k < l.k; ++k) EXPECT_EQ(exact.weights.code(r, k), grid.code(r, k)) << r << "," << k;

  // Uncorrelated activations of equal power (H ∝ I): no error is fed back, so GPTQ is RTN.
  layer white = make_layer(8, 64, 64, 4);
  std::fill(white.x.begin(), white.x.end(), 0.0f);
  for (std::size_t s = 0; s < white.samples; ++s) white.x[s * white.k + s] = 1.0f;  // X = I
  const permuted_matrix<int4_g> same = quantize_gptq<int4_g>(white.w.data(), white.n, white.k, white.k, white.x.data(), white.samples, g);
  const quantized_matrix<int4_g> rtn = quantize<int4_g>(white.w.data(), white.n, white.k, white.k, o);
  for (std::size_t r = 0; r < white.n; ++r)
    for (std::size_t k = 0; k < white.k; ++k) EXPECT_EQ(same.weights.code(r, k), rtn.code(r, k));

  EXPECT_THROW(quantize_gptq<int4_g>(l.w.data(), l.n, l.k, l.k, nullptr, 4, g), lowbit::error);
  g.block_size = 0;
  EXPECT_THROW(quantize_gptq<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, g), lowbit::error);
}

TEST(Awq, NeverWorseThanRtnAndBetterWithOutlierChannels) {
  const layer l = make_layer(16, 128, 128, 5);
  quant_options o;
  o.group_size = 32;
  awq_options a;
  a.group_size = 32;
  const double rtn = output_error(l, quantize<int4_g>(l.w.data(), l.n, l.k, l.k, o));
  a.clip = false;
  const awq_result<int4_g> scaled = quantize_awq<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, a);
  const double awq_scale = output_error(l, scaled.weights, {}, scaled.input_scales);
  EXPECT_LE(awq_scale, rtn);
  EXPECT_GT(scaled.alpha, 0.0f);  // outlier channels: scaling pays
  EXPECT_LT(awq_scale, 0.9 * rtn) << "awq " << awq_scale << " rtn " << rtn;
  a.clip = true;
  const awq_result<int4_g> clipped = quantize_awq<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, a);
  EXPECT_LE(output_error(l, clipped.weights, {}, clipped.input_scales), awq_scale * (1 + 1e-9));
  const awq_result<mx::fp4> mx_result = quantize_awq<mx::fp4>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, a);
  quant_options mx_options;
  mx_options.group_size = 32;
  EXPECT_LE(output_error(l, mx_result.weights, {}, mx_result.input_scales),
            output_error(l, quantize<mx::fp4>(l.w.data(), l.n, l.k, l.k, mx_options)));
}

TEST(SmoothQuant, MovesOutliersIntoWeightsForW8A8) {
  const layer l = make_layer(32, 128, 64, 6);
  const std::vector<float> absmax = activation_absmax(l.x.data(), l.samples, l.k);
  const std::vector<float> s = smoothquant_scales(absmax.data(), l.w.data(), l.n, l.k, l.k, 0.5f);
  const std::vector<float> smoothed = smooth_weights(l.w.data(), l.n, l.k, l.k, s);
  using int8_channel = scheme<int8, float>;
  const auto w8_error = [&](const std::vector<float>& w, const float* channel_scales) {
    quant_options o;
    const panel_matrix<int8_channel> p = pack_panels(quantize<int8_channel>(w.data(), l.n, l.k, l.k, o).view());
    std::vector<float> y(l.samples * l.n);
    gemm_options options;
    options.mode = compute::int8;
    options.channel_scales = channel_scales;
    gemm(matrix_view<const float>(l.x.data(), l.samples, l.k), p, matrix_view<float>(y.data(), l.samples, l.n), options);
    double e = 0;
    for (std::size_t i = 0; i < l.samples; ++i)
      for (std::size_t r = 0; r < l.n; ++r) {
        double exact = 0;
        for (std::size_t j = 0; j < l.k; ++j) exact += double(l.x[i * l.k + j]) * l.w[r * l.k + j];
        e += (exact - y[i * l.n + r]) * (exact - y[i * l.n + r]);
      }
    return e;
  };
  const double plain = w8_error(l.w, nullptr), smooth = w8_error(smoothed, s.data());
  EXPECT_LT(smooth, 0.7 * plain) << "smoothquant " << smooth << " plain " << plain;
  for (std::size_t k = 0; k < l.k; ++k)
    EXPECT_NEAR(s[k], std::sqrt(absmax[k]) / std::sqrt([&] { float m = 0; for (std::size_t r = 0; r < l.n; ++r) m = std::max(m, std::fabs(l.w[r * l.k + k])); return m; }()), 1e-4f * s[k]);
  EXPECT_THROW(smoothquant_scales(absmax.data(), l.w.data(), l.n, l.k, l.k, 1.5f), lowbit::error);
  EXPECT_THROW(smooth_weights(l.w.data(), l.n, l.k, l.k, std::vector<float>(3)), lowbit::error);
  // A zero, negative or non-finite scale is an error where scales are accepted: smooth_weights,
  // int8_activations::quantize (so every int8 GEMM's gemm_options::channel_scales).
  const quantized_matrix<int8_channel> q8 = quantize<int8_channel>(smoothed.data(), l.n, l.k, l.k, quant_options{});
  const panel_matrix<int8_channel> p8 = pack_panels(q8.view());
  std::vector<float> y(l.samples * l.n);
  for (const float bad : {0.0f, -0.5f, NAN, INFINITY}) {
    std::vector<float> b = s;
    b[l.k / 2] = bad;
    EXPECT_THROW(smooth_weights(l.w.data(), l.n, l.k, l.k, b), lowbit::error) << bad;
    int8_activations a;
    EXPECT_THROW(a.quantize(matrix_view<const float>(l.x.data(), l.samples, l.k), l.k, b.data()), lowbit::error) << bad;
    gemm_options options;
    options.mode = compute::int8;
    options.channel_scales = b.data();
    EXPECT_THROW(gemm(matrix_view<const float>(l.x.data(), l.samples, l.k), p8, matrix_view<float>(y.data(), l.samples, l.n),
                      options),
                 lowbit::error)
        << bad;
  }
}

/// ‖X Wᵀ − X Ŵᵀ‖² for a dense float Ŵ (n x k).
double dense_output_error(const layer& l, const std::vector<float>& w_hat) {
  double total = 0.0;
  for (std::size_t r = 0; r < l.n; ++r)
    for (std::size_t i = 0; i < l.samples; ++i) {
      double d = 0.0;
      for (std::size_t j = 0; j < l.k; ++j) d += double(l.x[i * l.k + j]) * (double(l.w[r * l.k + j]) - w_hat[r * l.k + j]);
      total += d * d;
    }
  return total;
}

TEST(SparseGpt, BeatsWandaThenRtn) {
  const layer l = make_layer(16, 128, 256, 7);
  quant_options o;
  o.group_size = 32;
  const std::vector<float> norms = activation_norms(matrix_view<const float>(l.x.data(), l.samples, l.k));
  const double wanda = dense_output_error(l, sparse24_to_dense(prune_and_quantize24<int4_g>(l.w.data(), l.n, l.k, l.k, norms.data(), o)));
  sparsegpt_options s;
  s.group_size = 32;
  s.block_size = 64;
  const sparse24_matrix<int4_g> joint = prune_sparsegpt24<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, s);
  const std::vector<float> dense = sparse24_to_dense(joint);
  for (std::size_t r = 0; r < l.n; ++r)
    for (std::size_t q = 0; q < l.k; q += 4) {
      int nonzero = 0;
      for (std::size_t i = 0; i < 4; ++i) nonzero += dense[r * l.k + q + i] != 0.0f;
      EXPECT_LE(nonzero, 2);  // 2:4 by construction (the matrix type validated it too)
    }
  const double sparsegpt = dense_output_error(l, dense);
  EXPECT_LT(sparsegpt, 0.8 * wanda) << "sparsegpt " << sparsegpt << " wanda+rtn " << wanda;
  s.group_size = 0;
  const double per_row = dense_output_error(l, sparse24_to_dense(prune_sparsegpt24<uint4_z>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, s)));
  EXPECT_LT(per_row, wanda) << "sparsegpt per row " << per_row << " wanda+rtn " << wanda;
  EXPECT_THROW(prune_sparsegpt24<int4_g>(l.w.data(), l.n, 126, l.k, l.x.data(), l.samples, s), lowbit::error);
  s.block_size = 6;
  EXPECT_THROW(prune_sparsegpt24<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, s), lowbit::error);
}

/// Codes, scales and zero points identical, bit for bit.
template <class Scheme>
void expect_same_bits(const quantized_matrix<Scheme>& a, const quantized_matrix<Scheme>& b) {
  const quantized_view<Scheme> va = a.view(), vb = b.view();
  ASSERT_EQ(va.rows(), vb.rows());
  ASSERT_EQ(va.cols(), vb.cols());
  ASSERT_EQ(va.group_size(), vb.group_size());
  EXPECT_EQ(std::memcmp(va.codes, vb.codes, va.rows() * va.row_bytes()), 0);
  EXPECT_EQ(std::memcmp(va.scales, vb.scales, va.shape.group_count() * sizeof(typename Scheme::scale_type)), 0);
  if (Scheme::has_zero) {
    EXPECT_EQ(std::memcmp(va.zeros, vb.zeros, va.shape.group_count()), 0);
  }
}

TEST(Threads, SameBitsOnOneAndTwoThreads) {
  // K = 160: large enough for the Cholesky factorizations to split their columns over the pool;
  // an odd row count so the threads' row ranges differ in size; groups of 96 and 48 end in a
  // shorter tail group.
  const layer l = make_layer(9, 160, 32, 8);
  thread_pool two(2);
  gptq_options g;
  g.group_size = 96;
  g.block_size = 64;
  g.act_order = true;
  const permuted_matrix<int4_g> one = quantize_gptq<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, g);
  const permuted_matrix<int4_g> both = quantize_gptq<int4_g>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, g, two);
  expect_same_bits(one.weights, both.weights);
  EXPECT_EQ(one.input_order, both.input_order);
  g.act_order = false;  // MX: shared power-of-two scales chosen on the fly
  g.group_size = 32;
  expect_same_bits(quantize_gptq<mx::int4>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, g).weights,
                   quantize_gptq<mx::int4>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, g, two).weights);

  sparsegpt_options s;
  s.group_size = 48;
  const sparse24_matrix<uint4_z> sparse_one = prune_sparsegpt24<uint4_z>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, s);
  const sparse24_matrix<uint4_z> sparse_two = prune_sparsegpt24<uint4_z>(l.w.data(), l.n, l.k, l.k, l.x.data(), l.samples, s, two);
  EXPECT_EQ(sparse24_to_dense(sparse_one), sparse24_to_dense(sparse_two));

  awq_options a;
  a.group_size = 64;
  a.alpha_steps = 5;
  a.clip_ratios.steps = 4;
  const layer small = make_layer(9, 128, 32, 9);
  const awq_result<uint4_z> awq_one = quantize_awq<uint4_z>(small.w.data(), small.n, small.k, small.k, small.x.data(), small.samples, a);
  const awq_result<uint4_z> awq_two = quantize_awq<uint4_z>(small.w.data(), small.n, small.k, small.k, small.x.data(), small.samples, a, two);
  expect_same_bits(awq_one.weights, awq_two.weights);
  EXPECT_EQ(awq_one.input_scales, awq_two.input_scales);
  EXPECT_EQ(awq_one.alpha, awq_two.alpha);
}

}  // namespace
}  // namespace lowbit_test
