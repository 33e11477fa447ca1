/// \file
/// \brief bf16 output for every GEMM: y = x · Wᵀ + bias written as lowbit::bf16, for dense panel
/// matrices, 2:4 and BSR matrices, fp32 or bf16 activations, weight-only or compute::int8.
///
///   std::vector<lowbit::bf16> y(m * n);
///   lowbit::gemm(xv, packed, lowbit::matrix_view<lowbit::bf16>(y.data(), m, n), {bias}, pool);
///
/// The kernels accumulate in fp32 and add K blocks into y, so the result is made in fp32 (a
/// per-thread M x N buffer, reused across calls) and then rounded to nearest even: y is exactly
/// bf16(the fp32 GEMM's y), on every path.
#pragma once

#include <cstddef>
#include <utility>

#include "../core/aligned.hpp"
#include "../core/half.hpp"
#include "../core/parallel.hpp"
#include "../core/views.hpp"
#include "gemm.hpp"

namespace lowbit {

namespace detail {
template <class Act, class Weights, class Executor>
void gemm_to_bf16(matrix_view<const Act> x, const Weights& w, matrix_view<bf16> y, const gemm_options& options,
                  Executor&& exec, isa path) {
  y.validate("gemm: y");
  thread_local aligned_buffer<float> result;  // reused across calls on this thread
  if (result.size() < y.rows * y.cols) result = aligned_buffer<float>(y.rows * y.cols);
  float* const r = result.data();  // the workers below see the caller's buffer
  gemm(x, w, matrix_view<float>(r, y.rows, y.cols), options, exec, path);
  exec(y.rows, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i)
      for (std::size_t j = 0; j < y.cols; ++j) y(i, j) = bf16(r[i * y.cols + j]);
  });
}
}  // namespace detail

/// y (M x N, bf16) = x · Wᵀ + options.bias; W any matrix gemm takes (panel_matrix, sparse24_matrix,
/// bsr_matrix). Errors as for the fp32-output gemm.
template <class Weights, class Executor = serial_executor>
void gemm(matrix_view<const float> x, const Weights& w, matrix_view<bf16> y, const gemm_options& options = {},
          Executor&& exec = Executor{}, isa path = best_isa()) {
  detail::gemm_to_bf16(x, w, y, options, exec, path);
}

/// The same with bf16 activations (dense panel matrices: see gemm.hpp).
template <class Weights, class Executor = serial_executor>
void gemm(matrix_view<const bf16> x, const Weights& w, matrix_view<bf16> y, const gemm_options& options = {},
          Executor&& exec = Executor{}, isa path = best_isa()) {
  detail::gemm_to_bf16(x, w, y, options, exec, path);
}

}  // namespace lowbit
