// Inputs on which the integer GEMM path (compute::int8) must be bit-exact: activations whose rows
// int8_activations quantizes without rounding to a power-of-two scale, and weights whose scales
// are powers of two. Every term is then a multiple of one power of two, so the float epilogue
// (int32 dot -> float, times the scales, summed over groups, plus a bias of halves) is exact as
// long as the sum of the terms' magnitudes stays under 2^24 of those units; expect_exact checks
// that premise before it asks for equality with the float64 reference.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "lowbit/kernels/reference/gemm.hpp"
#include "lowbit/layout/quantized_matrix.hpp"

namespace lowbit_test {

// Row i: integers in [-127, 127] (about N(0, 20), one of them +-127) times 2^(i % 3 - 1), so its
// absmax is 127 * 2^e: int8_activations gives scale 2^e exactly and q = the integers. Divided by
// `channel` (power-of-two channel scales) the rows are x / c; times it, x itself.
inline std::vector<float> exact_int8_rows(std::size_t m, std::size_t k, uint32_t seed, const float* channel = nullptr) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 20.0f);
  std::vector<float> x(m * k);
  for (std::size_t i = 0; i < m; ++i) {
    const float unit = std::ldexp(1.0f, static_cast<int>(i % 3) - 1);
    for (std::size_t j = 0; j < k; ++j) x[i * k + j] = std::max(-127.0f, std::min(127.0f, std::nearbyint(normal(rng))));
    x[i * k + (i * 7 + 3) % k] = (i % 2) ? -127.0f : 127.0f;
    for (std::size_t j = 0; j < k; ++j) x[i * k + j] *= unit * (channel ? channel[j] : 1.0f);
  }
  return x;
}

// Power-of-two channel scales 2^-1, 1, 2, 4 (x / c stays exact).
inline std::vector<float> power_of_two_channel_scales(std::size_t k) {
  std::vector<float> c(k);
  for (std::size_t j = 0; j < k; ++j) c[j] = std::ldexp(1.0f, static_cast<int>((j * 5) % 4) - 1);
  return c;
}

// Biases of halves in [-4, 4]: multiples of every unit the terms have here.
inline std::vector<float> exact_bias(std::size_t n) {
  std::vector<float> b(n);
  for (std::size_t j = 0; j < n; ++j) b[j] = 0.5f * static_cast<float>(static_cast<int>((j * 7) % 17) - 8);
  return b;
}

// Scale of (row r, group g): 2^-((r + 2g) % 3), so neighbouring groups and rows differ.
inline float power_of_two_scale(std::size_t r, std::size_t g) {
  return std::ldexp(1.0f, -static_cast<int>((r + 2 * g) % 3));
}

template <class Scheme>
void set_power_of_two_scales(lowbit::quantized_matrix<Scheme>& q) {
  for (std::size_t r = 0; r < q.rows(); ++r)
    for (std::size_t g = 0; g < q.groups_per_row(); ++g)
      q.scale(r, g) = lowbit::scale_traits<typename Scheme::scale_type>::from_float(power_of_two_scale(r, g));
}

// y must equal the float64 reference exactly. unit: the weight format's integer unit
// (integer_codes<Format>::value.unit); activation_scale(i): row i's int8 scale. The smallest term
// unit of row i is unit * 2^-2 (the smallest weight scale) * activation_scale(i).
template <class ActivationScale>
void expect_exact(const std::vector<float>& y, const lowbit::reference::gemm_result& ref, std::size_t n, float unit,
                  ActivationScale&& activation_scale, const std::string& what) {
  ASSERT_EQ(y.size(), ref.y.size());
  for (std::size_t o = 0; o < y.size(); ++o) {
    const double quantum = double(unit) * 0.25 * double(activation_scale(o / n));
    ASSERT_LT(ref.magnitude[o] / quantum, 16777216.0) << what << ": output " << o << " is too large to be exact in fp32";
    ASSERT_EQ(static_cast<double>(y[o]), ref.y[o]) << what << ": output " << o << " (row " << o / n << ", column "
                                                    << o % n << ")";
  }
}

}  // namespace lowbit_test
