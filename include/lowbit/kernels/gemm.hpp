/// \file
/// \brief Quantized GEMM / GEMV, the public entry points: y = x · Wᵀ (+ bias) for a weight matrix
/// W (N x K) prepacked in the panel layout (pack_panels), x (M x K) and y (M x N) row-major fp32.
///
///   auto w = lowbit::pack_panels(lowbit::quantize<Scheme>(weights, n, k, {.group_size = 128}).view());
///   lowbit::gemm(x, w, y);                                  weight-only: fp32 activations
///   lowbit::gemm(x, w, y, {bias, lowbit::compute::int8});   W8A8 / W4A8: dynamic int8 activations
///   lowbit::gemm(x, w, y, opts, pool, lowbit::isa::avx2);   over an executor, on a forced path
///   lowbit::gemm(x_bf16, w, y);                             bf16 activations (vdpbf16ps)
///
/// Weight-only: every format and scheme. The kernels decode the weights in registers (M <= 4) or
/// into an L1 tile (larger M), never into a full copy, and accumulate in fp32. Tolerance against
/// reference::gemm: |y - y_ref| <= 1e-5 * sum_k |x w| (fp32 sums of up to 64K terms in blocks).
/// On the avx512_vnni path, M <= 4 and 4-bit formats whose values are exact in bf16 (int4, uint4,
/// FP4, IQ4_NL, MXINT4, MXFP4) run on vdpbf16ps with x split into two bf16 parts (16 significant
/// bits: up to 2^-16 * sum_k |x w| more; simd/gemm_bf16_pairs.hpp); force isa::avx512 for the
/// plain fp32 kernel.
///
/// compute::int8: formats whose values are integers times a unit (has_integer_path: int4, uint4,
/// int8, uint8, mxint4, mxint8, IQ4_NL, FP4 E2M1). x is quantized per row to int8 (optionally
/// divided by SmoothQuant's per-channel scales first), products are accumulated in int32
/// (AVX-512 VNNI vpdpbusd; vpmaddubsw elsewhere), each group's dot product (or each piece of it,
/// per K block of 1024 columns) exact; the float steps give |y - reference::gemm_int8| <= 1e-5 *
/// sum_k |q_k w_k| (scales included).
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "../arch/dispatch.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../core/views.hpp"
#include "../layout/panel.hpp"
#include "../quant/activations.hpp"
#include "integer_weights.hpp"
#include "simd/gemm_bf16_pairs.hpp"
#include "simd/gemm_float.hpp"
#include "simd/gemm_int8.hpp"
#include "simd/gemm_int8_vnni.hpp"
#include "simd/gemm_sparse24.hpp"

namespace lowbit {

/// What the GEMM computes with.
enum class compute {
  weight_only,  ///< fp32 activations times the decoded weights, fp32 accumulation
  int8,         ///< dynamic per-row int8 activations, int32 accumulation (integer formats only)
};

struct gemm_options {
  const float* bias = nullptr;            ///< N values added to every row of y, or null
  compute mode = compute::weight_only;
  const float* channel_scales = nullptr;  ///< compute::int8: x[:, k] is divided by channel_scales[k]
};

namespace detail {

/// Element value (decode(code) - decode(zero)) * scale of row i of panel p, column k.
template <class Scheme>
float panel_element(const panel_matrix<Scheme>& w, std::size_t p, std::size_t i, std::size_t k) noexcept {
  using traits = format_traits<typename Scheme::format>;
  constexpr std::size_t L = panel_matrix<Scheme>::lane_elements;
  std::size_t byte;
  unsigned shift;
  panel_matrix<Scheme>::locate(i, k, byte, shift);
  const uint8_t code = static_cast<uint8_t>((w.chunk(p, k / L)[byte] >> shift) & ((1u << Scheme::bits) - 1u));
  const std::size_t g = k / w.shape().group_size;
  float v = traits::decode(code);
  if (Scheme::has_zero) v = v - traits::decode(w.zeros(p, g)[i]);
  return v * scale_traits<typename Scheme::scale_type>::to_float(w.scales(p, g)[i]);
}

template <class Scheme>
uint8_t panel_code(const panel_matrix<Scheme>& w, std::size_t p, std::size_t i, std::size_t k) noexcept {
  std::size_t byte;
  unsigned shift;
  panel_matrix<Scheme>::locate(i, k, byte, shift);
  return static_cast<uint8_t>((w.chunk(p, k / panel_matrix<Scheme>::lane_elements)[byte] >> shift) &
                              ((1u << Scheme::bits) - 1u));
}

/// Scalar path: plain loops, the same sums per group as the SIMD kernels.
template <class Scheme, class Columns = dense_columns>
void gemm_float_scalar(const panel_matrix<Scheme>& w, matrix_view<const float> x, std::size_t p_begin,
                       std::size_t p_end, const gemm_output& out, const Columns& columns = {}) noexcept {
  const std::size_t k_total = w.shape().cols, group_size = w.shape().group_size;
  for (std::size_t n = p_begin * 16; n < std::min(out.n, p_end * 16); ++n)
    for (std::size_t i = 0; i < x.rows; ++i) {
      float sum = 0.0f;
      for (std::size_t k0 = 0; k0 < k_total; k0 += group_size) {
        float group = 0.0f;
        for (std::size_t k = k0; k < std::min(k_total, k0 + group_size); ++k) {
          const std::size_t column = columns.x_column(n / 16, n % 16, k);  // past x.cols: a zero of the padding
          if (column < x.cols) group += x(i, column) * panel_element(w, n / 16, n % 16, k);
        }
        sum += group;
      }
      out.y[i * out.ld + n] = sum + (out.bias ? out.bias[n] : 0.0f);
    }
}

template <class Scheme, class Columns = dense_columns>
void gemm_int8_scalar(const panel_matrix<Scheme>& w, const int8_activations& a, std::size_t p_begin,
                      std::size_t p_end, const gemm_output& out, const Columns& columns = {}) noexcept {
  using format = typename Scheme::format;
  constexpr detail::integer_code_map map = integer_codes<format>::value;
  const std::size_t k_total = w.shape().cols, group_size = w.shape().group_size;
  for (std::size_t n = p_begin * 16; n < std::min(out.n, p_end * 16); ++n) {
    const std::size_t p = n / 16, r = n % 16;
    for (std::size_t i = 0; i < a.rows(); ++i) {
      float sum = 0.0f;
      for (std::size_t g = 0; g * group_size < k_total; ++g) {
        int32_t dot = 0, x_sum = 0;  // x_sum: the activations this row's group meets (2:4: per row)
        for (std::size_t k = g * group_size; k < std::min(k_total, (g + 1) * group_size); ++k) {
          const int32_t xq = a.row(i)[columns.x_column(p, r, k)];
          dot += int32_t(map.u8[panel_code(w, p, r, k)]) * xq;
          x_sum += xq;
        }
        const int32_t zero = Scheme::has_zero ? map.u8[w.zeros(p, g)[r]] : map.offset;
        const float scale = scale_traits<typename Scheme::scale_type>::to_float(w.scales(p, g)[r]) * map.unit;
        sum += static_cast<float>(dot - zero * x_sum) * scale;
      }
      out.y[i * out.ld + n] = sum * a.scale(i) + (out.bias ? out.bias[n] : 0.0f);
    }
  }
}

/// Splits the panels over the executor in steps of `step` panels and calls f(p_begin, p_end).
template <class Executor, class F>
void for_panels(Executor&& exec, std::size_t panels, std::size_t step, F&& f) {
  exec((panels + step - 1) / step, [&](std::size_t begin, std::size_t end) {
    f(begin * step, std::min(panels, end * step));
  });
}

#if defined(LOWBIT_COMPILED_AVX512_VNNI)
/// M <= 4 on the bf16 pair kernel (simd/gemm_bf16_pairs.hpp), x already in pair order; HasLo:
/// x has lo parts (fp32 x).
/// M = 1 takes 4 panels at a time: 8 ran 3% faster with the matrix in L3 but 14% slower streamed
/// from memory (4096x14336 int4 on Zen 4: 1441 -> 1640 us), 8 streams being too many to keep fed.
template <bool HasLo, class Scheme, class Executor, class Columns = dense_columns>
void gemm_bf16_pairs(const panel_matrix<Scheme>& w, const simd::bf16_pairs_x& x, std::size_t m,
                     const gemm_output& out, Executor&& exec, const Columns& columns = {}) {
  for_panels(exec, w.panels(), m == 1 ? 4 : 2, [&](std::size_t b, std::size_t e) {
    if (m == 1) {
      simd::gemm_bf16_pairs_small_m<Scheme, 1, 4, HasLo>(w, x, 1, b, e, out, columns);
    } else if (m == 2) {
      simd::gemm_bf16_pairs_small_m<Scheme, 2, 2, HasLo>(w, x, 2, b, e, out, columns);
    } else {
      simd::gemm_bf16_pairs_small_m<Scheme, 4, 2, HasLo>(w, x, m, b, e, out, columns);
    }
  });
}

/// The calling thread's buffer for x in pair order, at least `words` 32-bit words (reused).
inline uint32_t* bf16_pairs_buffer(std::size_t words) {
  thread_local aligned_buffer<uint32_t> buffer;
  if (buffer.size() < words) buffer = aligned_buffer<uint32_t>(words);
  return buffer.data();
}
#endif

/// Weight-only GEMM over the panels of w; Columns maps their stored columns to x's (dense_columns,
/// sparse24_columns, block_columns in simd/gemm_float.hpp).
template <class Tag, class Scheme, class Executor, class Columns = dense_columns>
void gemm_float(const panel_matrix<Scheme>& w, matrix_view<const float> x, const gemm_output& out, Executor&& exec,
                const Columns& columns = {}) {
  const std::size_t panels = w.panels();
  [[maybe_unused]] const std::size_t m = x.rows;  // the SIMD paths' (a scalar-only build has none)
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for_panels(exec, panels, 1, [&](std::size_t b, std::size_t e) { gemm_float_scalar(w, x, b, e, out, columns); });
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    constexpr std::size_t V = 16 / simd::ops<Tag>::lanes;
    // M = 1 on AVX-512, 4-bit codes, dense columns: 8 panels at a time, each x broadcast serving
    // more of them. On Zen 4, 4096x4096 in L3: NF4 526 -> 496 us; streamed from memory (4096x14336):
    // SF4 1940 -> 1864 us, int4 on this kernel 1929 -> 1836; int8 and zero points gain nothing, 2:4
    // columns lose (nf4 430 -> 447 us).
    constexpr bool eight = V == 1 && Scheme::bits == 4 && std::is_same<Columns, dense_columns>::value;
    constexpr std::size_t P1 = eight ? 8 : (V >= 4 ? 1 : 4 / V);
    constexpr std::size_t P2 = V >= 2 ? 1 : 2;
    if (m <= 4) {
      // Decode: all rows in one pass over W, register blocks of 1, 2 or 4 rows.
      const std::size_t step = m == 1 ? P1 : P2;
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
      if constexpr (std::is_same<Tag, arch::avx512_vnni_tag>::value && !std::is_same<Columns, block_columns>::value) {
        if (simd::bf16_codes<Scheme>().usable) {
          // x split into bf16 hi + lo parts once: dense, 32 bits a column in pair order; 2:4, the
          // pair tables (64 32-bit words per chunk of 16 columns).
          const std::size_t chunks = w.chunks(), per_chunk = Columns::sparse ? 64 : 8;
          uint32_t* pairs = bf16_pairs_buffer(m * chunks * per_chunk);
          if constexpr (Columns::sparse) {
            simd::split_x_bf16_tables(x.data, x.ld, m, columns.x_cols, chunks, pairs);
          } else {
            simd::split_x_bf16_pairs(x.data, x.ld, m, x.cols, chunks, pairs);
          }
          gemm_bf16_pairs<true>(w, simd::bf16_pairs_x{pairs, chunks * per_chunk}, m, out, exec, columns);
          return;
        }
      }
#endif
      for_panels(exec, panels, step, [&](std::size_t b, std::size_t e) {
        if (m == 1) {
          simd::gemm_float_small_m<Tag, Scheme, 1, P1>(w, x.data, x.ld, 1, b, e, out, columns);
        } else if (m == 2) {
          simd::gemm_float_small_m<Tag, Scheme, 2, P2>(w, x.data, x.ld, 2, b, e, out, columns);
        } else {
          simd::gemm_float_small_m<Tag, Scheme, 4, P2>(w, x.data, x.ld, m, b, e, out, columns);
        }
      });
    } else {
      if constexpr (Columns::sparse) {
        const simd::sparse24_packed_x packed = simd::pack_x_transposed<Tag>(x.data, x.ld, m, columns.x_cols);
        for_panels(exec, panels, 1, [&](std::size_t b, std::size_t e) {
          simd::gemm_sparse24_tiled<Tag>(w, columns, packed, m, b, e, out);
        });
      } else {
        for_panels(exec, panels, simd::float_tile_shape<Tag>::block_panels, [&](std::size_t b, std::size_t e) {
          simd::gemm_float_tiled<Tag, Scheme, float>(w, x.data, x.ld, m, b, e, out, columns);
        });
      }
    }
#endif
  }
}

template <class Tag, class Scheme, class Executor, class Columns = dense_columns>
void gemm_int8(const panel_matrix<Scheme>& w, const int8_activations& a, const gemm_output& out, Executor&& exec,
               const Columns& columns = {}) {
  const std::size_t panels = w.panels();
  [[maybe_unused]] const std::size_t m = a.rows();  // the SIMD paths' (a scalar-only build has none)
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for_panels(exec, panels, 1, [&](std::size_t b, std::size_t e) { gemm_int8_scalar(w, a, b, e, out, columns); });
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using shape = simd::int8_tile_shape<Tag>;
    constexpr std::size_t lanes = simd::ops<Tag>::lanes, MR = shape::mr, P = shape::panels;
    constexpr std::size_t P1 = lanes == 16 ? 4 : (lanes == 8 ? 2 : 1);
    // K in blocks of whole chunks (~1024 columns): a block of W (P panels, 16-32 KiB) and of x
    // (MR rows, 6 KiB) stay in L1 while every row block / panel step meets them.
    constexpr std::size_t L = Scheme::bits == 4 ? 8 : 4, block_chunks = 1024 / L;
    const std::size_t chunks = w.chunks();
    const auto set_bias = [&](std::size_t p_begin, std::size_t p_end) {
      out.start(m, p_begin * 16, std::min(out.n, p_end * 16));
    };
#if defined(LOWBIT_HAVE_VNNI_TILE_KERNEL)
    // Many rows on VNNI: x packed once, weights decoded once per tile, a 6 x 64 register block
    // (simd/gemm_int8_vnni.hpp).
    // 2:4 kept values whose integer values are signed bytes too (all but uint8 with zero points):
    // a tile of values and per-row pshufb indices that pick each row's kept activations
    // (decode_tile_sparse24), x packed 8 columns a step.
    constexpr bool sparse_tile = Columns::sparse && simd::vnni::sparse24_tile_fits<Scheme>();
    if constexpr (Tag::level == isa::avx512_vnni && (std::is_same<Columns, dense_columns>::value || sparse_tile)) {
      if (m >= simd::vnni::min_rows) {
        // x packed once per call (reused: no allocation once large enough). 2:4: a step is 4 kept
        // values (8 x columns), the groups count kept values.
        thread_local simd::vnni::packed_x packed_storage;
        simd::vnni::packed_x& packed = packed_storage;
        const std::size_t row_blocks = (m + simd::vnni::mr - 1) / simd::vnni::mr;
        if constexpr (Columns::sparse) {
          simd::vnni::prepare(packed, m, simd::vnni::total_steps(w), w.shape().group_size, w.shape().groups_per_row(), 8,
                              simd::vnni::sparse24_steps);
          exec(row_blocks, [&](std::size_t b, std::size_t e) { simd::vnni::pack_rows_sparse24(a, b, e, packed); });
        } else {
          simd::vnni::prepare(packed, m, simd::vnni::total_steps(w), w.shape().group_size, w.shape().groups_per_row());
          exec(row_blocks, [&](std::size_t b, std::size_t e) {
            simd::vnni::pack_rows(a, simd::vnni::start_multiplier<Scheme>(), b, e, packed);
          });
        }
        for_panels(exec, panels, simd::vnni::panels,
                   [&](std::size_t b, std::size_t e) { simd::gemm_int8_vnni(w, a, packed, b, e, out, columns); });
        return;
      }
    }
#endif
    if (m < MR) {
      // Few rows: one row at a time over wider steps of panels (the step stays in L1 between rows).
      for_panels(exec, panels, P1, [&](std::size_t b, std::size_t e) {
        set_bias(b, e);
        for (std::size_t p0 = b; p0 < e; p0 += P1)
          for (std::size_t i = 0; i < m; ++i)
            simd::gemm_int8_block<Tag, Scheme, 1, P1>(w, a, i, p0, std::min(e, p0 + P1), 0, chunks, out, columns);
      });
    } else {
      // Groups of 8 panels: their K block of W (64-128 KiB) stays in L2, and each block of x rows
      // (MR x 1024 bytes, L1) is used by all 8 panels before the next one is fetched.
      constexpr std::size_t group_panels = 8;
      for_panels(exec, panels, P, [&](std::size_t b, std::size_t e) {
        set_bias(b, e);
        for (std::size_t g0 = b; g0 < e; g0 += group_panels) {
          const std::size_t g1 = std::min(e, g0 + group_panels);
          for (std::size_t c0 = 0; c0 < chunks; c0 += block_chunks)
            for (std::size_t i = 0; i < m; i += MR)
              for (std::size_t p0 = g0; p0 < g1; p0 += P)
                simd::gemm_int8_block<Tag, Scheme, MR, P>(w, a, i, p0, std::min(g1, p0 + P), c0,
                                                          std::min(chunks, c0 + block_chunks), out, columns);
        }
      });
    }
#endif
  }
}

/// Checks x (M x K), y (M x N) and the path against a weight matrix of N x K.
template <class Act>
void check_gemm_shapes(const matrix_view<const Act>& x, const matrix_view<float>& y, std::size_t n, std::size_t k,
                       isa path) {
  x.validate("gemm: x");
  y.validate("gemm: y");
  LOWBIT_CHECK(x.cols == k, "gemm: x has " << x.cols << " columns but w has K=" << k);
  LOWBIT_CHECK(y.rows == x.rows, "gemm: y has " << y.rows << " rows but x has M=" << x.rows);
  LOWBIT_CHECK(y.cols == n, "gemm: y has " << y.cols << " columns but w has N=" << n);
  LOWBIT_CHECK(isa_supported(path), "gemm: the " << isa_name(path) << " path is not available here (compiled: "
                                                 << (isa_compiled(path) ? "yes" : "no")
                                                 << ", cpu: " << (cpu_has(path) ? "yes" : "no") << ")");
}

/// The same for panels; w_cols: the K that x meets when it is not the panels' (2:4: 2x theirs).
template <class Scheme, class Act>
void check_gemm(const matrix_view<const Act>& x, const panel_matrix<Scheme>& w, const matrix_view<float>& y,
                isa path, std::size_t w_cols = 0) {
  LOWBIT_CHECK(w.panels() > 0, "gemm: w is empty (default-constructed)");
  check_gemm_shapes(x, y, w.shape().rows, w_cols ? w_cols : w.shape().cols, path);
}

}  // namespace detail

/// y = x · Wᵀ + bias on int8 activations already quantized (int8_activations::quantize with
/// w's group size): engines that reuse one quantized x for several matrices (Q, K, V) call this.
template <class Scheme, class Executor = serial_executor>
void gemm(const int8_activations& a, const panel_matrix<Scheme>& w, matrix_view<float> y, const float* bias = nullptr,
          Executor&& exec = Executor{}, isa path = best_isa()) {
  using format = typename Scheme::format;
  if constexpr (!has_integer_path<format>) {
    raise_error(std::string("gemm: compute::int8 needs integer-valued weights; ") + format_traits<format>::name +
                " is not (use compute::weight_only)");
  } else {
    LOWBIT_CHECK(a.rows() > 0, "gemm: the int8 activations are empty (call quantize first)");
    const matrix_view<const float> shape_of_x(reinterpret_cast<const float*>(a.row(0)), a.rows(), a.cols());
    detail::check_gemm(shape_of_x, w, y, path);
    LOWBIT_CHECK(a.group_size() == w.shape().group_size,
                 "gemm: activations were quantized with group_size=" << a.group_size() << " but w has "
                                                                      << w.shape().group_size);
    LOWBIT_CHECK(w.shape().group_size <= 65536, "gemm: compute::int8 accumulates a group in int32; group_size="
                                                    << w.shape().group_size << " exceeds 65536 (use smaller groups)");
    const gemm_output out{y.data, y.ld, y.cols, bias};
    dispatch(path, [&](auto tag) { detail::gemm_int8<decltype(tag)>(w, a, out, exec); });
  }
}

/// y = x · Wᵀ + options.bias (see the file comment). Throws lowbit::error for shapes that do not
/// match (x: M x K, w: N x K, y: M x N), null or overlapping-ld views, a path not available here,
/// or compute::int8 with weights that are not integer-valued.
template <class Scheme, class Executor = serial_executor>
void gemm(matrix_view<const float> x, const panel_matrix<Scheme>& w, matrix_view<float> y,
          const gemm_options& options = {}, Executor&& exec = Executor{}, isa path = best_isa()) {
  detail::check_gemm(x, w, y, path);
  if (options.mode == compute::int8) {
    LOWBIT_CHECK(has_integer_path<typename Scheme::format>,
                 "gemm: compute::int8 needs integer-valued weights; " << format_traits<typename Scheme::format>::name
                                                                       << " is not (use compute::weight_only)");
    // Reused across calls on this thread: no allocation once it is large enough.
    thread_local int8_activations activations;
    activations.quantize(x, w.shape().group_size, options.channel_scales, exec);
    gemm(activations, w, y, options.bias, exec, path);
    return;
  }
  LOWBIT_CHECK(options.channel_scales == nullptr, "gemm: channel_scales are for compute::int8 (fold them into the "
                                                  "weights for weight-only)");
  const gemm_output out{y.data, y.ld, y.cols, options.bias};
  dispatch(path, [&](auto tag) { detail::gemm_float<decltype(tag)>(w, x, out, exec); });
}

/// y = x · Wᵀ + options.bias with bf16 activations. On AVX-512 BF16 (the avx512_vnni path) and
/// M > 4, weight-only runs on vdpbf16ps with the weights rounded to bf16 in the decoded tile:
/// |y - y_ref| <= 2^-8 * sum_k |x w| (y_ref: reference::gemm on x converted to float). There too,
/// M <= 4 with the formats of the bf16 pair kernel: vdpbf16ps on x as it is (exact products).
/// Elsewhere (other paths, other M <= 4, compute::int8) x is converted to fp32 exactly, once per
/// call, and the fp32 kernels run.
template <class Scheme, class Executor = serial_executor>
void gemm(matrix_view<const bf16> x, const panel_matrix<Scheme>& w, matrix_view<float> y,
          const gemm_options& options = {}, Executor&& exec = Executor{}, isa path = best_isa()) {
  detail::check_gemm(x, w, y, path);
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
  if (path == isa::avx512_vnni && x.rows > 4 && options.mode == compute::weight_only) {
    LOWBIT_CHECK(options.channel_scales == nullptr, "gemm: channel_scales are for compute::int8");
    const gemm_output out{y.data, y.ld, y.cols, options.bias};
    detail::for_panels(exec, w.panels(), simd::float_tile_shape<arch::avx512_vnni_tag>::block_panels,
                       [&](std::size_t b, std::size_t e) {
                         simd::gemm_float_tiled<arch::avx512_vnni_tag, Scheme, bf16>(w, x.data, x.ld, x.rows, b, e, out);
                       });
    return;
  }
  if (path == isa::avx512_vnni && options.mode == compute::weight_only && simd::bf16_codes<Scheme>().usable) {
    // M <= 4: x's bf16 values are the pair kernel's hi parts as they are (exact, no lo parts).
    LOWBIT_CHECK(options.channel_scales == nullptr, "gemm: channel_scales are for compute::int8");
    const std::size_t chunks = w.chunks();
    uint32_t* pairs = detail::bf16_pairs_buffer(x.rows * chunks * 4);
    simd::bf16_x_pairs(x.data, x.ld, x.rows, x.cols, chunks, pairs);
    detail::gemm_bf16_pairs<false>(w, simd::bf16_pairs_x{pairs, chunks * 4}, x.rows,
                                   gemm_output{y.data, y.ld, y.cols, options.bias}, exec);
    return;
  }
#endif
  thread_local aligned_buffer<float> converted;
  if (converted.size() < x.rows * x.cols) converted = aligned_buffer<float>(x.rows * x.cols);
  for (std::size_t i = 0; i < x.rows; ++i)
    for (std::size_t k = 0; k < x.cols; ++k) converted[i * x.cols + k] = x(i, k).to_float();
  gemm(matrix_view<const float>(converted.data(), x.rows, x.cols), w, y, options, std::forward<Executor>(exec), path);
}

}  // namespace lowbit
