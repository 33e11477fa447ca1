/// \file
/// \brief 2:4 pruning: keep the 2 of every 4 consecutive weights of a row that score highest.
///  - magnitude: score |w|.
///  - Wanda (Sun et al., 2023): score |w_jk| · ‖x_k‖₂, x_k the k-th input channel over calibration
///    tokens, so weights that meet large activations survive.
/// prune_and_quantize24 does both steps in the S→Q order: prune the float weights, then quantize
/// only the kept values (their scales see no pruned outliers).
#pragma once

#include <cmath>
#include <cstddef>

#include "../core/error.hpp"
#include "../sparse/sparse24_quantize.hpp"
#include "activation_norms.hpp"

namespace lowbit {

/// The 2:4 pattern that keeps, in each group of 4 columns, the 2 highest scores |w_rk| · norms[k]
/// (norms null: magnitude pruning). Ties keep the lower column. Non-finite weights or norms, and
/// negative norms, are a lowbit::error.
inline sparse24_positions prune24(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                  const float* norms = nullptr) {
  detail::check_float_matrix("prune24", w, rows, cols, ld);
  detail::check_activation_norms("prune24", norms, cols);
  sparse24_positions out(rows, cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t g = 0; g < out.groups(); ++g) {
      float score[4];
      for (unsigned i = 0; i < 4; ++i) {
        const std::size_t k = 4 * g + i;
        score[i] = k < cols ? std::fabs(w[r * ld + k]) * (norms ? norms[k] : 1.0f) : -1.0f;  // padding loses
      }
      unsigned first = 0;
      for (unsigned i = 1; i < 4; ++i)
        if (score[i] > score[first]) first = i;
      unsigned second = first == 0 ? 1 : 0;
      for (unsigned i = 0; i < 4; ++i)
        if (i != first && score[i] > score[second]) second = i;
      out.set(r, g, std::min(first, second), std::max(first, second));
    }
  return out;
}

/// Magnitude (norms null) or Wanda (norms = activation_norms(calibration x)) 2:4 pruning, then
/// quantization of the kept values with quantize<Scheme> (options.group_size counts kept values).
template <class Scheme>
sparse24_matrix<Scheme> prune_and_quantize24(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                             const float* norms = nullptr, const quant_options& options = {}) {
  return quantize_sparse24<Scheme>(w, rows, cols, ld, prune24(w, rows, cols, ld, norms), options);
}

}  // namespace lowbit
