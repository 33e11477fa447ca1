// MX quantization against a direct transcription of the OCP MX v1.0 algorithm written differently
// (double-precision log2, brute-force nearest code with ties to the even code).
#include <gtest/gtest.h>

#include <cmath>

#include "common/schemes.hpp"
#include "lowbit/kernels/reference/dequantize.hpp"
#include "lowbit/quant/mx.hpp"

namespace lowbit_test {
namespace {

// Nearest code to x by search; ties go to the code whose lowest bit is 0 (the even mantissa, or
// the even integer); beyond the largest magnitude, saturate.
template <class F>
uint8_t brute_force_encode(double x) {
  using traits = format_traits<F>;
  int best = -1;
  double best_distance = 0;
  for (unsigned c = 0; c < (1u << traits::bits); ++c) {
    const double v = traits::decode(static_cast<uint8_t>(c));
    if (std::isnan(v) || std::isinf(v) || v < traits::min_value || v > traits::max_finite) continue;  // never produced
    const double d = std::fabs(v - x);
    if (best < 0 || d < best_distance ||
        (d == best_distance && (c & 1) == 0 && traits::decode(static_cast<uint8_t>(best)) != v)) {
      best = static_cast<int>(c);
      best_distance = d;
    }
  }
  return static_cast<uint8_t>(best);
}

template <class S>
class MxQuantizer : public ::testing::Test {};
using mx_schemes = ::testing::Types<mx::fp4, mx::fp8_e4m3, mx::fp8_e5m2, mx::fp6_e3m2, mx::fp6_e2m3, mx::int8, mx::int4>;
TYPED_TEST_SUITE(MxQuantizer, mx_schemes);

TYPED_TEST(MxQuantizer, MatchesTheSpecAlgorithm) {
  using S = TypeParam;
  using F = typename S::format;
  for (uint32_t seed : {1u, 2u, 3u}) {
    const std::size_t rows = 3, cols = 70;  // blocks of 32, 32 and a tail of 6
    auto w = random_matrix(rows, cols, seed, seed == 3 ? 1e-3f : 10.0f);
    w[5] = 0.0f;
    const auto q = quantize_mx<S>(w.data(), rows, cols, cols);
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t b = 0; b < 3; ++b) {
        const std::size_t k0 = b * 32, k1 = std::min(cols, k0 + 32);
        double absmax = 0;
        for (std::size_t k = k0; k < k1; ++k) absmax = std::max(absmax, std::fabs(double(w[r * cols + k])));
        const int expected_x = static_cast<int>(std::floor(std::log2(absmax))) - format_traits<F>::emax;
        ASSERT_EQ(int(q.scale(r, b).storage) - 127, expected_x) << "seed " << seed << " row " << r << " block " << b;
        for (std::size_t k = k0; k < k1; ++k) {
          const double scaled = double(w[r * cols + k]) / std::ldexp(1.0, expected_x);
          const uint8_t expected = brute_force_encode<F>(scaled);
          ASSERT_EQ(format_traits<F>::decode(q.code(r, k)), format_traits<F>::decode(expected))
              << "seed " << seed << " r=" << r << " k=" << k << " scaled=" << scaled;
        }
      }
    }
  }
}

TEST(Mx, ZeroBlockAndExtremeExponents) {
  std::vector<float> w(64, 0.0f);
  w[40] = 3e38f;   // X = 127 - emax
  w[41] = -1e-3f;
  auto q = quantize_mx<mx::fp4>(w.data(), 1, 64, 64);
  EXPECT_EQ(q.scale(0, 0).storage, 0);  // all zeros: the smallest scale, 2^-127
  for (std::size_t k = 0; k < 32; ++k) EXPECT_EQ(reference::dequantize_element(q.view(), 0, k), 0.0f);
  EXPECT_EQ(int(q.scale(0, 1).storage) - 127, 127 - 2);
  EXPECT_EQ(reference::dequantize_element(q.view(), 0, 40), 3.0f * std::ldexp(1.0f, 126));  // 3e38 / 2^125 = 7.05 saturates to 6
  // Tiny values: X clamps at -127 and elements keep what they can.
  std::vector<float> tiny(32, std::ldexp(1.0f, -130));
  tiny[1] = std::ldexp(1.0f, -140);
  auto q8 = quantize_mx<mx::fp8_e4m3>(tiny.data(), 1, 32, 32);
  EXPECT_EQ(q8.scale(0, 0).storage, 0);
  EXPECT_EQ(reference::dequantize_element(q8.view(), 0, 0), std::ldexp(1.0f, -130));  // 2^-3 in E4M3, times 2^-127
  EXPECT_EQ(reference::dequantize_element(q8.view(), 0, 1), 0.0f);  // 2^-13 is below E4M3's 2^-9
}

TEST(Mx, BlockSizeIsAParameter) {
  const auto w = random_matrix(2, 16, 5);
  const auto q = quantize_mx<mx::int4>(w.data(), 2, 16, 16, 4);  // LQER-style small blocks
  EXPECT_EQ(q.groups_per_row(), 4u);
}

}  // namespace
}  // namespace lowbit_test
