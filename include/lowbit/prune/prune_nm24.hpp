/// \file
/// \brief N:M patterns on the 2:4 kernels: a mask that keeps at most 2 of every aligned group of
/// 4 columns (1:2, 1:4, 1:8, 2:8, 2:M for M a multiple of 4, ...) is a 2:4 matrix whose missing
/// kept values are explicit zeros, so it packs into sparse24_matrix and runs on its kernels.
/// Storage and speed are those of 2:4 (a zero kept value costs what any kept value does); a
/// pattern that can keep 3 or 4 of an aligned 4 (4:8, 3:8, 2:3, 2:6, ...) does not fit: prune it
/// with prune_nm and run the dense kernels on the pruned weights.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../sparse/sparse24_quantize.hpp"
#include "prune_nm.hpp"

namespace lowbit {

namespace detail {
/// The most weights any n:m mask can keep in one aligned group of 4 columns, and the first such
/// group's columns. Aligned groups of 4 meet the groups of m the same way again every lcm(4, m)
/// columns; a group keeps at most min(n, its columns inside the 4) there (a shorter last group
/// no more), and the groups are pruned independently, so the bound is reached.
struct nm_in_four {
  std::size_t most = 0, first_column = 0;
};
inline nm_in_four most_kept_in_four(std::size_t n, std::size_t m) {
  const std::size_t period = m % 4 == 0 ? m : m % 2 == 0 ? 2 * m : 4 * m;  // lcm(4, m)
  nm_in_four out;
  for (std::size_t start = 0; start < period; start += 4) {
    std::size_t kept = 0;
    for (std::size_t k = start; k < start + 4;) {
      const std::size_t piece = std::min((k / m + 1) * m, start + 4) - k;  // the columns of k's group inside
      kept += std::min(n, piece);
      k += piece;
    }
    if (kept > out.most) out = nm_in_four{kept, start};
  }
  return out;
}
}  // namespace detail

/// Whether every n:m mask, whatever the weights and the number of columns, keeps at most 2 of
/// every aligned group of 4 columns, i.e. runs on the 2:4 kernels. Bad n or m is a lowbit::error.
inline bool nm_fits_sparse24(std::size_t n, std::size_t m) {
  detail::check_nm("nm_fits_sparse24", n, m);
  return detail::most_kept_in_four(n, m).most <= 2;
}

/// The 2:4 positions of a mask that keeps at most 2 of every aligned group of 4 columns; a group
/// that keeps fewer adds its lowest pruned positions (which must hold zeros: quantize the pruned
/// weights, apply_nm_mask, not the original ones). A group keeping 3 or 4 is a lowbit::error.
inline sparse24_positions nm_to_sparse24_positions(const nm_mask& mask) {
  detail::check_nm_mask("nm_to_sparse24_positions", mask);
  return detail::positions_of_marked(
      mask.rows, mask.cols, [&](std::size_t r, std::size_t k) { return mask.kept(r, k); },
      [&](std::size_t r, std::size_t g, unsigned count) {
        LOWBIT_CHECK(false, "nm_to_sparse24_positions: the " << mask.n << ":" << mask.m << " mask keeps " << count
                                                             << " weights of row " << r << ", columns " << 4 * g
                                                             << ".." << 4 * g + 3
                                                             << "; the 2:4 kernels take at most 2 of every aligned 4");
      });
}

/// Magnitude (norms null) or Wanda n:m pruning, then quantization of the kept values with
/// quantize<Scheme> as a 2:4 matrix (S→Q order; options.group_size counts kept slots, the zeros
/// that fill a group of 4 keeping fewer than 2 included). An n:m that does not always fit 2:4
/// (nm_fits_sparse24) is a lowbit::error whatever the weights, so that success does not depend
/// on them.
template <class Scheme>
sparse24_matrix<Scheme> prune_and_quantize_nm24(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                                std::size_t n, std::size_t m, const float* norms = nullptr,
                                                const quant_options& options = {}) {
  detail::check_nm("prune_and_quantize_nm24", n, m);
  const detail::nm_in_four worst = detail::most_kept_in_four(n, m);
  LOWBIT_CHECK(worst.most <= 2, "prune_and_quantize_nm24: " << n << ":" << m << " can keep " << worst.most
                                                            << " weights of columns " << worst.first_column << ".."
                                                            << worst.first_column + 3
                                                            << ", the 2:4 kernels take at most 2 of every aligned 4 "
                                                               "(prune with prune_nm and use a dense format)");
  const nm_mask mask = prune_nm_mask(w, rows, cols, ld, n, m, norms);
  const std::vector<float> pruned = apply_nm_mask(w, rows, cols, ld, mask);
  return quantize_sparse24<Scheme>(pruned.data(), rows, cols, cols, nm_to_sparse24_positions(mask), options);
}

}  // namespace lowbit
