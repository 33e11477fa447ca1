/// \file
/// \brief SmoothQuant (Xiao et al., arXiv 2211.10438): move activation outliers into the weights
/// before W8A8, per input channel, so that both sides quantize well to int8.
///
/// s_k = max_n |x_nk|^α / max_r |w_rk|^(1−α) (α = 0.5 by default); the layer computes
/// (x / s) · (W diag(s))ᵀ, the same product. lowbit's int8 GEMM takes s as
/// gemm_options::channel_scales and divides each activation row by it while quantizing it, so only
/// the weights are rescaled here (smooth_weights) before they are quantized to int8.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "../core/error.hpp"
#include "rtn.hpp"

namespace lowbit {

/// max_n |x_nk| for each input channel k of activations x (samples x k): the statistic
/// SmoothQuant collects on calibration data.
inline std::vector<float> activation_absmax(const float* x, std::size_t samples, std::size_t k) {
  detail::check_float_matrix("activation_absmax", x, samples, k, k);
  std::vector<float> m(k, 0.0f);
  for (std::size_t n = 0; n < samples; ++n)
    for (std::size_t j = 0; j < k; ++j) m[j] = std::max(m[j], std::fabs(x[n * k + j]));
  return m;
}

/// The smoothing scales s (one per input channel) for weights w (rows x cols, stride ld).
/// Channels whose activations or weights are all zero keep s = 1.
inline std::vector<float> smoothquant_scales(const float* act_absmax, const float* w, std::size_t rows, std::size_t cols,
                                             std::size_t ld, float alpha = 0.5f) {
  detail::check_float_matrix("smoothquant_scales", w, rows, cols, ld);
  LOWBIT_CHECK(act_absmax != nullptr, "smoothquant_scales: act_absmax is null");
  LOWBIT_CHECK(alpha >= 0.0f && alpha <= 1.0f, "smoothquant_scales: alpha=" << alpha << " must be in [0, 1]");
  std::vector<float> s(cols, 1.0f);
  for (std::size_t k = 0; k < cols; ++k) {
    LOWBIT_CHECK(std::isfinite(act_absmax[k]) && act_absmax[k] >= 0.0f,
                 "smoothquant_scales: act_absmax[" << k << "] = " << act_absmax[k] << " is not a finite magnitude");
    float w_max = 0.0f;
    for (std::size_t r = 0; r < rows; ++r) w_max = std::max(w_max, std::fabs(w[r * ld + k]));
    if (act_absmax[k] > 0.0f && w_max > 0.0f)
      s[k] = static_cast<float>(std::pow(double(act_absmax[k]), alpha) / std::pow(double(w_max), 1.0 - alpha));
  }
  return s;
}

/// W diag(s): the weights to quantize for use with gemm_options::channel_scales = s.
inline std::vector<float> smooth_weights(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                         const std::vector<float>& s) {
  LOWBIT_CHECK(s.size() == cols, "smooth_weights: " << s.size() << " scales for " << cols << " columns");
  for (std::size_t k = 0; k < cols; ++k)
    LOWBIT_CHECK(std::isfinite(s[k]) && s[k] > 0.0f, "smooth_weights: s[" << k << "] = " << s[k] << " must be positive and finite");
  std::vector<float> out(rows * cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t k = 0; k < cols; ++k) out[r * cols + k] = w[r * ld + k] * s[k];
  return out;
}

}  // namespace lowbit
