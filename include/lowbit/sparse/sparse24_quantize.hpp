/// \file
/// \brief From dense to 2:4 and back: the pattern of a matrix that already is 2:4, quantization of
/// the kept values of a pattern (prune first, then quantize: the S→Q order), and the dense matrix
/// a sparse24_matrix stands for.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../kernels/reference/dequantize.hpp"
#include "../quant/quantize.hpp"
#include "sparse24_matrix.hpp"
#include "sparse24_plain.hpp"

namespace lowbit {

namespace detail {
/// The 2:4 positions of the columns marked(r, k) names, a group of 4 that marks fewer than 2
/// taking its lowest unmarked columns too. too_many(r, g, count) raises the caller's lowbit::error
/// for a group that marks more than 2.
template <class Marked, class TooMany>
sparse24_positions positions_of_marked(std::size_t rows, std::size_t cols, Marked marked, TooMany too_many) {
  sparse24_positions out(rows, cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < out.groups(); ++g) {
      unsigned kept[4], count = 0, rest[4], rest_count = 0;
      for (unsigned i = 0; i < 4; ++i) {
        const std::size_t k = 4 * g + i;
        if (k < cols && marked(r, k)) {
          kept[count++] = i;
        } else {
          rest[rest_count++] = i;
        }
      }
      if (count > 2) too_many(r, g, count);
      for (unsigned i = 0; count < 2; ++i) kept[count++] = rest[i];
      if (kept[0] > kept[1]) std::swap(kept[0], kept[1]);
      out.set(r, g, kept[0], kept[1]);
    }
  return out;
}
}  // namespace detail

/// The positions of the non-zeros of a matrix that is already 2:4 (at most 2 non-zeros in every
/// group of 4 columns; groups with fewer keep the lowest zero positions too). A group with more
/// than 2 non-zeros is a lowbit::error: prune it first (prune/prune24.hpp).
inline sparse24_positions find_sparse24_positions(const float* w, std::size_t rows, std::size_t cols, std::size_t ld) {
  detail::check_float_matrix("find_sparse24_positions", w, rows, cols, ld);
  return detail::positions_of_marked(
      rows, cols, [&](std::size_t r, std::size_t k) { return w[r * ld + k] != 0.0f; },
      [](std::size_t r, std::size_t g, unsigned count) {
        LOWBIT_CHECK(false, "find_sparse24_positions: row " << r << ", columns " << 4 * g << ".." << 4 * g + 3
                                                            << " hold " << count << " non-zeros (2:4 allows 2)");
      });
}

/// Quantizes the values that `positions` keeps (rows x 2 * ceil(cols / 4), gathered in order) with
/// the scheme's standard quantizer, quantize<Scheme>; options.group_size counts kept values.
/// Scheme float or bf16: the kept values as they are (bf16: rounded to nearest even); options unused.
template <class Scheme>
sparse24_matrix<Scheme> quantize_sparse24(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                          const sparse24_positions& positions, const quant_options& options = {}) {
  detail::check_float_matrix("quantize_sparse24", w, rows, cols, ld);
  LOWBIT_CHECK(positions.rows == rows && positions.cols == cols,
               "quantize_sparse24: positions are for " << positions.rows << " x " << positions.cols
                                                       << ", the weights are " << rows << " x " << cols);
  LOWBIT_CHECK(positions.nibbles.size() == rows * positions.bytes_per_row(),
               "quantize_sparse24: positions hold " << positions.nibbles.size() << " bytes, expected "
                                                    << rows * positions.bytes_per_row());
  detail::check_sparse24_nibbles(positions.nibbles.data(), rows, cols);
  const std::size_t kept_cols = 2 * positions.groups();
  std::vector<float> kept(rows * kept_cols, 0.0f);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < positions.groups(); ++g) {
      const unsigned nibble = positions.get(r, g);
      const std::size_t a = 4 * g + (nibble & 3u), b = 4 * g + (nibble >> 2);
      kept[r * kept_cols + 2 * g] = a < cols ? w[r * ld + a] : 0.0f;
      kept[r * kept_cols + 2 * g + 1] = b < cols ? w[r * ld + b] : 0.0f;
    }
  if constexpr (is_plain_value<Scheme>::value) {
    const std::vector<Scheme> values(kept.begin(), kept.end());
    return sparse24_matrix<Scheme>(values.data(), rows, kept_cols, positions.nibbles.data(), cols);
  } else {
    const quantized_matrix<Scheme> q = quantize<Scheme>(kept.data(), rows, kept_cols, kept_cols, options);
    return sparse24_matrix<Scheme>(q.view(), positions.nibbles.data(), cols);
  }
}

namespace detail {
/// The dense row-major form of a structured-sparse matrix (2:4, N:M): kept value j of row r (as
/// plain_to_float or reference::dequantize_element gives it) at column column_of(r, j), zeros
/// elsewhere; kept values past the matrix's columns (the last group's padding) are dropped.
template <class Matrix, class ColumnOf>
std::vector<float> kept_to_dense(const Matrix& w, ColumnOf column_of) {
  std::vector<float> out(w.rows() * w.cols(), 0.0f);
  const auto fill = [&](auto&& value_of) {
    for (std::size_t r = 0; r < w.rows(); ++r)
      for (std::size_t j = 0; j < w.kept_cols(); ++j) {
        const std::size_t k = column_of(r, j);
        if (k < w.cols()) out[r * w.cols() + k] = value_of(r, j);
      }
  };
  if constexpr (is_plain_value<typename Matrix::scheme_type>::value) {
    fill([&](std::size_t r, std::size_t j) { return plain_to_float(w.value(r, j)); });
  } else {
    const auto kept = w.kept_values();
    fill([&](std::size_t r, std::size_t j) { return reference::dequantize_element(kept.view(), r, j); });
  }
  return out;
}
}  // namespace detail

/// The dense rows x cols matrix (row-major) that w stands for: each kept value dequantized exactly
/// as reference::dequantize_element gives it, zeros elsewhere.
template <class Scheme>
std::vector<float> sparse24_to_dense(const sparse24_matrix<Scheme>& w) {
  return detail::kept_to_dense(w, [&](std::size_t r, std::size_t j) { return j / 2 * 4 + w.position(r, j); });
}

}  // namespace lowbit
