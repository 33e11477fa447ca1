/// \file
/// \brief ‖x_k‖₂ of every input channel over calibration activations: the Wanda score's activation
/// factor, shared by 2:4 (prune24.hpp) and N:M (prune_nm.hpp) pruning.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "../core/error.hpp"
#include "../core/views.hpp"

namespace lowbit {

/// ‖x_k‖₂ of every column k of the calibration activations x (tokens x K), summed in double.
inline std::vector<float> activation_norms(matrix_view<const float> x) {
  x.validate("activation_norms: x");
  std::vector<double> sums(x.cols, 0.0);
  for (std::size_t i = 0; i < x.rows; ++i)
    for (std::size_t k = 0; k < x.cols; ++k) sums[k] += static_cast<double>(x(i, k)) * x(i, k);
  std::vector<float> out(x.cols);
  for (std::size_t k = 0; k < x.cols; ++k) out[k] = static_cast<float>(std::sqrt(sums[k]));
  return out;
}

namespace detail {
/// Throws unless each of the cols norms is finite and >= 0 (null norms: magnitude pruning, fine).
inline void check_activation_norms(const char* who, const float* norms, std::size_t cols) {
  if (!norms) return;
  for (std::size_t k = 0; k < cols; ++k)
    LOWBIT_CHECK(std::isfinite(norms[k]) && norms[k] >= 0.0f,
                 who << ": activation norm " << k << " = " << norms[k] << " must be finite and >= 0");
}
}  // namespace detail

}  // namespace lowbit
