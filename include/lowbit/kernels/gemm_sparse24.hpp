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
#include "../sparse/sparse24_plain.hpp"
#include "gemm.hpp"
#include "simd/gemm_sparse24_plain.hpp"

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
template <class Scheme, class Executor = serial_executor, std::enable_if_t<!is_plain_value<Scheme>::value, int> = 0>
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

namespace detail {
/// Scalar path of the plain kinds: the same two interleaved sums per row as the SIMD kernels.
template <class T>
void gemm_sparse24_plain_scalar(const sparse24_plain<T>& w, matrix_view<const float> x, std::size_t p_begin,
                                std::size_t p_end, const gemm_output& out) noexcept {
  for (std::size_t n = p_begin * 16; n < std::min(out.n, p_end * 16); ++n)
    for (std::size_t i = 0; i < x.rows; ++i) {
      float sum[2] = {0.0f, 0.0f};
      for (std::size_t j = 0; j < w.kept_cols(); ++j) {
        const std::size_t column = j / 2 * 4 + w.position(n, j);
        if (column < x.cols) sum[j % 2] += x(i, column) * plain_to_float(w.value(n, j));
      }
      out.y[i * out.ld + n] = sum[0] + sum[1] + (out.bias ? out.bias[n] : 0.0f);
    }
}
}  // namespace detail

/// y = x · Wᵀ + options.bias for 2:4 W with plain fp32 or bf16 kept values (sparse24_plain.hpp),
/// x M x K fp32: half the FMAs of the dense product and 2.125 (fp32) or 1.125 (bf16) bytes per
/// original weight; fp32 accumulation, against a float64 product within the usual rounding.
/// compute::int8 is refused: quantize the kept values (quantize_sparse24<scheme<int8>>) for it.
template <class T, class Executor = serial_executor, std::enable_if_t<is_plain_value<T>::value, int> = 0>
void gemm(matrix_view<const float> x, const sparse24_matrix<T>& w, matrix_view<float> y, const gemm_options& options = {},
          Executor&& exec = Executor{}, isa path = best_isa()) {
  LOWBIT_CHECK(w.panels() > 0, "gemm: w is empty (default-constructed)");
  detail::check_gemm_shapes(x, y, w.rows(), w.cols(), path);
  LOWBIT_CHECK(options.mode == compute::weight_only, "gemm: compute::int8 needs quantized kept values; these are "
                                                         << (std::is_same<T, float>::value ? "fp32" : "bf16")
                                                         << " (quantize them with quantize_sparse24<scheme<int8>>)");
  LOWBIT_CHECK(options.channel_scales == nullptr, "gemm: channel_scales are for compute::int8");
  const gemm_output out{y.data, y.ld, y.cols, options.bias};
  const std::size_t panels = w.panels();
  [[maybe_unused]] const std::size_t m = x.rows;  // the SIMD paths' (a scalar-only build has none)
  dispatch(path, [&](auto tag) {
    using Tag = decltype(tag);
    if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
      detail::for_panels(exec, panels, 1, [&](std::size_t b, std::size_t e) { detail::gemm_sparse24_plain_scalar(w, x, b, e, out); });
    } else {
#if defined(LOWBIT_COMPILED_SSE42)
      if (m <= 4) {  // decode: all rows in one pass over W
        detail::for_panels(exec, panels, 1, [&](std::size_t b, std::size_t e) {
          if (m == 1) {
            simd::gemm_sparse24_plain_small_m<Tag, T, 1>(w, x.data, x.ld, 1, b, e, out);
          } else if (m == 2) {
            simd::gemm_sparse24_plain_small_m<Tag, T, 2>(w, x.data, x.ld, 2, b, e, out);
          } else {
            simd::gemm_sparse24_plain_small_m<Tag, T, 4>(w, x.data, x.ld, m, b, e, out);
          }
        });
      } else {
        const simd::sparse24_packed_x packed = simd::pack_x_transposed<Tag>(x.data, x.ld, m, x.cols);
        detail::for_panels(exec, panels, 1, [&](std::size_t b, std::size_t e) {
          simd::gemm_sparse24_plain_tiled<Tag>(w, packed, m, b, e, out);
        });
      }
#endif
    }
  });
}

}  // namespace lowbit
