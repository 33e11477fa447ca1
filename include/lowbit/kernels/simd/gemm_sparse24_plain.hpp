/// \file
/// \brief 2:4 GEMM with plain fp32 / bf16 kept values (sparse/sparse24_plain.hpp) on the SIMD
/// archs. The quantized kinds' two shapes with the decode step replaced by a load:
///  - small M: a chunk's 4 kept values of 16 rows are loaded (bf16: widened by a shift or a
///    mask of 32-bit words) and multiplied with the x column each lane picks (sparse24_select);
///  - large M: the shared tile loop of gemm_sparse24.hpp, filled with the values as they are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../../sparse/sparse24_plain.hpp"
#include "gemm_sparse24.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

#if defined(LOWBIT_COMPILED_SSE42)

/// Kept value J of a chunk for batch v of its 16 rows, as fp32.
template <class Tag, std::size_t J, class T>
LOWBIT_ALWAYS_INLINE typename ops<Tag>::f32 load_plain(const T* chunk, std::size_t v) noexcept {
  using O = ops<Tag>;
  constexpr std::size_t W = O::lanes;
  if constexpr (std::is_same<T, float>::value) {
    return O::f32::load_aligned(chunk + J * 16 + v * W);
  } else {  // bf16 pairs in 32-bit words: value 2p in the low half, 2p + 1 in the high half
    using i32 = typename O::i32;
    const i32 words = i32::load_aligned(reinterpret_cast<const int32_t*>(chunk) + J / 2 * 16 + v * W);
    if constexpr (J % 2 == 0) {
      return O::as_f32(words << 16);
    } else {
      return O::as_f32(words & i32(static_cast<int32_t>(0xffff0000u)));
    }
  }
}

/// Small-M kernel: rows [0, MR) of x (row i at x + min(i, m - 1) * ldx), panels [p_begin, p_end).
template <class Tag, class T, std::size_t MR>
void gemm_sparse24_plain_small_m(const lowbit::detail::sparse24_plain<T>& w, const float* x, std::size_t ldx, std::size_t m,
                                 std::size_t p_begin, std::size_t p_end, const gemm_output& out) noexcept {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  using select = sparse24_select<Tag>;
  constexpr std::size_t W = O::lanes, V = 16 / W, L = lowbit::detail::sparse24_plain<T>::chunk_values;
  const std::size_t chunks = w.chunks(), cols = w.cols();
  const float* xr[MR];
  for (std::size_t i = 0; i < MR; ++i) xr[i] = x + std::min(i, m - 1) * ldx;

  for (std::size_t p = p_begin; p < p_end; ++p) {
    f32 acc[2][MR][V];
    for (auto& set : acc)
      for (auto& row : set)
        for (auto& a : row) a = f32(0.0f);
    for (std::size_t c = 0; c < chunks; ++c) {
      const std::size_t k0 = c * 2 * L;  // the chunk's 2 groups: x columns k0 .. k0 + 7
      alignas(64) float padded[MR][2 * L];
      const float* xs[MR];
      if (k0 + 2 * L <= cols) {
        for (std::size_t i = 0; i < MR; ++i) xs[i] = xr[i] + k0;
      } else {  // the last chunk may run past cols: its x comes from a zero-padded copy
        for (std::size_t i = 0; i < MR; ++i) {
          for (std::size_t j = 0; j < 2 * L; ++j) padded[i][j] = k0 + j < cols ? xr[i][k0 + j] : 0.0f;
          xs[i] = padded[i];
        }
      }
      i32 positions[V];
      select::template load_positions<1>(w.metadata(p, c), positions);
      const T* chunk = w.chunk(p, c);
      lowbit::simd::detail::static_for<L>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
        constexpr std::size_t j = decltype(J)::value;
        for (std::size_t v = 0; v < V; ++v) {
          const f32 value = load_plain<Tag, j>(chunk, v);
          const i32 position = j ? i32(positions[v] >> static_cast<int>(2 * j)) : positions[v];
          for (std::size_t i = 0; i < MR; ++i)
            acc[j & 1][i][v] = xsimd::fma(select::pick(xs[i] + j / 2 * 4, position), value, acc[j & 1][i][v]);
        }
      });
    }
    for (std::size_t v = 0; v < V; ++v) {
      const std::size_t n0 = p * 16 + v * W;
      const f32 bias = out.bias ? lowbit::simd::detail::load_clipped<Tag>(out.bias, n0, out.n) : f32(0.0f);
      for (std::size_t i = 0; i < MR && i < m; ++i)
        lowbit::simd::detail::store_clipped<Tag>(out.y + i * out.ld, n0, out.n, acc[0][i][v] + acc[1][i][v] + bias);
    }
  }
}

/// Large-M kernel: the shared tile loop, filled with the kept values as they are.
template <class Tag, class T>
void gemm_sparse24_plain_tiled(const lowbit::detail::sparse24_plain<T>& w, const sparse24_packed_x& x, std::size_t m,
                               std::size_t p_begin, std::size_t p_end, const gemm_output& out) {
  using O = ops<Tag>;
  using i32 = typename O::i32;
  using select = sparse24_select<Tag>;
  constexpr std::size_t W = O::lanes, V = 16 / W, L = lowbit::detail::sparse24_plain<T>::chunk_values;
  sparse24_tiled<Tag>(w.kept_cols(), x, m, p_begin, p_end, out,
                      [&](std::size_t panel, std::size_t k_begin, std::size_t k_end, float* values, int32_t* offsets) {
                        const std::size_t c_base = k_begin / 2 * 4;
                        for (std::size_t c = k_begin / L; c * L < k_end; ++c) {  // k_begin: whole chunks
                          const std::size_t entry = (c * L - k_begin) * 16;
                          i32 positions[V];
                          select::template load_positions<1>(w.metadata(panel, c), positions);
                          const T* chunk = w.chunk(panel, c);
                          lowbit::simd::detail::static_for<L>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
                            constexpr std::size_t j = decltype(J)::value;
                            for (std::size_t v = 0; v < V; ++v) {
                              load_plain<Tag, j>(chunk, v).store_aligned(values + entry + j * 16 + v * W);
                              sparse24_offsets<Tag>(c * L + j, c_base, positions[v] >> static_cast<int>(2 * j))
                                  .store_aligned(offsets + entry + j * 16 + v * W);
                            }
                          });
                        }
                      });
}

#endif  // LOWBIT_COMPILED_SSE42

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
