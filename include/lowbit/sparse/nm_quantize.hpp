/// \file
/// \brief From dense to N:M and back: the pattern of a matrix that already is N:M, the pattern of
/// a prune_nm mask, quantization of the kept values (prune first, then quantize: the S→Q order,
/// prune_and_quantize_nm in one call), and the dense matrix an nm_matrix stands for.
#pragma once

#include <cstddef>
#include <vector>

#include "../core/error.hpp"
#include "../kernels/reference/dequantize.hpp"
#include "../prune/prune_nm.hpp"
#include "../quant/quantize.hpp"
#include "nm_matrix.hpp"
#include "sparse24_quantize.hpp"

namespace lowbit {

namespace detail {
/// The N:M pattern of the columns marked(r, k) names; a group that marks fewer than n takes its
/// lowest unmarked slots too (past cols in the last group included), one that marks more calls
/// too_many(r, g, count), which raises the caller's lowbit::error.
template <class Marked, class TooMany>
nm_pattern nm_pattern_of_marked(std::size_t rows, std::size_t cols, std::size_t n, std::size_t m, Marked marked,
                                TooMany too_many) {
  nm_pattern out(rows, cols, n, m);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < out.groups(); ++g) {
      std::size_t count = 0;
      for (std::size_t k = g * m; k < (g + 1) * m; ++k)
        if (k < cols && marked(r, k)) {
          out.set(r, k, true);
          ++count;
        }
      if (count > n) too_many(r, g, count);
      for (std::size_t k = g * m; count < n; ++k)
        if (!out.kept(r, k)) {
          out.set(r, k, true);
          ++count;
        }
    }
  return out;
}
}  // namespace detail

/// The pattern of the non-zeros of a matrix that is already N:M (at most n non-zeros in every
/// group of m columns; groups with fewer keep their lowest zeros too). M in {4, 8, 16}, N a power
/// of two below M; a group with more than n non-zeros is a lowbit::error: prune it first (prune_nm).
inline nm_pattern find_nm_pattern(const float* w, std::size_t rows, std::size_t cols, std::size_t ld, std::size_t n,
                                  std::size_t m) {
  detail::check_nm_shape("find_nm_pattern", n, m);
  detail::check_float_matrix("find_nm_pattern", w, rows, cols, ld);
  return detail::nm_pattern_of_marked(
      rows, cols, n, m, [&](std::size_t r, std::size_t k) { return w[r * ld + k] != 0.0f; },
      [&](std::size_t r, std::size_t g, std::size_t count) {
        LOWBIT_CHECK(false, "find_nm_pattern: row " << r << ", columns " << g * m << ".." << (g + 1) * m - 1 << " hold "
                                                    << count << " non-zeros (" << n << ":" << m << " allows " << n << ")");
      });
}

/// The pattern of a prune_nm mask (prune/prune_nm.hpp): its n and m, the last group (L < m
/// columns, min(n, L) kept) filled with slots past cols.
inline nm_pattern nm_pattern_of(const nm_mask& mask) {
  detail::check_nm_mask("nm_pattern_of", mask);
  detail::check_nm_shape("nm_pattern_of", mask.n, mask.m);
  return detail::nm_pattern_of_marked(
      mask.rows, mask.cols, mask.n, mask.m, [&](std::size_t r, std::size_t k) { return mask.kept(r, k); },
      [&](std::size_t r, std::size_t g, std::size_t count) {
        LOWBIT_CHECK(false, "nm_pattern_of: row " << r << ", group " << g << " keeps " << count << " (the mask is "
                                                  << mask.n << ":" << mask.m << ")");
      });
}

/// Quantizes the values `pattern` keeps (rows x n ceil(cols / m), gathered in column order; slots
/// past cols are zeros) with quantize<Scheme>; options.group_size counts kept values. Scheme float
/// or bf16: the kept values as they are (bf16: rounded to nearest even); options unused.
template <class Scheme>
nm_matrix<Scheme> quantize_nm(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                              const nm_pattern& pattern, const quant_options& options = {}) {
  detail::check_float_matrix("quantize_nm", w, rows, cols, ld);
  detail::check_nm_shape("quantize_nm", pattern.n, pattern.m);
  LOWBIT_CHECK(pattern.rows == rows && pattern.cols == cols,
               "quantize_nm: the pattern is for " << pattern.rows << " x " << pattern.cols << ", the weights are " << rows
                                                  << " x " << cols);
  LOWBIT_CHECK(pattern.bits.size() == rows * pattern.bytes_per_row(),
               "quantize_nm: the pattern holds " << pattern.bits.size() << " bytes, expected "
                                                 << rows * pattern.bytes_per_row());
  detail::check_nm_bits("quantize_nm", pattern.bits.data(), rows, cols, pattern.n, pattern.m);
  const std::size_t kept_cols = pattern.kept_cols();
  std::vector<float> kept(rows * kept_cols, 0.0f);
  for (std::size_t r = 0; r < rows; ++r) {
    std::size_t j = 0;
    for (std::size_t k = 0; k < pattern.groups() * pattern.m; ++k)
      if (pattern.kept(r, k)) kept[r * kept_cols + j++] = k < cols ? w[r * ld + k] : 0.0f;
  }
  if constexpr (is_plain_value<Scheme>::value) {
    const std::vector<Scheme> values(kept.begin(), kept.end());
    return nm_matrix<Scheme>(values.data(), rows, kept_cols, pattern.bits.data(), cols, pattern.n, pattern.m);
  } else {
    const quantized_matrix<Scheme> q = quantize<Scheme>(kept.data(), rows, kept_cols, kept_cols, options);
    return nm_matrix<Scheme>(q.view(), pattern.bits.data(), cols, pattern.n, pattern.m);
  }
}

/// Magnitude (norms null) or Wanda (norms = activation_norms(calibration x)) N:M pruning, then
/// quantization of the kept values: prune_nm_mask, nm_pattern_of and quantize_nm in one call.
template <class Scheme>
nm_matrix<Scheme> prune_and_quantize_nm(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                        std::size_t n, std::size_t m, const float* norms = nullptr,
                                        const quant_options& options = {}) {
  detail::check_nm_shape("prune_and_quantize_nm", n, m);
  return quantize_nm<Scheme>(w, rows, cols, ld, nm_pattern_of(prune_nm_mask(w, rows, cols, ld, n, m, norms)), options);
}

/// The dense rows x cols matrix (row-major) that w stands for: each kept value dequantized exactly
/// as reference::dequantize_element gives it, zeros elsewhere.
template <class Scheme>
std::vector<float> nm_to_dense(const nm_matrix<Scheme>& w) {
  return detail::kept_to_dense(w, [&](std::size_t r, std::size_t j) { return w.column(r, j); });
}

}  // namespace lowbit
