/// \file
/// \brief y = x · Wᵀ (+ bias) for 2:4-sparse W (sparse/sparse24_matrix.hpp), weight-only.
///
///   auto w = lowbit::prune_and_quantize24<Scheme>(weights, n, k, k, norms, {.group_size = 64});
///   lowbit::gemm(x, w, y, {bias}, pool);
///
/// The dense kernels of kernels/gemm.hpp run on the kept values (half the columns), each lane
/// picking its own x column from the group of 4 by the stored position (simd/sparse24_select.hpp):
/// half the weight bytes and half the FMAs of the dense matrix. Same accuracy contract as the
/// dense weight-only GEMM, against reference::gemm on the dense matrix sparse24_to_dense gives.
#pragma once

#include <cstddef>
#include <cstring>

#include "../sparse/sparse24_matrix.hpp"
#include "gemm.hpp"

namespace lowbit {

namespace detail {
template <class Scheme>
sparse24_columns columns_of(const sparse24_matrix<Scheme>& w) noexcept {
  return sparse24_columns{w.metadata(0, 0), w.values().chunks(), sparse24_matrix<Scheme>::metadata_row_bytes, w.cols()};
}
}  // namespace detail

/// y = x · Wᵀ + options.bias, x M x K fp32, W N x K 2:4-sparse. compute::int8 is not available
/// for 2:4 matrices yet (a lowbit::error says so); shapes are checked as for dense matrices.
template <class Scheme, class Executor = serial_executor>
void gemm(matrix_view<const float> x, const sparse24_matrix<Scheme>& w, matrix_view<float> y,
          const gemm_options& options = {}, Executor&& exec = Executor{}, isa path = best_isa()) {
  detail::check_gemm(x, w.values(), y, path, w.cols());
  LOWBIT_CHECK(options.mode == compute::weight_only, "gemm: 2:4 matrices run compute::weight_only only");
  LOWBIT_CHECK(options.channel_scales == nullptr, "gemm: channel_scales are for compute::int8");
  const gemm_output out{y.data, y.ld, y.cols, options.bias};
  const sparse24_columns columns = detail::columns_of(w);
  // The tiles read each row's groups of 4 whole: a K that is not a multiple of 4 gets a padded copy.
  matrix_view<const float> xs = x;
  thread_local aligned_buffer<float> padded;
  const std::size_t k4 = 4 * sparse24_positions::groups_of(x.cols);
  if (k4 != x.cols && x.rows > 4) {
    if (padded.size() < x.rows * k4) padded = aligned_buffer<float>(x.rows * k4);
    for (std::size_t i = 0; i < x.rows; ++i) {
      std::memcpy(padded.data() + i * k4, x.row(i), x.cols * sizeof(float));
      std::memset(padded.data() + i * k4 + x.cols, 0, (k4 - x.cols) * sizeof(float));
    }
    xs = matrix_view<const float>(padded.data(), x.rows, x.cols, k4);
  }
  dispatch(path, [&](auto tag) { detail::gemm_float<decltype(tag)>(w.values(), xs, out, exec, columns); });
}

}  // namespace lowbit
