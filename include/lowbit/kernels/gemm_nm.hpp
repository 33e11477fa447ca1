/// \file
/// \brief y = x · Wᵀ (+ bias) for N:M-sparse W (sparse/nm_matrix.hpp: 4:8, 1:4, 2:8, 8:16, 2:4, ...),
/// weight-only, x fp32.
///
///   auto w = lowbit::prune_and_quantize_nm<Scheme>(weights, n, k, k, 4, 8, norms, {64});
///   lowbit::gemm(x, w, y, {bias}, pool);
///
/// M <= 4: the dense small-M loop on the kept values, each lane picking its x column out of the
/// group's M by a permute (simd/gemm_nm.hpp; 4:8 at M = 1 with values exact in bf16, on AVX-512
/// BF16: gemm_nm48_bf16_m1, bf16 products, the bf16 pair kernel's accuracy); larger M: the 2:4
/// tile loop on the decoded kept values. Either way N / M of the dense FMAs and of the value
/// bytes. Accuracy: fp32 accumulation of the same per-group sums as the dense kernel, against
/// reference::gemm on nm_to_dense(w).
#pragma once

#include <cstddef>
#include <type_traits>

#include "../sparse/nm_matrix.hpp"
#include "gemm.hpp"
#include "simd/gemm_nm.hpp"

namespace lowbit {

namespace detail {

/// The scalar path's view of the positions (gemm_float_scalar's Columns).
struct nm_columns {
  static constexpr bool sparse = true;
  const nm_positions* w;
  std::size_t x_column(std::size_t p, std::size_t i, std::size_t j) const noexcept { return w->column(p * 16 + i, j); }
};

/// Scalar path of the plain kinds: two interleaved sums per row, as the SIMD kernels.
template <class T>
void gemm_nm_plain_scalar(const nm_plain<T>& w, matrix_view<const float> x, std::size_t p_begin, std::size_t p_end,
                          const gemm_output& out) noexcept {
  for (std::size_t n = p_begin * 16; n < std::min(out.n, p_end * 16); ++n)
    for (std::size_t i = 0; i < x.rows; ++i) {
      float sum[2] = {0.0f, 0.0f};
      for (std::size_t j = 0; j < w.kept_cols(); ++j) {
        const std::size_t column = w.column(n, j);
        if (column < x.cols) sum[j % 2] += x(i, column) * plain_to_float(w.value(n, j));
      }
      out.y[i * out.ld + n] = sum[0] + sum[1] + (out.bias ? out.bias[n] : 0.0f);
    }
}

template <class Tag, class Matrix, std::size_t M, class Executor>
void gemm_nm_simd(const Matrix& w, matrix_view<const float> x, const gemm_output& out, Executor&& exec) {
#if defined(LOWBIT_COMPILED_SSE42)
  constexpr std::size_t V = 16 / simd::ops<Tag>::lanes;
  constexpr std::size_t P1 = V >= 4 ? 1 : 4 / V, P2 = V >= 2 ? 1 : 2;
  const std::size_t m = x.rows, panels = w.panels();
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
  using Scheme = typename Matrix::scheme_type;
  if constexpr (std::is_same<Tag, arch::avx512_vnni_tag>::value && M == 8 && !is_plain_value<Scheme>::value) {
    if constexpr (format_traits<typename Scheme::format>::bits == 4 && !Scheme::has_zero) {
      if (m == 1 && w.n() == 4 && simd::bf16_codes<Scheme>().usable) {  // 4:8 decode on bf16 products
        const std::size_t chunks = w.values().chunks();
        uint32_t* tables = bf16_pairs_buffer(chunks * 64);
        simd::split_x_bf16_word_tables(x.data, x.cols, chunks, tables);
        for_panels(exec, panels, 4, [&](std::size_t b, std::size_t e) { simd::gemm_nm48_bf16_m1<Scheme, 4>(w, tables, b, e, out); });
        return;
      }
    }
  }
#endif
  if (m <= 4) {  // decode: all rows in one pass over W
    for_panels(exec, panels, m == 1 ? P1 : P2, [&](std::size_t b, std::size_t e) {
      if (m == 1) {
        simd::gemm_nm_small_m<Tag, Matrix, M, 1, P1>(w, x.data, x.ld, 1, b, e, out);
      } else if (m == 2) {
        simd::gemm_nm_small_m<Tag, Matrix, M, 2, P2>(w, x.data, x.ld, 2, b, e, out);
      } else {
        simd::gemm_nm_small_m<Tag, Matrix, M, 4, P2>(w, x.data, x.ld, m, b, e, out);
      }
    });
  } else {
    const simd::sparse24_packed_x packed = simd::pack_x_transposed<Tag>(x.data, x.ld, m, x.cols);
    for_panels(exec, panels, 1, [&](std::size_t b, std::size_t e) { simd::gemm_nm_tiled<Tag, Matrix, M>(w, packed, m, b, e, out); });
  }
#else
  (void)w, (void)x, (void)out, (void)exec;
#endif
}

}  // namespace detail

/// y = x · Wᵀ + options.bias, x M x K fp32, W N x K N:M-sparse with quantized or plain (fp32,
/// bf16) kept values; shapes are checked as for dense matrices. compute::int8 is refused (use
/// the 2:4 kernels for patterns that fit them: prune/prune_nm24.hpp).
template <class Scheme, class Executor = serial_executor>
void gemm(matrix_view<const float> x, const nm_matrix<Scheme>& w, matrix_view<float> y, const gemm_options& options = {},
          Executor&& exec = Executor{}, isa path = best_isa()) {
  LOWBIT_CHECK(w.panels() > 0, "gemm: w is empty (default-constructed)");
  detail::check_gemm_shapes(x, y, w.rows(), w.cols(), path);
  LOWBIT_CHECK(options.mode == compute::weight_only, "gemm: N:M weights run weight-only (compute::int8 is not implemented)");
  LOWBIT_CHECK(options.channel_scales == nullptr, "gemm: channel_scales are for compute::int8");
  const gemm_output out{y.data, y.ld, y.cols, options.bias};
  dispatch(path, [&](auto tag) {
    using Tag = decltype(tag);
    if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
      detail::for_panels(exec, w.panels(), 1, [&](std::size_t b, std::size_t e) {
        if constexpr (is_plain_value<Scheme>::value) {
          detail::gemm_nm_plain_scalar(w, x, b, e, out);
        } else {
          detail::gemm_float_scalar(w.values(), x, b, e, out, detail::nm_columns{&w});
        }
      });
    } else if (w.m() == 4) {
      detail::gemm_nm_simd<Tag, nm_matrix<Scheme>, 4>(w, x, out, exec);
    } else if (w.m() == 8) {
      detail::gemm_nm_simd<Tag, nm_matrix<Scheme>, 8>(w, x, out, exec);
    } else {
      detail::gemm_nm_simd<Tag, nm_matrix<Scheme>, 16>(w, x, out, exec);
    }
  });
}

}  // namespace lowbit
