/// \file
/// \brief y = x · Wᵀ (+ bias) for block-sparse W (sparse/bsr_matrix.hpp), weight-only.
///
///   auto w = lowbit::prune_and_quantize_blocks<Scheme>(weights, n, k, k, 32, 32, 0.25, {32});
///   lowbit::gemm(x, w, y, {bias}, pool);
///
/// When w.vectorized() (BR a multiple of 16, groups of whole lanes), each block row runs the dense
/// kernels of kernels/gemm.hpp on its blocks side by side, x read block by block (block_columns):
/// the work and the bytes are the stored blocks'. Other block shapes run a scalar loop over the
/// blocks on every path. Same accuracy contract as the dense weight-only GEMM, against
/// reference::gemm on bsr_to_dense.
#pragma once

#include <cstddef>

#include "../sparse/bsr_matrix.hpp"
#include "gemm.hpp"
#include "reference/dequantize.hpp"

namespace lowbit {

namespace detail {
/// Scalar BSR: block row by block row, each output's sum per group as the SIMD kernels keep it.
template <class Scheme>
void gemm_bsr_scalar(const bsr_matrix<Scheme>& w, matrix_view<const float> x, std::size_t b_begin, std::size_t b_end,
                     const gemm_output& out) {
  const bsr_structure& s = w.structure();
  const quantized_view<Scheme> values = w.reference_values().view();
  const std::size_t br = s.block_rows, bc = s.block_cols, g = w.group_size();
  for (std::size_t b = b_begin; b < b_end; ++b)
    for (std::size_t r = 0; r < br; ++r)
      for (std::size_t i = 0; i < x.rows; ++i) {
        float sum = 0.0f;
        for (std::size_t block = s.row_ptr[b]; block < s.row_ptr[b + 1]; ++block)
          for (std::size_t k0 = 0; k0 < bc; k0 += g) {
            float group = 0.0f;
            for (std::size_t k = k0; k < k0 + g; ++k)
              group += x(i, s.col_idx[block] * bc + k) * reference::dequantize_element(values, block * br + r, k);
            sum += group;
          }
        const std::size_t n = b * br + r;
        out.y[i * out.ld + n] = sum + (out.bias ? out.bias[n] : 0.0f);
      }
}
}  // namespace detail

/// y = x · Wᵀ + options.bias, x M x K fp32, W N x K block-sparse; shapes are checked as for dense
/// matrices. compute::int8 (W8A8 / W4A8, integer-valued formats) runs on vectorized() matrices:
/// x quantized per row to int8 as for the dense GEMM, the integer kernel reading it block by block.
template <class Scheme, class Executor = serial_executor>
void gemm(matrix_view<const float> x, const bsr_matrix<Scheme>& w, matrix_view<float> y,
          const gemm_options& options = {}, Executor&& exec = Executor{}, isa path = best_isa()) {
  const bsr_structure& s = w.structure();
  LOWBIT_CHECK(s.block_row_count() > 0, "gemm: w is empty (default-constructed bsr_matrix)");
  detail::check_gemm_shapes(x, y, w.rows(), w.cols(), path);
  const std::size_t br = s.block_rows;
  // Block row by block row over the executor: the kernel on its blocks, or the bias alone.
  const auto for_block_rows = [&](auto&& kernel) {
    exec(s.block_row_count(), [&](std::size_t b_begin, std::size_t b_end) {
      for (std::size_t b = b_begin; b < b_end; ++b) {
        const gemm_output rows{y.data + b * br, y.ld, br, options.bias ? options.bias + b * br : nullptr};
        if (s.row_ptr[b + 1] == s.row_ptr[b]) {
          rows.start(x.rows, 0, br);
          continue;
        }
        const block_columns columns{s.col_idx.data() + s.row_ptr[b], s.block_cols, x.cols};
        dispatch(path, [&](auto tag) { kernel(decltype(tag){}, w.block_row(b), rows, columns); });
      }
    });
  };
  if (options.mode == compute::int8) {
    if constexpr (!has_integer_path<typename Scheme::format>) {
      raise_error(std::string("gemm: compute::int8 needs integer-valued weights; ") +
                  format_traits<typename Scheme::format>::name + " is not (use compute::weight_only)");
    } else {
      LOWBIT_CHECK(w.vectorized(), "gemm: compute::int8 on block-sparse matrices needs a vectorized block shape "
                                   "(BR a multiple of 16, groups of whole lanes), not "
                                       << br << " x " << s.block_cols << " with group_size=" << w.group_size());
      thread_local int8_activations reused;  // this thread's; the workers get a reference to it
      int8_activations& activations = reused;
      activations.quantize(x, w.group_size(), options.channel_scales, exec);
      for_block_rows([&](auto tag, const auto& panels, const gemm_output& rows, const block_columns& columns) {
        detail::gemm_int8<decltype(tag)>(panels, activations, rows, serial_executor{}, columns);
      });
    }
    return;
  }
  LOWBIT_CHECK(options.channel_scales == nullptr, "gemm: channel_scales are for compute::int8");
  if (!w.vectorized()) {
    const gemm_output out{y.data, y.ld, y.cols, options.bias};
    exec(s.block_row_count(), [&](std::size_t b_begin, std::size_t b_end) { detail::gemm_bsr_scalar(w, x, b_begin, b_end, out); });
    return;
  }
  for_block_rows([&](auto tag, const auto& panels, const gemm_output& rows, const block_columns& columns) {
    detail::gemm_float<decltype(tag)>(panels, x, rows, serial_executor{}, columns);
  });
}

}  // namespace lowbit
