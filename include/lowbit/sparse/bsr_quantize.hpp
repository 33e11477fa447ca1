/// \file
/// \brief From dense to block-sparse and back: the block structure of a matrix (its non-zero
/// blocks), block pruning by block norm to a target density, quantization of the kept blocks,
/// and the dense matrix a bsr_matrix stands for.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <vector>

#include "../core/error.hpp"
#include "../kernels/reference/dequantize.hpp"
#include "../quant/quantize.hpp"
#include "bsr_matrix.hpp"

namespace lowbit {

namespace detail {
/// The structure keeping the blocks for which keep(block row, block column) is true.
template <class Keep>
bsr_structure structure_where(std::size_t rows, std::size_t cols, std::size_t br, std::size_t bc, Keep&& keep) {
  LOWBIT_CHECK(br > 0 && bc > 0 && rows % br == 0 && cols % bc == 0,
               "bsr: blocks of " << br << " x " << bc << " must tile " << rows << " x " << cols);
  std::vector<uint32_t> row_ptr(1, 0), col_idx;
  for (std::size_t b = 0; b < rows / br; ++b) {
    for (std::size_t c = 0; c < cols / bc; ++c)
      if (keep(b, c)) col_idx.push_back(static_cast<uint32_t>(c));
    row_ptr.push_back(static_cast<uint32_t>(col_idx.size()));
  }
  return bsr_structure(rows, cols, br, bc, row_ptr.data(), col_idx.data());
}
}  // namespace detail

/// The blocks of w (BR x BC) that hold a non-zero.
inline bsr_structure find_bsr_structure(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                        std::size_t br, std::size_t bc) {
  detail::check_float_matrix("find_bsr_structure", w, rows, cols, ld);
  return detail::structure_where(rows, cols, br, bc, [&](std::size_t b, std::size_t c) {
    for (std::size_t r = b * br; r < (b + 1) * br; ++r)
      for (std::size_t k = c * bc; k < (c + 1) * bc; ++k)
        if (w[r * ld + k] != 0.0f) return true;
    return false;
  });
}

/// Block pruning: keeps the round(density x blocks) blocks of largest Frobenius norm (ties keep
/// the earlier block in row-major order). density must be in (0, 1].
inline bsr_structure prune_blocks(const float* w, std::size_t rows, std::size_t cols, std::size_t ld, std::size_t br,
                                  std::size_t bc, double density) {
  detail::check_float_matrix("prune_blocks", w, rows, cols, ld);
  LOWBIT_CHECK(density > 0.0 && density <= 1.0, "prune_blocks: density=" << density << " must be in (0, 1]");
  LOWBIT_CHECK(br > 0 && bc > 0 && rows % br == 0 && cols % bc == 0,
               "prune_blocks: blocks of " << br << " x " << bc << " must tile " << rows << " x " << cols);
  const std::size_t brows = rows / br, bcols = cols / bc, total = brows * bcols;
  std::vector<double> norm(total, 0.0);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < cols; ++k) norm[r / br * bcols + k / bc] += double(w[r * ld + k]) * w[r * ld + k];
  const std::size_t keep = std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(density * double(total))));
  std::vector<std::size_t> order(total);
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return norm[a] > norm[b]; });
  std::vector<bool> kept(total, false);
  for (std::size_t i = 0; i < std::min(keep, total); ++i) kept[order[i]] = true;
  return detail::structure_where(rows, cols, br, bc,
                                 [&](std::size_t b, std::size_t c) { return bool(kept[b * bcols + c]); });
}

/// Quantizes the blocks that `structure` keeps, gathered as (blocks x BR) x BC rows, with
/// quantize<Scheme> (options.group_size 0: one group per block row of BC values).
template <class Scheme>
bsr_matrix<Scheme> quantize_bsr(const float* w, std::size_t ld, const bsr_structure& structure,
                                const quant_options& options = {}) {
  detail::check_float_matrix("quantize_bsr", w, structure.rows, structure.cols, ld);
  const std::size_t br = structure.block_rows, bc = structure.block_cols;
  if (structure.blocks() == 0) return bsr_matrix<Scheme>(structure, quantized_view<Scheme>{});
  std::vector<float> gathered(structure.blocks() * br * bc);
  for (std::size_t b = 0; b < structure.block_row_count(); ++b)
    for (std::size_t i = structure.row_ptr[b]; i < structure.row_ptr[b + 1]; ++i)
      for (std::size_t r = 0; r < br; ++r)
        std::copy(w + (b * br + r) * ld + structure.col_idx[i] * bc, w + (b * br + r) * ld + (structure.col_idx[i] + 1) * bc,
                  gathered.begin() + static_cast<std::ptrdiff_t>((i * br + r) * bc));
  const quantized_matrix<Scheme> q = quantize<Scheme>(gathered.data(), structure.blocks() * br, bc, bc, options);
  return bsr_matrix<Scheme>(structure, q.view());
}

/// prune_blocks then quantize_bsr: the block-sparse matrix in one call.
template <class Scheme>
bsr_matrix<Scheme> prune_and_quantize_blocks(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                             std::size_t br, std::size_t bc, double density,
                                             const quant_options& options = {}) {
  return quantize_bsr<Scheme>(w, ld, prune_blocks(w, rows, cols, ld, br, bc, density), options);
}

/// The dense rows x cols matrix w stands for: stored blocks dequantized as
/// reference::dequantize_element gives them, zeros elsewhere.
template <class Scheme>
std::vector<float> bsr_to_dense(const bsr_matrix<Scheme>& w) {
  const bsr_structure& s = w.structure();
  std::vector<float> out(s.rows * s.cols, 0.0f);
  if (s.blocks() == 0) return out;
  const quantized_matrix<Scheme> values = w.values();
  for (std::size_t b = 0; b < s.block_row_count(); ++b)
    for (std::size_t i = s.row_ptr[b]; i < s.row_ptr[b + 1]; ++i)
      for (std::size_t r = 0; r < s.block_rows; ++r)
        for (std::size_t k = 0; k < s.block_cols; ++k)
          out[(b * s.block_rows + r) * s.cols + s.col_idx[i] * s.block_cols + k] =
              reference::dequantize_element(values.view(), i * s.block_rows + r, k);
  return out;
}

}  // namespace lowbit
