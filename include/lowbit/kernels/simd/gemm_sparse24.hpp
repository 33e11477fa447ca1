/// \file
/// \brief Large-M 2:4 GEMM: the kept values of a block of W are decoded once into an L2 tile,
/// each with the x column it multiplies, and x is packed transposed once per call (columns of MB
/// rows), so a kept value is one broadcast and MB / lanes FMAs whose x operand is a plain load
/// from the column it names (the SpMM shape of XNNPACK's sparse kernels): no shuffles, half the
/// FMAs of the dense matrix. Small M runs the dense small-M kernel with sparse24_columns instead.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gemm_float.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

#if defined(LOWBIT_COMPILED_SSE42)

/// Register block: NR outputs x MV batches of x rows; tile: KC kept values x TP panels.
template <class Tag>
struct sparse24_tile_shape {
  static constexpr std::size_t lanes = ops<Tag>::lanes;
  static constexpr std::size_t nr = lanes == 16 ? 8 : 4;
  static constexpr std::size_t mv = lanes == 4 ? 2 : 3;
  static constexpr std::size_t mb = mv * lanes;  ///< rows of x per packed block
  static constexpr std::size_t tile_k = 128;     ///< kept values (256 x columns: MB x 256 floats in L1)
  static constexpr std::size_t tile_panels = 16;
};

/// x (m x x_cols) packed once per call: block b of MB rows is x_cols4 = 4 ceil(x_cols / 4)
/// columns of MB floats (column c at packed + (b x_cols4 + c) MB), zeros past m and x_cols.
struct sparse24_packed_x {
  const float* data;
  std::size_t cols4;
};
template <class Tag>
sparse24_packed_x pack_x_transposed(const float* x, std::size_t ldx, std::size_t m, std::size_t x_cols) {
  constexpr std::size_t MB = sparse24_tile_shape<Tag>::mb;
  const std::size_t cols4 = (x_cols + 3) / 4 * 4, blocks = (m + MB - 1) / MB;
  thread_local aligned_buffer<float> buffer;
  if (buffer.size() < blocks * cols4 * MB) buffer = aligned_buffer<float>(blocks * cols4 * MB);
  float* const packed = buffer.data();
  for (std::size_t b = 0; b < blocks; ++b) {
    float* block = packed + b * cols4 * MB;
    std::memset(block, 0, cols4 * MB * sizeof(float));
    for (std::size_t i = b * MB; i < std::min(m, (b + 1) * MB); ++i) {
      const float* src = x + i * ldx;
      for (std::size_t c = 0; c < x_cols; ++c) block[c * MB + i % MB] = src[c];
    }
  }
  return {packed, cols4};
}

/// Offsets in a packed x block of the columns that kept column j (of the tile whose x columns
/// start at c_base) multiplies in each lane: group j / 2's column `position`, MB floats apart.
template <class Tag>
LOWBIT_ALWAYS_INLINE typename ops<Tag>::i32 sparse24_offsets(std::size_t j, std::size_t c_base,
                                                             const typename ops<Tag>::i32& position) noexcept {
  using i32 = typename ops<Tag>::i32;
  constexpr int32_t MB = static_cast<int32_t>(sparse24_tile_shape<Tag>::mb);
  return i32(static_cast<int32_t>(j / 2 * 4 - c_base) * MB) + (position & i32(3)) * i32(MB);
}

/// The tile loop every kind of kept value shares. fill(panel, k_begin, k_end, values, offsets)
/// writes, for kept columns [k_begin, k_end) of a panel, entry (k - k_begin) * 16 + r: the value
/// of kept column k of row r, and (sparse24_offsets) where its x column is in the packed block.
///
/// The accumulators hold rows of x in their lanes (y transposed), so between K tiles they go to a
/// per-thread buffer of the same layout with plain vector loads and stores; y itself is written
/// once per N tile, through one transpose. (Transposing into y after every K tile cost a scalar
/// add per output per tile: a third of the time at M = 512.)
template <class Tag, class Fill>
void sparse24_tiled(std::size_t kept_cols, const sparse24_packed_x& x, std::size_t m, std::size_t p_begin,
                    std::size_t p_end, const gemm_output& out, Fill&& fill) {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using shape = sparse24_tile_shape<Tag>;
  constexpr std::size_t W = O::lanes;
  constexpr std::size_t NR = shape::nr, MV = shape::mv, MB = shape::mb, KC = shape::tile_k, TP = shape::tile_panels;
  static_assert(16 % NR == 0 && KC % 8 == 0, "register blocks within a panel, tiles of whole chunks");
  // Per thread, allocated once. Entry (q, k, r): value of kept column k of row r of panel q, and
  // the offset in the packed x of the column it multiplies. Partial sums: block b of MB rows of
  // x, output column n of the N tile at sums + (b * TP * 16 + n) * MB.
  const std::size_t blocks = (m + MB - 1) / MB;
  thread_local aligned_buffer<float> value_buffer;
  thread_local aligned_buffer<int32_t> offset_buffer;
  thread_local aligned_buffer<float> sum_buffer;
  if (value_buffer.size() < KC * TP * 16) {
    value_buffer = aligned_buffer<float>(KC * TP * 16);
    offset_buffer = aligned_buffer<int32_t>(KC * TP * 16);
  }
  if (sum_buffer.size() < blocks * TP * 16 * MB) sum_buffer = aligned_buffer<float>(blocks * TP * 16 * MB);
  float* const values = value_buffer.data();
  int32_t* const offsets = offset_buffer.data();
  float* const sums = sum_buffer.data();

  for (std::size_t t0 = p_begin; t0 < p_end; t0 += TP) {
    const std::size_t t_end = std::min(p_end, t0 + TP);
    const std::size_t n_begin = t0 * 16, n_end = std::min(out.n, t_end * 16);
    for (std::size_t k_begin = 0; k_begin < kept_cols; k_begin += KC) {
      const std::size_t k_end = std::min(kept_cols, k_begin + KC);
      const bool first = k_begin == 0, last = k_end == kept_cols;
      const std::size_t c_base = k_begin / 2 * 4;
      for (std::size_t q = 0; q < t_end - t0; ++q) fill(t0 + q, k_begin, k_end, values + q * KC * 16, offsets + q * KC * 16);
      for (std::size_t i0 = 0; i0 < m; i0 += MB) {
        const std::size_t rows = std::min(MB, m - i0);
        const float* xt = x.data + (i0 / MB * x.cols4 + c_base) * MB;  // the block's columns from c_base
        float* const block_sums = sums + i0 / MB * TP * 16 * MB;
        // Only as many batches of x rows as the block has (M = 16 needs one, not MV).
        const auto run_block = [&](auto batches) LOWBIT_ALWAYS_INLINE_LAMBDA {
          constexpr std::size_t B = decltype(batches)::value;
          for (std::size_t n0 = n_begin; n0 < t_end * 16; n0 += NR) {
            const std::size_t q = (n0 - n_begin) / 16, r0 = n0 % 16;
            float* const s = block_sums + (n0 - n_begin) * MB;  // column n0 + r at s + r MB
            f32 acc[NR][B];
            for (std::size_t r = 0; r < NR; ++r)
              for (std::size_t v = 0; v < B; ++v) acc[r][v] = first ? f32(0.0f) : f32::load_aligned(s + r * MB + v * W);
            const float* vt = values + q * KC * 16 + r0;
            const int32_t* ot = offsets + q * KC * 16 + r0;
            for (std::size_t k = k_begin; k < k_end; ++k, vt += 16, ot += 16)
              for (std::size_t r = 0; r < NR; ++r) {
                const f32 wb(vt[r]);
                const float* xp = xt + ot[r];
                for (std::size_t v = 0; v < B; ++v) acc[r][v] = xsimd::fma(wb, f32::load_aligned(xp + v * W), acc[r][v]);
              }
            for (std::size_t r = 0; r < NR; ++r)
              for (std::size_t v = 0; v < B; ++v) acc[r][v].store_aligned(s + r * MB + v * W);
            if (!last) continue;
            // acc[r][v] lane l is y[i0 + v W + l][n0 + r]: written once, with the bias.
            const std::size_t n_stop = std::min(n_end, n0 + NR);
            for (std::size_t i = 0; i < rows; ++i) {
              float* row = out.y + (i0 + i) * out.ld;
              for (std::size_t n = n0; n < n_stop; ++n) row[n] = s[(n - n0) * MB + i] + (out.bias ? out.bias[n] : 0.0f);
            }
          }
        };
        if (rows <= W) {
          run_block(std::integral_constant<std::size_t, 1>{});
        } else if (MV == 2 || rows <= 2 * W) {
          run_block(std::integral_constant<std::size_t, 2>{});
        } else {
          run_block(std::integral_constant<std::size_t, MV>{});
        }
      }
    }
  }
}

/// Quantized kept values: each chunk decoded and scaled into the tile.
template <class Tag, class Scheme>
void gemm_sparse24_tiled(const panel_matrix<Scheme>& w, const sparse24_columns& columns, const sparse24_packed_x& x,
                         std::size_t m, std::size_t p_begin, std::size_t p_end, const gemm_output& out) {
  using D = panel_decoder<Tag, typename Scheme::format>;
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  using select = sparse24_select<Tag>;
  constexpr std::size_t W = O::lanes, V = D::vectors_per_panel, L = D::per_lane;
  constexpr bool has_zero = Scheme::has_zero;
  const D dec;
  sparse24_tiled<Tag>(w.shape().cols, x, m, p_begin, p_end, out,
                      [&](std::size_t panel, std::size_t k_begin, std::size_t k_end, float* values, int32_t* offsets) {
                        const std::size_t c_base = k_begin / 2 * 4;
                        panel_group_cursor<Tag, Scheme> group;
                        const f32* const scale = group.scale;
                        const f32* const zero = group.zero;
                        for (std::size_t c = k_begin / L; c * L < k_end; ++c) {
                          group.seek(w, dec, panel, c);
                          const std::size_t entry = (c * L - k_begin) * 16;
                          i32 positions[V];
                          select::template load_positions<L / 4>(columns.at(panel, c), positions);
                          for (std::size_t v = 0; v < V; ++v) {
                            const i32 lanes = i32::load_aligned(reinterpret_cast<const int32_t*>(w.chunk(panel, c)) + v * W);
                            lowbit::simd::detail::static_for<L>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
                              constexpr std::size_t j = decltype(J)::value;
                              f32 value = dec.template decode<j>(lanes);
                              if constexpr (has_zero) value = value - zero[v];
                              (value * scale[v]).store_aligned(values + entry + j * 16 + v * W);
                              sparse24_offsets<Tag>(c * L + j, c_base, positions[v] >> static_cast<int>(2 * j))
                                  .store_aligned(offsets + entry + j * 16 + v * W);
                            });
                          }
                        }
                      });
}

#endif  // LOWBIT_COMPILED_SSE42

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
