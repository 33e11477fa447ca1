/// \file
/// \brief y = x · Wᵀ (+ bias) for 2:4-sparse W (sparse/sparse24_matrix.hpp), weight-only or W8A8 / W4A8.
///
///   auto w = lowbit::prune_and_quantize24<Scheme>(weights, n, k, k, norms, {.group_size = 64});
///   lowbit::gemm(x, w, y, {bias}, pool);
///
/// Small M: the dense small-M kernel runs on the kept values (half the columns), each lane
/// picking its own x column from the group of 4 by the stored position (simd/sparse24_select.hpp).
/// Larger M: simd/gemm_sparse24.hpp, a tile of kept values with their x columns against x packed
/// transposed. Either way half the weight bytes and half the FMAs of the dense matrix. Same
/// accuracy contract as the dense weight-only GEMM, against reference::gemm on the dense matrix
/// sparse24_to_dense gives.
#pragma once

#include <cstddef>

#include "../sparse/sparse24_matrix.hpp"
#include "gemm.hpp"

namespace lowbit {

namespace detail {
template <class Scheme>
sparse24_columns columns_of(const sparse24_matrix<Scheme>& w) noexcept {
  return sparse24_columns{w.metadata(0, 0), w.values().chunks(), sparse24_matrix<Scheme>::metadata_row_bytes, w.cols()};
}
}  // namespace detail

/// y = x · Wᵀ + options.bias, x M x K fp32, W N x K 2:4-sparse; shapes are checked as for dense
/// matrices. compute::int8 (integer-valued formats): x is quantized per row as for the dense
/// GEMM, each row of W gathers its kept activations by byte shuffles (simd/gemm_int8.hpp), and
/// the zero-point correction uses each row's own sum of them; exact against reference::gemm_int8
/// on the dense matrix, as the dense integer path is.
template <class Scheme, class Executor = serial_executor>
void gemm(matrix_view<const float> x, const sparse24_matrix<Scheme>& w, matrix_view<float> y,
          const gemm_options& options = {}, Executor&& exec = Executor{}, isa path = best_isa()) {
  detail::check_gemm(x, w.values(), y, path, w.cols());
  const gemm_output out{y.data, y.ld, y.cols, options.bias};
  const sparse24_columns columns = detail::columns_of(w);
  if (options.mode == compute::int8) {
    if constexpr (!has_integer_path<typename Scheme::format>) {
      raise_error(std::string("gemm: compute::int8 needs integer-valued weights; ") + format_traits<typename Scheme::format>::name +
                  " is not (use compute::weight_only)");
    } else {
      LOWBIT_CHECK(w.values().shape().group_size <= 65536, "gemm: compute::int8 accumulates a group in int32; group_size="
                                                               << w.values().shape().group_size << " exceeds 65536");
      thread_local int8_activations activations;  // reused across calls on this thread
      int8_activations& a = activations;          // executor workers see the caller's, by reference
      a.quantize(x, x.cols, options.channel_scales, exec);
      dispatch(path, [&](auto tag) { detail::gemm_int8<decltype(tag)>(w.values(), a, out, exec, columns); });
    }
    return;
  }
  LOWBIT_CHECK(options.channel_scales == nullptr, "gemm: channel_scales are for compute::int8");
  dispatch(path, [&](auto tag) { detail::gemm_float<decltype(tag)>(w.values(), x, out, exec, columns); });
}

}  // namespace lowbit
