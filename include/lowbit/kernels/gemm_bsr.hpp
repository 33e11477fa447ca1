/// \file
/// \brief y = x · Wᵀ (+ bias) for block-sparse W (sparse/bsr_matrix.hpp), weight-only.
///
///   auto w = lowbit::prune_and_quantize_blocks<Scheme>(weights, n, k, k, 32, 32, 0.25, {32});
///   lowbit::gemm(x, w, y, {bias}, pool);
///
/// When w.vectorized() (BR a multiple of 16, groups of whole lanes), each block row runs the dense
/// kernels of kernels/gemm.hpp on its blocks side by side, x read block by block (block_columns):
/// the work and the bytes are the stored blocks'. Other block shapes (1 x 16, 4 x 4, ...) run
/// kernels/gemm_bsr_rows.hpp: a block row's blocks dequantized into a scratch, then tokens in the
/// lanes (M of a vector or more) or blocks times x's columns. Same accuracy contract as the dense weight-only GEMM,
/// against reference::gemm on bsr_to_dense.
#pragma once

#include <cstddef>

#include "../sparse/bsr_matrix.hpp"
#include "gemm.hpp"
#include "gemm_bsr_rows.hpp"

namespace lowbit {

/// y = x · Wᵀ + options.bias, x M x K fp32, W N x K block-sparse; shapes are checked as for dense
/// matrices. compute::int8 (W8A8 / W4A8, integer-valued formats): x quantized per row to int8 as
/// for the dense GEMM, the integer kernel reading it block by block (any block shape).
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
  // Block shapes the panels do not take: the row kernels (gemm_bsr_rows.hpp) over the executor.
  const auto for_row_kernel = [&](auto&& kernel) {
    const detail::bsr_rows_output out{y.data, y.ld, options.bias};
    exec(s.block_row_count(), [&](std::size_t b_begin, std::size_t b_end) {
      dispatch(path, [&](auto tag) { kernel(tag, w.reference_values().view(), b_begin, b_end, out); });
    });
  };
  if (options.mode == compute::int8) {
    if constexpr (!has_integer_path<typename Scheme::format>) {
      raise_error(std::string("gemm: compute::int8 needs integer-valued weights; ") +
                  format_traits<typename Scheme::format>::name + " is not (use compute::weight_only)");
    } else {
      thread_local int8_activations reused;  // this thread's; the workers get a reference to it
      int8_activations& activations = reused;
      activations.quantize(x, w.group_size(), options.channel_scales, exec);
      if (!w.vectorized()) {
        // The row kernels run on x's int8 codes as floats (exact), y = (codes · Wᵀ) * scale + bias:
        // their decoded weights (decode(c) - decode(z)) * scale are (u8(c) - u8(z)) * (unit * scale)
        // rounded once, as the integer definition's are.
        thread_local aligned_buffer<float> codes, scales;
        if (codes.size() < x.rows * x.cols) codes = aligned_buffer<float>(x.rows * x.cols);
        if (scales.size() < x.rows) scales = aligned_buffer<float>(x.rows);
        for (std::size_t t = 0; t < x.rows; ++t) {
          const int8_t* q = activations.row(t);
          for (std::size_t k = 0; k < x.cols; ++k) codes[t * x.cols + k] = q[k];
          scales[t] = activations.scale(t);
        }
        const matrix_view<const float> xq(codes.data(), x.rows, x.cols);
        const float* token_scales = scales.data();
        for_row_kernel([&](auto tag, const auto& values, std::size_t b_begin, std::size_t b_end, const auto& out) {
          detail::gemm_bsr_rows<decltype(tag)>(s, values, xq, token_scales, b_begin, b_end, out);
        });
        return;
      }
      for_block_rows([&](auto tag, const auto& panels, const gemm_output& rows, const block_columns& columns) {
        detail::gemm_int8<decltype(tag)>(panels, activations, rows, serial_executor{}, columns);
      });
    }
    return;
  }
  LOWBIT_CHECK(options.channel_scales == nullptr, "gemm: channel_scales are for compute::int8");
  if (!w.vectorized()) {
    for_row_kernel([&](auto tag, const auto& values, std::size_t b_begin, std::size_t b_end, const auto& out) {
      detail::gemm_bsr_rows<decltype(tag)>(s, values, x, nullptr, b_begin, b_end, out);
    });
    return;
  }
  for_block_rows([&](auto tag, const auto& panels, const gemm_output& rows, const block_columns& columns) {
    detail::gemm_float<decltype(tag)>(panels, x, rows, serial_executor{}, columns);
  });
}

}  // namespace lowbit
