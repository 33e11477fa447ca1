/// \file
/// \brief RTN with a clipping search: per group, the clip ratio whose quantization minimizes an
/// error (the weights' squared error for MSE-optimal clipping; AWQ passes its output error).
///
/// Shrinking a group's range before choosing its scale trades a larger error on the few largest
/// weights for a finer grid on all the others; the best ratio differs from group to group, so
/// each group keeps the candidate that scored best on it.
#pragma once

#include <cstddef>
#include <cstring>
#include <vector>

#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../kernels/reference/dequantize.hpp"
#include "../layout/quantized_matrix.hpp"
#include "rtn.hpp"

namespace lowbit {

/// The grid searched: ratios 1, 1 - (1 - min_ratio) / steps, ..., min_ratio (steps + 1 values).
struct clip_grid {
  std::size_t steps = 20;
  float min_ratio = 0.5f;
  float ratio(std::size_t i) const noexcept { return 1.0f - (1.0f - min_ratio) * static_cast<float>(i) / static_cast<float>(steps); }
};

/// RTN (quantize_rtn with options) at every ratio of `grid`; group (r, g) keeps the candidate for
/// which group_error(r, g, values) is smallest, values being the group's dequantized weights
/// (ties: the larger ratio). group_error: double(std::size_t row, std::size_t group, const float* values),
/// called concurrently for different rows when the executor has threads (the result does not
/// depend on the executor: rows are quantized and searched independently).
template <class Scheme, class GroupError, class Executor = serial_executor>
quantized_matrix<Scheme> quantize_rtn_search(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                             const quant_options& options, const clip_grid& grid, GroupError&& group_error,
                                             Executor&& exec = Executor{}) {
  LOWBIT_CHECK(grid.steps >= 1 && grid.min_ratio > 0.0f && grid.min_ratio <= 1.0f,
               "quantize_rtn_search: grid of " << grid.steps << " steps down to " << grid.min_ratio << " is invalid");
  LOWBIT_CHECK(!options.per_tensor, "quantize_rtn_search: clipping is searched per group, not per tensor");
  quant_options o = options;
  o.clip_ratio = 1.0f;
  quantized_matrix<Scheme> best = quantize_rtn<Scheme>(w, rows, cols, ld, o);
  const std::size_t g = best.group_size(), groups = best.groups_per_row();
  exec(rows, [&](std::size_t r0, std::size_t r1) {  // RTN's rule is per row: each range on its own
    std::vector<double> best_error((r1 - r0) * groups);
    std::vector<float> values(g);
    const auto score = [&](const quantized_matrix<Scheme>& q, std::size_t q_row, std::size_t r, std::size_t group) {
      const std::size_t k0 = group * g, k1 = std::min(cols, k0 + g);
      for (std::size_t k = k0; k < k1; ++k) values[k - k0] = reference::dequantize_element(q.view(), q_row, k);
      return group_error(r, group, values.data());
    };
    for (std::size_t r = r0; r < r1; ++r)
      for (std::size_t group = 0; group < groups; ++group) best_error[(r - r0) * groups + group] = score(best, r, r, group);
    quant_options oi = options;
    for (std::size_t i = 1; i <= grid.steps; ++i) {
      oi.clip_ratio = grid.ratio(i);
      const quantized_matrix<Scheme> q = quantize_rtn<Scheme>(w + r0 * ld, r1 - r0, cols, ld, oi);
      for (std::size_t r = r0; r < r1; ++r)
        for (std::size_t group = 0; group < groups; ++group) {
          const double e = score(q, r - r0, r, group);
          if (!(e < best_error[(r - r0) * groups + group])) continue;
          best_error[(r - r0) * groups + group] = e;
          best.scale(r, group) = q.scale(r - r0, group);
          if (Scheme::has_zero) best.zero(r, group) = q.zero(r - r0, group);
          for (std::size_t k = group * g; k < std::min(cols, group * g + g); ++k) best.set_code(r, k, q.code(r - r0, k));
        }
    }
  });
  return best;
}

/// MSE-optimal clipping: each group's ratio minimizes the squared error of its own weights.
template <class Scheme>
quantized_matrix<Scheme> quantize_rtn_mse(const float* w, std::size_t rows, std::size_t cols, std::size_t ld,
                                          const quant_options& options = {}, const clip_grid& grid = {}) {
  const std::size_t g = options.group_size ? options.group_size : cols;
  return quantize_rtn_search<Scheme>(w, rows, cols, ld, options, grid, [&](std::size_t r, std::size_t group, const float* values) {
    double e = 0;
    for (std::size_t k = group * g; k < std::min(cols, group * g + g); ++k) {
      const double d = double(w[r * ld + k]) - values[k - group * g];
      e += d * d;
    }
    return e;
  });
}

}  // namespace lowbit
