/// \file
/// \brief N:M pruning: keep the N of every M consecutive weights of a row (along K) that score
/// highest, for any 1 <= N < M <= 32 — magnitude |w|, or Wanda |w_jk| · ‖x_k‖₂ with the norms of
/// activation_norms. The result is a mask, or the pruned dense weights (zeros where pruned), which
/// quantize into any dense lowbit scheme; prune_nm24.hpp runs the patterns that fit 2:4 on the
/// 2:4 kernels.
///
/// Groups start at column 0. When M does not divide K the last group has L < M columns and keeps
/// min(N, L): the row is pruned as if padded with zero columns that always lose, which is what an
/// engine padding K to a multiple of M gets, and prune24's rule (prune_nm 2:4 gives its pattern).
/// Ties keep the lower column, as in prune24.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../quant/rtn.hpp"
#include "activation_norms.hpp"

namespace lowbit {

/// Largest M of an N:M pattern (a group's scores live on the stack).
inline constexpr std::size_t max_nm_group = 32;

/// Which weights an N:M pruning keeps: keep[r * cols + k] is 1 where weight (r, k) is kept, else 0.
struct nm_mask {
  std::size_t rows = 0, cols = 0;
  std::size_t n = 0, m = 0;  ///< the pattern: n of every m consecutive columns
  std::vector<uint8_t> keep;

  nm_mask() = default;
  nm_mask(std::size_t rows_, std::size_t cols_, std::size_t n_, std::size_t m_)
      : rows(rows_), cols(cols_), n(n_), m(m_), keep(rows_ * cols_, uint8_t(0)) {}
  bool kept(std::size_t r, std::size_t k) const noexcept { return keep[r * cols + k] != 0; }
};

namespace detail {
inline void check_nm(const char* who, std::size_t n, std::size_t m) {
  LOWBIT_CHECK(m >= 2 && m <= max_nm_group,
               who << ": M=" << m << " must be in 2.." << max_nm_group << " (N:M keeps N of every M columns)");
  LOWBIT_CHECK(n >= 1 && n < m, who << ": N=" << n << " must be in 1.." << m - 1 << " for M=" << m);
}

inline void check_nm_mask(const char* who, const nm_mask& mask) {
  check_nm(who, mask.n, mask.m);
  LOWBIT_CHECK(mask.rows > 0 && mask.cols > 0,
               who << ": mask rows=" << mask.rows << " and cols=" << mask.cols << " must be positive");
  LOWBIT_CHECK(mask.keep.size() == mask.rows * mask.cols, who << ": mask holds " << mask.keep.size()
                                                              << " entries, expected " << mask.rows * mask.cols);
}
}  // namespace detail

/// The N:M mask that keeps, in each group of m columns, the n highest scores |w_rk| · norms[k]
/// (norms null: magnitude pruning); a last group of L < m columns keeps min(n, L). Ties keep the
/// lower column. Bad n or m, a bad shape, non-finite weights or norms, and negative norms are a
/// lowbit::error.
inline nm_mask prune_nm_mask(const float* w, std::size_t rows, std::size_t cols, std::size_t ld, std::size_t n,
                             std::size_t m, const float* norms = nullptr) {
  detail::check_nm("prune_nm", n, m);
  detail::check_float_matrix("prune_nm", w, rows, cols, ld);
  detail::check_activation_norms("prune_nm", norms, cols);
  nm_mask out(rows, cols, n, m);
  float score[max_nm_group];
  std::size_t order[max_nm_group];  // the group's columns, best first
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t start = 0; start < cols; start += m) {
      const std::size_t length = std::min(m, cols - start);
      for (std::size_t i = 0; i < length; ++i) {
        score[i] = std::fabs(w[r * ld + start + i]) * (norms ? norms[start + i] : 1.0f);
        // Insertion sort, stable: an equal score stays behind the lower column already placed.
        std::size_t j = i;
        for (; j > 0 && score[order[j - 1]] < score[i]; --j) order[j] = order[j - 1];
        order[j] = i;
      }
      for (std::size_t i = 0; i < std::min(n, length); ++i) out.keep[r * cols + start + order[i]] = 1;
    }
  return out;
}

/// The rows x cols dense matrix (row-major, leading dimension cols) of w where mask keeps, zeros
/// where it prunes. A mask of another shape is a lowbit::error.
inline std::vector<float> apply_nm_mask(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                        const nm_mask& mask) {
  detail::check_nm_mask("apply_nm_mask", mask);
  detail::check_float_matrix("apply_nm_mask", w, rows, cols, ld);
  LOWBIT_CHECK(mask.rows == rows && mask.cols == cols, "apply_nm_mask: the mask is for " << mask.rows << " x " << mask.cols
                                                                                         << ", the weights are " << rows
                                                                                         << " x " << cols);
  std::vector<float> out(rows * cols, 0.0f);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < cols; ++k)
      if (mask.kept(r, k)) out[r * cols + k] = w[r * ld + k];
  return out;
}

/// Magnitude (norms null) or Wanda (norms = activation_norms(calibration x)) N:M pruning: the
/// pruned dense weights, rows x cols row-major, ready for quantize<Scheme> or any dense format.
inline std::vector<float> prune_nm(const float* w, std::size_t rows, std::size_t cols, std::size_t ld, std::size_t n,
                                   std::size_t m, const float* norms = nullptr) {
  return apply_nm_mask(w, rows, cols, ld, prune_nm_mask(w, rows, cols, ld, n, m, norms));
}

}  // namespace lowbit
