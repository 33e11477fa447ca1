/// \file
/// \brief SparseGPT (Frantar & Alistarh, arXiv 2301.00774) 2:4, jointly with quantization of the
/// kept weights: GPTQ's column sweep where each column's value is either pruned (0) or quantized,
/// and the error of both is fed back into the columns not yet visited.
///
/// In each group of 4 columns a row keeps the 2 weights with the largest w² / U_jj² (the
/// Optimal Brain Surgeon saliency with H⁻¹'s Cholesky diagonal), chosen on the current, already
/// updated weights. Quantization groups count kept values (as in sparse24_matrix): a group of g
/// kept values spans 2g columns, so when the sweep reaches a group its 2:4 masks are chosen first
/// and its scales then come from the weights it keeps. group_size 0: one scale per row, from the
/// dense row before the sweep (SparseGPT's reference does the same). Rows go over the executor
/// as in GPTQ; the result does not depend on it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "../core/error.hpp"
#include "../quant/gptq.hpp"
#include "../sparse/sparse24_matrix.hpp"

namespace lowbit {

struct sparsegpt_options {
  std::size_t group_size = 64;   ///< kept values per quantization group; 0: one per row
  double damp = 0.01;
  std::size_t block_size = 128;  ///< a multiple of 4
};

/// SparseGPT 2:4 + quantization of w (rows x cols, stride ld; cols a multiple of 4) on
/// calibration activations x (samples x cols).
template <class Scheme, class Executor = serial_executor>
sparse24_matrix<Scheme> prune_sparsegpt24(const float* w, std::size_t rows, std::size_t cols, std::size_t ld, const float* x,
                                          std::size_t samples, const sparsegpt_options& options = {},
                                          Executor&& exec = Executor{}) {
  detail::check_float_matrix("prune_sparsegpt24", w, rows, cols, ld);
  LOWBIT_CHECK(cols % 4 == 0, "prune_sparsegpt24: cols=" << cols << " must be a multiple of 4");
  LOWBIT_CHECK(options.block_size % 4 == 0, "prune_sparsegpt24: block_size=" << options.block_size << " must be a multiple of 4");
  detail::gptq_problem p = detail::make_gptq_problem(w, rows, cols, ld, x, samples, options.damp, false, exec);
  const std::size_t k = cols, kept_cols = k / 2;
  const std::size_t g = options.group_size ? std::min(options.group_size, kept_cols) : kept_cols;
  LOWBIT_CHECK(g % 2 == 0 || g == kept_cols, "prune_sparsegpt24: group_size=" << g << " must be even (a group spans whole 4-column blocks)");
  quantized_matrix<Scheme> kept(rows, kept_cols, g);
  sparse24_positions positions(rows, k);
  std::vector<float> block(rows * g), scale(rows), zero(rows, 0.0f);
  std::vector<uint8_t> keep(rows * k, 0);  // 1 where the chosen pattern keeps w_rj
  if (options.group_size == 0) {           // per-row scales from the dense row
    std::vector<float> dense(rows * k);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < k; ++j) dense[r * k + j] = w[r * ld + j];
    quant_options o;
    o.group_size = k;
    const quantized_matrix<Scheme> params = quantize<Scheme>(dense.data(), rows, k, k, o);
    for (std::size_t r = 0; r < rows; ++r) {
      kept.scale(r, 0) = params.scale(r, 0);
      scale[r] = scale_traits<typename Scheme::scale_type>::to_float(params.scale(r, 0));
      if constexpr (Scheme::has_zero) {
        kept.zero(r, 0) = params.zero(r, 0);
        zero[r] = format_traits<typename Scheme::format>::decode(params.zero(r, 0));
      }
    }
  }
  const std::size_t span = options.group_size ? 2 * g : 4;  // columns whose masks are chosen together
  detail::gptq_sweep(p, options.block_size, [&](std::size_t j, std::size_t r0, std::size_t r1, double* values) {
    if (j % span == 0) {
      for (std::size_t q0 = j; q0 < std::min(k, j + span); q0 += 4)
        for (std::size_t r = r0; r < r1; ++r) {
          double saliency[4];
          for (std::size_t i = 0; i < 4; ++i) {
            const double d = p.u[(q0 + i) * k + q0 + i], v = p.w[r * k + q0 + i];
            saliency[i] = v * v / (d * d);
          }
          unsigned a = 0, b = 1;  // the two largest, ties to the lower column
          if (saliency[b] > saliency[a]) std::swap(a, b);
          for (unsigned i = 2; i < 4; ++i) {
            if (saliency[i] > saliency[a]) b = a, a = i;
            else if (saliency[i] > saliency[b]) b = i;
          }
          if (a > b) std::swap(a, b);
          positions.set(r, q0 / 4, a, b);
          keep[r * k + q0 + a] = keep[r * k + q0 + b] = 1;
        }
      if (options.group_size) {  // the group's scales from the weights it keeps
        const std::size_t width = std::min(g, kept_cols - j / 2);
        for (std::size_t r = r0; r < r1; ++r) {
          std::size_t c = 0;
          for (std::size_t col = j; col < k && c < width; ++col)
            if (keep[r * k + col]) block[r * g + c++] = static_cast<float>(p.w[r * k + col]);
        }
        detail::choose_group_scales(block, g, r0, r1, width, kept, j / span, scale, zero);
      }
    }
    for (std::size_t r = r0; r < r1; ++r) {
      if (!keep[r * k + j]) {
        values[r] = 0.0;
        continue;
      }
      const unsigned nibble = positions.get(r, j / 4);
      const std::size_t slot = 2 * (j / 4) + ((j % 4) == (nibble >> 2) ? 1 : 0);
      kept.set_code(r, slot, detail::quantize_value<Scheme>(p.w[r * k + j], scale[r], zero[r], values[r]));
    }
  }, exec);
  kept.view().validate_contents();
  return sparse24_matrix<Scheme>(kept.view(), positions.nibbles.data(), k);
}

}  // namespace lowbit
