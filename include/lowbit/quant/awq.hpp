/// \file
/// \brief AWQ (Lin et al., arXiv 2306.00978): activation-aware scaling of input channels before
/// quantization, chosen on calibration activations, plus a clipping search on the scaled weights.
///
/// For a grid of α in [0, 1]: s_k = mean_n |x_nk|^α (normalized so that max(s) min(s) = 1),
/// W' = W diag(s) is quantized, and the layer's output error
/// ‖X Wᵀ − (X diag(s)⁻¹) Q(W')ᵀ‖² is measured; the best α wins (α = 0 is plain RTN, so AWQ is
/// never worse than RTN on this objective). Then each group's clip ratio is searched on the same
/// objective restricted to the group (AWQ's auto_clip). The result holds Q(W') and s: the caller
/// divides activations by s, or folds 1/s into the operation before (a LayerNorm's weight, the
/// previous linear's rows), which is what AWQ does.
///
/// Threads: the grid's candidates are independent and go over the executor, as do the rows of
/// the clip search; the best is picked in grid order, so the result does not depend on the executor.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../kernels/reference/dequantize.hpp"
#include "../layout/quantized_matrix.hpp"
#include "clip_search.hpp"
#include "quantize.hpp"

namespace lowbit {

struct awq_options {
  std::size_t group_size = 128;
  std::size_t alpha_steps = 20;  ///< α = 0, 1/steps, ..., 1
  bool clip = true;              ///< search each group's clip ratio too
  clip_grid clip_ratios{};
};

template <class Scheme>
struct awq_result {
  quantized_matrix<Scheme> weights;  ///< Q(W diag(s))
  std::vector<float> input_scales;   ///< s: use x / s (or fold 1/s into the previous operation)
  float alpha = 0.0f;
};

namespace detail {

/// ‖X Wᵀ − (X / s) Qᵀ‖² over samples x outputs, in float64 (Q: the dequantized matrix).
template <class Scheme>
double awq_output_error(const std::vector<double>& reference_output, const float* x, std::size_t samples, std::size_t k,
                        const std::vector<float>& s, const quantized_matrix<Scheme>& q) {
  const std::size_t rows = q.rows();
  std::vector<float> row(k);
  double total = 0.0;
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t j = 0; j < k; ++j) row[j] = reference::dequantize_element(q.view(), r, j) / s[j];
    for (std::size_t n = 0; n < samples; ++n) {
      double y = 0.0;
      for (std::size_t j = 0; j < k; ++j) y += double(x[n * k + j]) * row[j];
      const double d = reference_output[n * rows + r] - y;
      total += d * d;
    }
  }
  return total;
}

}  // namespace detail

/// AWQ on w (rows x cols, stride ld) with calibration activations x (samples x cols).
template <class Scheme, class Executor = serial_executor>
awq_result<Scheme> quantize_awq(const float* w, std::size_t rows, std::size_t cols, std::size_t ld, const float* x,
                                std::size_t samples, const awq_options& options = {}, Executor&& exec = Executor{}) {
  detail::check_float_matrix("quantize_awq", w, rows, cols, ld);
  detail::check_float_matrix("quantize_awq activations", x, samples, cols, cols);
  LOWBIT_CHECK(options.alpha_steps >= 1, "quantize_awq: alpha_steps must be at least 1");
  const std::size_t k = cols;
  std::vector<double> reference_output(samples * rows);  // X Wᵀ
  exec(samples, [&](std::size_t n0, std::size_t n1) {
    for (std::size_t n = n0; n < n1; ++n)
      for (std::size_t r = 0; r < rows; ++r) {
        double y = 0.0;
        for (std::size_t j = 0; j < k; ++j) y += double(x[n * k + j]) * w[r * ld + j];
        reference_output[n * rows + r] = y;
      }
  });
  std::vector<double> mean_abs(k, 0.0);
  for (std::size_t n = 0; n < samples; ++n)
    for (std::size_t j = 0; j < k; ++j) mean_abs[j] += std::fabs(double(x[n * k + j])) / static_cast<double>(samples);

  quant_options o;
  o.group_size = options.group_size;
  const auto scales_for = [&](double alpha) {
    std::vector<float> s(k);
    double lo = INFINITY, hi = 0.0;
    std::vector<double> raw(k);
    for (std::size_t j = 0; j < k; ++j) {
      raw[j] = std::pow(std::max(mean_abs[j], 1e-8), alpha);
      lo = std::min(lo, raw[j]), hi = std::max(hi, raw[j]);
    }
    for (std::size_t j = 0; j < k; ++j) s[j] = static_cast<float>(raw[j] / std::sqrt(lo * hi));
    return s;
  };
  const auto scale_weights = [&](const std::vector<float>& s, std::vector<float>& scaled) {
    scaled.resize(rows * k);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t j = 0; j < k; ++j) scaled[r * k + j] = w[r * ld + j] * s[j];
  };

  // Every grid point on its own (over the executor), then the best in grid order.
  const std::size_t candidates = options.alpha_steps + 1;
  std::vector<awq_result<Scheme>> results(candidates);
  std::vector<double> errors(candidates);
  exec(candidates, [&](std::size_t begin, std::size_t end) {
    std::vector<float> scaled;
    for (std::size_t i = begin; i < end; ++i) {
      const double alpha = static_cast<double>(i) / static_cast<double>(options.alpha_steps);
      std::vector<float> s = alpha == 0.0 ? std::vector<float>(k, 1.0f) : scales_for(alpha);
      scale_weights(s, scaled);
      quantized_matrix<Scheme> q = quantize<Scheme>(scaled.data(), rows, k, k, o);
      errors[i] = detail::awq_output_error(reference_output, x, samples, k, s, q);
      results[i] = awq_result<Scheme>{std::move(q), std::move(s), static_cast<float>(alpha)};
    }
  });
  std::size_t chosen = 0;
  for (std::size_t i = 1; i < candidates; ++i)
    if (errors[i] < errors[chosen] || std::isnan(errors[chosen])) chosen = i;
  awq_result<Scheme> best = std::move(results[chosen]);
  results.clear();
  std::vector<float> scaled;
  if constexpr (!is_mx_scheme<Scheme>::value) {
    if (options.clip) {
      // Each group's clip ratio on the group's share of the output error: x / s against the
      // scaled weights, that group's columns only.
      scale_weights(best.input_scales, scaled);
      const std::size_t g = best.weights.group_size();
      std::vector<float> xs(samples * k);
      for (std::size_t n = 0; n < samples; ++n)
        for (std::size_t j = 0; j < k; ++j) xs[n * k + j] = x[n * k + j] / best.input_scales[j];
      best.weights = quantize_rtn_search<Scheme>(scaled.data(), rows, k, k, o, options.clip_ratios,
                                                 [&](std::size_t r, std::size_t group, const float* values) {
        const std::size_t k0 = group * g, k1 = std::min(k, k0 + g);
        double e = 0.0;
        for (std::size_t n = 0; n < samples; ++n) {
          double d = 0.0;
          for (std::size_t j = k0; j < k1; ++j) d += double(xs[n * k + j]) * (double(scaled[r * k + j]) - values[j - k0]);
          e += d * d;
        }
        return e;
      }, exec);
    }
  }
  return best;
}

}  // namespace lowbit
