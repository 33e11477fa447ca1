// Round-to-nearest quantizers: each code is the nearest one the format has (checked by brute force
// over all codes), scales and zero points follow the documented rules, bad input raises.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "common/schemes.hpp"
#include "lowbit/kernels/reference/dequantize.hpp"
#include "lowbit/quant/quantize.hpp"

namespace lowbit_test {
namespace {

// Distance from x to the nearest value any code of F decodes to, found by trying every code.
template <class F>
float nearest_distance(float x) {
  float best = std::numeric_limits<float>::infinity();
  for (unsigned c = 0; c < (1u << format_traits<F>::bits); ++c) {
    const float v = format_traits<F>::decode(static_cast<uint8_t>(c));
    if (!std::isnan(v)) best = std::min(best, std::fabs(v - x));
  }
  return best;
}

template <class S>
quantized_matrix<S> quantize_any(const float* w, std::size_t rows, std::size_t cols, std::size_t group) {
  return quantize<S>(w, rows, cols, cols, quant_options{group});
}

template <class S>
class Quantizers : public ::testing::Test {};
TYPED_TEST_SUITE(Quantizers, all_schemes);

// Every element's code is a nearest code to w / scale (+ zero), clamped values aside.
TYPED_TEST(Quantizers, EachCodeIsANearestCode) {
  using S = TypeParam;
  using F = typename S::format;
  using traits = format_traits<F>;
  const std::size_t rows = 7, cols = 75, group = 32;  // a tail group of 11
  const uint32_t seed = 1234;
  const auto w = random_matrix(rows, cols, seed, 3.0f);
  const auto q = quantize_any<S>(w.data(), rows, cols, group);
  ASSERT_EQ(q.groups_per_row(), 3u);
  const auto v = q.view();
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t k = 0; k < cols; ++k) {
      const std::size_t g = k / group;
      const float scale = scale_traits<typename S::scale_type>::to_float(q.scale(r, g));
      ASSERT_TRUE(std::isfinite(scale) && scale > 0) << "seed " << seed;
      const float zero = S::has_zero ? traits::decode(v.row_zeros(r)[g]) : 0.0f;
      const float target = w[r * cols + k] / scale + zero;
      const float got = traits::decode(q.code(r, k));
      const float clamped = std::min(std::max(target, traits::min_value), traits::max_finite);
      // A value outside the range saturates; inside, no code may be nearer than the chosen one.
      EXPECT_LE(std::fabs(got - clamped), nearest_distance<F>(clamped) * (1 + 1e-6f) + 1e-30f)
          << "seed " << seed << " r=" << r << " k=" << k << " target " << target << " got " << got;
    }
  }
}

TYPED_TEST(Quantizers, ReconstructsTheLargestElementClosely) {
  using S = TypeParam;
  const std::size_t rows = 4, cols = 64;
  const auto w = random_matrix(rows, cols, 99);
  const auto q = quantize_any<S>(w.data(), rows, cols, 32);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t g = 0; g < 2; ++g) {
      std::size_t arg = g * 32;
      for (std::size_t k = g * 32; k < g * 32 + 32; ++k)
        if (std::fabs(w[r * cols + k]) > std::fabs(w[r * cols + arg])) arg = k;
      const float back = reference::dequantize_element(q.view(), r, arg);
      // The extreme of a group is within 1/4 of its magnitude for every format (4-bit codebooks are the coarsest).
      EXPECT_NEAR(back, w[r * cols + arg], 0.25f * std::fabs(w[r * cols + arg])) << "r=" << r << " g=" << g;
    }
  }
}

TEST(Rtn, AsymmetricRepresentsZeroExactlyAndCoversTheRange) {
  const std::size_t cols = 40;
  std::vector<float> w(cols);
  for (std::size_t k = 0; k < cols; ++k) w[k] = 0.5f + 0.1f * static_cast<float>(k);  // all positive
  w[7] = 0.0f;
  const auto q = quantize_rtn<scheme<uint4, float, true>>(w.data(), 1, cols, cols);
  EXPECT_EQ(reference::dequantize_element(q.view(), 0, 7), 0.0f);
  const float scale = q.scale(0, 0);
  EXPECT_FLOAT_EQ(scale, (w[cols - 1] - 0.0f) / 15.0f);
  EXPECT_EQ(q.zero(0, 0), 0);  // the range starts at 0, so the zero point is code 0
  EXPECT_NEAR(reference::dequantize_element(q.view(), 0, cols - 1), w[cols - 1], scale / 2);
}

TEST(Rtn, SymmetricNegativeExtremeUsesTheWholeNegativeRange) {
  std::vector<float> w = {-4.0f, 1.0f, 2.0f, 3.0f, 3.5f, 0.0f, -1.0f, 0.25f};
  const auto q = quantize_rtn<scheme<int4>>(w.data(), 1, 8, 8);
  EXPECT_FLOAT_EQ(q.scale(0, 0), 0.5f);  // -4 maps to -8
  EXPECT_EQ(format_traits<int4>::decode(q.code(0, 0)), -8.0f);
  EXPECT_EQ(format_traits<int4>::decode(q.code(0, 4)), 7.0f);  // 3.5 / 0.5 = 7
}

TEST(Rtn, PerTensorSharesOneScale) {
  const auto w = random_matrix(5, 64, 3);
  quant_options options;
  options.group_size = 16;
  options.per_tensor = true;
  const auto q = quantize_rtn<scheme<int8>>(w.data(), 5, 64, 64, options);
  for (std::size_t i = 1; i < q.shape().group_count(); ++i) EXPECT_EQ(q.scales()[i], q.scales()[0]);
  float extreme = 0;
  for (float v : w)
    if (std::fabs(v) > std::fabs(extreme)) extreme = v;
  // The extreme lands on -128 when negative, on 127 when positive.
  const float expected = extreme < 0 ? -extreme / 128.0f : extreme / 127.0f;
  EXPECT_EQ(q.scales()[0], expected);
}

TEST(Rtn, AllZeroGroupGivesZeroCodes) {
  std::vector<float> w(64, 0.0f);
  const auto q = quantize_rtn<scheme<fp8_e4m3, fp16>>(w.data(), 2, 32, 32);
  for (std::size_t r = 0; r < 2; ++r)
    for (std::size_t k = 0; k < 32; ++k) EXPECT_EQ(reference::dequantize_element(q.view(), r, k), 0.0f);
}

TEST(Rtn, BadInputRaises) {
  std::vector<float> w(64, 1.0f);
  EXPECT_THROW(quantize_rtn<scheme<int4>>(nullptr, 2, 32, 32), lowbit::error);
  EXPECT_THROW(quantize_rtn<scheme<int4>>(w.data(), 2, 32, 16), lowbit::error);  // ld < cols
  EXPECT_THROW(quantize_rtn<scheme<int4>>(w.data(), 2, 32, 32, quant_options{64}), lowbit::error);  // group > cols
  w[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_rtn<scheme<int4>>(w.data(), 2, 32, 32), lowbit::error);
  w[5] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(quantize_mx<mx::fp4>(w.data(), 2, 32, 32), lowbit::error);
  w[5] = 3e38f;  // the fp16 scale overflows
  EXPECT_THROW((quantize_rtn<scheme<int4, fp16>>(w.data(), 2, 32, 32)), lowbit::error);
}

}  // namespace
}  // namespace lowbit_test
