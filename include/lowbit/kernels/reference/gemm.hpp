/// \file
/// \brief Scalar float64 references of the GEMM: what every kernel is tested against.
///
///  - reference::gemm: y = x · Wᵀ + bias with W's elements exactly as dequantize_element gives
///    them, products and sums in double.
///  - reference::gemm_int8: the integer path's definition: per group, the exact integer dot product
///    of the int8 activations with (u8(code) - u8(zero)), then times unit * scale * activation scale.
/// Both also return, per output, the sum of the magnitudes of its products (x_k w_k): tests scale
/// their tolerance by it (a float32 sum of those terms can be off by a few ulps of that magnitude).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../../core/views.hpp"
#include "../../layout/quantized_matrix.hpp"
#include "../../quant/activations.hpp"
#include "../integer_weights.hpp"
#include "dequantize.hpp"

namespace lowbit {
namespace reference {

struct gemm_result {
  std::vector<double> y;          ///< m x n, row-major
  std::vector<double> magnitude;  ///< m x n: sum of |term| over the terms of each output
};

/// y = x · Wᵀ + bias in double, W given row by row: row_of(j, out) writes row j's K floats.
template <class RowOf>
gemm_result gemm_by_rows(matrix_view<const float> x, std::size_t n, std::size_t k, RowOf&& row_of, const float* bias) {
  const std::size_t m = x.rows;
  std::vector<float> row(k);
  gemm_result r{std::vector<double>(m * n), std::vector<double>(m * n)};
  for (std::size_t j = 0; j < n; ++j) {
    row_of(j, row.data());
    for (std::size_t i = 0; i < m; ++i) {
      double sum = bias ? bias[j] : 0.0, magnitude = bias ? std::fabs(bias[j]) : 0.0;
      for (std::size_t c = 0; c < k; ++c) {
        const double t = static_cast<double>(x(i, c)) * static_cast<double>(row[c]);
        sum += t;
        magnitude += std::fabs(t);
      }
      r.y[i * n + j] = sum;
      r.magnitude[i * n + j] = magnitude;
    }
  }
  return r;
}

template <class Scheme>
gemm_result gemm(matrix_view<const float> x, const quantized_view<Scheme>& w, const float* bias = nullptr) {
  return gemm_by_rows(
      x, w.rows(), w.cols(), [&](std::size_t j, float* row) { dequantize_rows(w, j, j + 1, row, w.cols()); }, bias);
}

/// The same for a plain float W (N x K): e.g. the dense matrix of a 2:4 one (sparse24_to_dense).
inline gemm_result gemm(matrix_view<const float> x, matrix_view<const float> w, const float* bias = nullptr) {
  return gemm_by_rows(
      x, w.rows, w.cols, [&](std::size_t j, float* row) { std::copy(w.row(j), w.row(j) + w.cols, row); }, bias);
}

template <class Scheme>
gemm_result gemm_int8(const int8_activations& a, const quantized_view<Scheme>& w, const float* bias = nullptr) {
  using format = typename Scheme::format;
  static_assert(has_integer_path<format>, "the integer path needs an integer-valued format");
  constexpr detail::integer_code_map map = integer_codes<format>::value;
  const std::size_t m = a.rows(), n = w.rows(), k = w.cols(), g_size = w.group_size();
  gemm_result r{std::vector<double>(m * n), std::vector<double>(m * n)};
  for (std::size_t j = 0; j < n; ++j)
    for (std::size_t i = 0; i < m; ++i) {
      double sum = bias ? bias[j] : 0.0, magnitude = bias ? std::fabs(bias[j]) : 0.0;
      for (std::size_t g = 0; g < w.groups_per_row(); ++g) {
        const int zero = Scheme::has_zero ? map.u8[w.row_zeros(j)[g]] : map.offset;
        long long dot = 0, dot_magnitude = 0;
        for (std::size_t c = g * g_size; c < std::min(k, (g + 1) * g_size); ++c) {
          const long long product = static_cast<long long>(map.u8[w.code(j, c)] - zero) * a.row(i)[c];
          dot += product;
          dot_magnitude += product < 0 ? -product : product;
        }
        const double scale = static_cast<double>(scale_traits<typename Scheme::scale_type>::to_float(w.row_scales(j)[g])) *
                             map.unit * a.scale(i);
        sum += static_cast<double>(dot) * scale;
        magnitude += static_cast<double>(dot_magnitude) * std::fabs(scale);
      }
      r.y[i * n + j] = sum;
      r.magnitude[i * n + j] = magnitude;
    }
  return r;
}

}  // namespace reference
}  // namespace lowbit
