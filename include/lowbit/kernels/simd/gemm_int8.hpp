/// \file
/// \brief Integer GEMM on the SIMD archs (W8A8 / W4A8): int8 activations (quant/activations.hpp)
/// times integer-valued weights in the panel layout, int32 accumulation, one float step per group.
///
/// Weights are read as unsigned bytes u8(c) (kernels/integer_weights.hpp: the code itself, the
/// code ^ 0x80 for int8, or a 16-byte shuffle of the nibble), activations as signed bytes, which
/// is the operand order of VNNI's vpdpbusd: per 32-bit lane (one output row) it adds four u8 x s8
/// products. Then, per group g of row n and activation row m,
///   y[m][n] += (acc - z_n * sum_g(q_m)) * (scale_n,g * unit) * scale_m
/// where z_n is u8 of the zero point (or the format's offset), the correction done in int32 so the
/// group's dot product is exact. Overflow: |acc| <= group_size * 255 * 127, so a group (or a whole
/// row, per-channel) of up to 66,000 columns fits int32 (gemm() checks the bound).
/// Without VNNI, u8 x s8 pairs go through vpmaddubsw + vpmaddwd; weights of more than 7 bits are
/// split into nibbles first so the 16-bit pair sums cannot saturate (15 * 127 * 2 < 32767).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "../../quant/activations.hpp"
#include "../integer_weights.hpp"
#include "gemm_float.hpp"
#include "sparse24_select.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

#if defined(LOWBIT_COMPILED_SSE42)

/// Byte-level helpers of the integer kernel, per arch.
template <class Tag, class = void>
struct int8_dot;

template <class Tag>
struct int8_dot<Tag, std::enable_if_t<ops<Tag>::lanes == 4>> {
  using i32 = typename ops<Tag>::i32;
  static LOWBIT_ALWAYS_INLINE i32 broadcast4(const int8_t* p) noexcept {
    return _mm_set1_epi32(static_cast<int>(lowbit::simd::detail::load_u32(reinterpret_cast<const uint8_t*>(p))));
  }
  static LOWBIT_ALWAYS_INLINE i32 shuffle(const i32& table, const i32& idx) noexcept { return _mm_shuffle_epi8(table, idx); }
  static LOWBIT_ALWAYS_INLINE i32 shift_right_16(const i32& x, int n) noexcept { return _mm_srli_epi16(x, n); }
  /// 16 bytes at p (or 8, then zeros) in every 128-bit lane: the columns a 2:4 chunk may pick from.
  static LOWBIT_ALWAYS_INLINE i32 window(const int8_t* p, bool sixteen) noexcept { return window128(p, sixteen); }
  static LOWBIT_ALWAYS_INLINE __m128i window128(const int8_t* p, bool sixteen) noexcept {
    return sixteen ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)) : _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  }
  /// acc + sum of four u8 x s8 products per lane; u8 < 128 when Narrow.
  template <bool Narrow>
  static LOWBIT_ALWAYS_INLINE i32 dot(const i32& acc, const i32& u, const i32& s) noexcept {
    const __m128i ones = _mm_set1_epi16(1);
    if constexpr (Narrow) {
      return _mm_add_epi32(acc, _mm_madd_epi16(_mm_maddubs_epi16(u, s), ones));
    } else {
      const __m128i low = _mm_and_si128(u, _mm_set1_epi8(0x0F)), high = _mm_and_si128(_mm_srli_epi16(u, 4), _mm_set1_epi8(0x0F));
      const __m128i l = _mm_madd_epi16(_mm_maddubs_epi16(low, s), ones);
      const __m128i h = _mm_madd_epi16(_mm_maddubs_epi16(high, s), _mm_set1_epi16(16));
      return _mm_add_epi32(acc, _mm_add_epi32(l, h));
    }
  }
};

#if defined(LOWBIT_COMPILED_AVX2)
template <class Tag>
struct int8_dot<Tag, std::enable_if_t<ops<Tag>::lanes == 8>> {
  using i32 = typename ops<Tag>::i32;
  static LOWBIT_ALWAYS_INLINE i32 broadcast4(const int8_t* p) noexcept {
    return _mm256_set1_epi32(static_cast<int>(lowbit::simd::detail::load_u32(reinterpret_cast<const uint8_t*>(p))));
  }
  static LOWBIT_ALWAYS_INLINE i32 shuffle(const i32& table, const i32& idx) noexcept { return _mm256_shuffle_epi8(table, idx); }
  static LOWBIT_ALWAYS_INLINE i32 shift_right_16(const i32& x, int n) noexcept { return _mm256_srli_epi16(x, n); }
  static LOWBIT_ALWAYS_INLINE i32 window(const int8_t* p, bool sixteen) noexcept {
    return _mm256_broadcastsi128_si256(int8_dot<arch::sse42_tag>::window128(p, sixteen));
  }
  template <bool Narrow>
  static LOWBIT_ALWAYS_INLINE i32 dot(const i32& acc, const i32& u, const i32& s) noexcept {
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (Narrow) {
      return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
    } else {
      const __m256i nibble = _mm256_set1_epi8(0x0F);
      const __m256i low = _mm256_and_si256(u, nibble), high = _mm256_and_si256(_mm256_srli_epi16(u, 4), nibble);
      const __m256i l = _mm256_madd_epi16(_mm256_maddubs_epi16(low, s), ones);
      const __m256i h = _mm256_madd_epi16(_mm256_maddubs_epi16(high, s), _mm256_set1_epi16(16));
      return _mm256_add_epi32(acc, _mm256_add_epi32(l, h));
    }
  }
};
#endif

#if defined(LOWBIT_COMPILED_AVX512)
template <class Tag>
struct int8_dot<Tag, std::enable_if_t<ops<Tag>::lanes == 16>> {
  using i32 = typename ops<Tag>::i32;
  static LOWBIT_ALWAYS_INLINE i32 broadcast4(const int8_t* p) noexcept {
    return _mm512_set1_epi32(static_cast<int>(lowbit::simd::detail::load_u32(reinterpret_cast<const uint8_t*>(p))));
  }
  static LOWBIT_ALWAYS_INLINE i32 shuffle(const i32& table, const i32& idx) noexcept { return _mm512_shuffle_epi8(table, idx); }
  static LOWBIT_ALWAYS_INLINE i32 shift_right_16(const i32& x, int n) noexcept { return _mm512_srli_epi16(x, n); }
  static LOWBIT_ALWAYS_INLINE i32 window(const int8_t* p, bool sixteen) noexcept {
    return _mm512_broadcast_i32x4(int8_dot<arch::sse42_tag>::window128(p, sixteen));
  }
  template <bool Narrow>
  static LOWBIT_ALWAYS_INLINE i32 dot(const i32& acc, const i32& u, const i32& s) noexcept {
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
    if constexpr (Tag::level >= isa::avx512_vnni) return _mm512_dpbusd_epi32(acc, u, s);
#endif
    const __m512i ones = _mm512_set1_epi16(1);
    if constexpr (Narrow) {
      return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), ones));
    } else {
      const __m512i nibble = _mm512_set1_epi8(0x0F);
      const __m512i low = _mm512_and_si512(u, nibble), high = _mm512_and_si512(_mm512_srli_epi16(u, 4), nibble);
      const __m512i l = _mm512_madd_epi16(_mm512_maddubs_epi16(low, s), ones);
      const __m512i h = _mm512_madd_epi16(_mm512_maddubs_epi16(high, s), _mm512_set1_epi16(16));
      return _mm512_add_epi32(acc, _mm512_add_epi32(l, h));
    }
  }
};
#endif

/// Register block of the integer kernel per arch: rows of x per block and panels per step.
template <class Tag>
struct int8_tile_shape {
  static constexpr std::size_t lanes = ops<Tag>::lanes;
  static constexpr std::size_t panels = lanes == 16 ? 2 : 1;
  static constexpr std::size_t mr = lanes == 16 ? 6 : (lanes == 8 ? 2 : 1);
};

/// Rows [i0, i0 + MR) of the activations (clamped to m), panels [p_begin, p_end), P at a time,
/// chunks [c_begin, c_end) of K: adds their share to y (which the caller set to the bias). A group
/// cut by the chunk range adds its products in pieces, each piece's dot product exact in int32
/// (corrected with the sum of q over the piece, from the activations' prefix sums). Columns
/// (dense_columns, block_columns) says which x columns a chunk meets; a group is one run of them.
template <class Tag, class Scheme, std::size_t MR, std::size_t P, class Columns = dense_columns>
void gemm_int8_block(const panel_matrix<Scheme>& w, const int8_activations& a, std::size_t i0, std::size_t p_begin,
                     std::size_t p_end, std::size_t c_begin, std::size_t c_end, const gemm_output& out,
                     const Columns& columns = {}) noexcept {
  using format = typename Scheme::format;
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  using B = int8_dot<Tag>;
  constexpr lowbit::detail::integer_code_map map = integer_codes<format>::value;
  static_assert(map.ok, "the integer GEMM path needs an integer-valued format (has_integer_path)");
  constexpr int bits = format_traits<format>::bits;
  constexpr std::size_t W = O::lanes, V = 16 / W, NV = P * V, L = bits == 4 ? 8 : 4;
  constexpr bool narrow = map.max_u8 < 128;
  constexpr bool identity4 = map.identity;
  const std::size_t m = a.rows(), chunks = w.chunks(), groups = w.shape().groups_per_row();
  const std::size_t group_size = w.shape().group_size, panels = w.panels();

  const i32 lut = i32::load_unaligned(reinterpret_cast<const int32_t*>(integer_codes<format>::value.shuffle.data()));
  const i32 nibble(0x0F0F0F0F);
  const i32 flip(static_cast<int32_t>(0x01010101u * map.flip));

  const int8_t* xr[MR];
  float xscale[MR];
  const int32_t* xprefix[MR];
  for (std::size_t i = 0; i < MR; ++i) {
    const std::size_t row = std::min(i0 + i, m - 1);
    xr[i] = a.row(row);
    xscale[i] = a.scale(row);
    xprefix[i] = a.quad_prefix(row);
  }

  for (std::size_t p0 = p_begin; p0 < p_end; p0 += P) {
    std::size_t panel[P];
    for (std::size_t p = 0; p < P; ++p) panel[p] = std::min(p0 + p, panels - 1);
    f32 total[MR][NV];
    for (auto& row : total)
      for (auto& t : row) t = f32(0.0f);
    const std::size_t g_first = c_begin * L / group_size, g_last = ((c_end - 1) * L) / group_size;
    for (std::size_t g = g_first; g <= g_last && g < groups; ++g) {
      auto range = group_chunks(g, groups, group_size, L, chunks);
      range.begin = std::max(range.begin, c_begin);
      range.end = std::min(range.end, c_end);
      i32 acc[MR][NV], lane_sum[MR][NV];  // lane_sum: 2:4 only, each row's picked activations
      for (std::size_t i = 0; i < MR; ++i)
        for (std::size_t v = 0; v < NV; ++v) acc[i][v] = lane_sum[i][v] = i32(0);
      for (std::size_t c = range.begin; c < range.end; ++c) {
        i32 u[NV], u_high[NV];
        for (std::size_t p = 0; p < P; ++p)
          for (std::size_t v = 0; v < V; ++v) {
            const i32 lanes = i32::load_aligned(reinterpret_cast<const int32_t*>(w.chunk(panel[p], c)) + v * W);
            if constexpr (bits == 4) {
              i32 low = lanes & nibble, high = B::shift_right_16(lanes, 4) & nibble;
              if constexpr (!identity4) {
                low = B::shuffle(lut, low);
                high = B::shuffle(lut, high);
              }
              u[p * V + v] = low;
              u_high[p * V + v] = high;
            } else {
              u[p * V + v] = map.flip ? i32(lanes ^ flip) : lanes;
            }
          }
        if constexpr (Columns::sparse) {
          // Each row (lane) picks its own activations: kept value j of chunk c sits at x column
          // 2 c L + 4 (j / 2) + position_j, so a chunk reads a window of 2L columns and one byte
          // shuffle per row of x gathers every lane's 4 bytes (2 bits a position -> byte indices).
          i32 index[NV], index_high[NV];
          for (std::size_t p = 0; p < P; ++p) {
            i32 positions[V];
            sparse24_select<Tag>::template load_positions<L / 4>(columns.at(panel[p], c), positions);
            for (std::size_t v = 0; v < V; ++v) {
              const auto spread = [](const i32& m) {
                return (m & i32(3)) | ((m << 6) & i32(0x300)) | ((m << 12) & i32(0x30000)) | ((m << 18) & i32(0x3000000));
              };
              index[p * V + v] = spread(positions[v]) + i32(0x04040000);
              if constexpr (bits == 4) index_high[p * V + v] = spread(positions[v] >> 8) + i32(0x0C0C0808);
            }
          }
          const std::size_t xc = 2 * c * L;
          const bool sixteen = 2 * L == 16 && xc + 16 <= a.padded_cols();
          const i32 ones(0x01010101);
          for (std::size_t i = 0; i < MR; ++i) {
            const i32 window = B::window(xr[i] + xc, sixteen);
            for (std::size_t v = 0; v < NV; ++v) {
              const i32 s = B::shuffle(window, index[v]);
              acc[i][v] = B::template dot<narrow>(acc[i][v], u[v], s);
              lane_sum[i][v] = B::template dot<true>(lane_sum[i][v], ones, s);
              if constexpr (bits == 4) {
                const i32 s_high = B::shuffle(window, index_high[v]);
                acc[i][v] = B::template dot<narrow>(acc[i][v], u_high[v], s_high);
                lane_sum[i][v] = B::template dot<true>(lane_sum[i][v], ones, s_high);
              }
            }
          }
        } else {
          const std::size_t xc = columns.x_of(c * L);
          for (std::size_t i = 0; i < MR; ++i) {
            const i32 s = B::broadcast4(xr[i] + xc);
            for (std::size_t v = 0; v < NV; ++v) acc[i][v] = B::template dot<narrow>(acc[i][v], u[v], s);
            if constexpr (bits == 4) {
              const i32 s_high = B::broadcast4(xr[i] + xc + 4);
              for (std::size_t v = 0; v < NV; ++v) acc[i][v] = B::template dot<narrow>(acc[i][v], u_high[v], s_high);
            }
          }
        }
      }
      // Per group: the zero-point correction in int32 (exact: |z * sum| <= 255 * 127 * group),
      // then the weight scale times the format's unit.
      f32 scale[NV];
      i32 zero[NV] = {};
      for (std::size_t p = 0; p < P; ++p) {
        load_panel_scales<Tag>(w.scales(panel[p], g), scale + p * V);
        if constexpr (Scheme::has_zero) {
          alignas(64) int32_t z[16];
          const uint8_t* zc = w.zeros(panel[p], g);
          for (int r = 0; r < 16; ++r) z[r] = map.u8[zc[r]];
          for (std::size_t v = 0; v < V; ++v) zero[p * V + v] = i32::load_aligned(z + v * W);
        }
      }
      for (std::size_t v = 0; v < NV; ++v) scale[v] = scale[v] * f32(map.unit);
      std::size_t quad_begin = 0, quad_end = 0;
      if constexpr (!Columns::sparse) {
        quad_begin = columns.x_of(range.begin * L) / 4;
        quad_end = quad_begin + (range.end - range.begin) * L / 4;
      }
      for (std::size_t i = 0; i < MR; ++i) {
        const int32_t sum = Columns::sparse ? 0 : xprefix[i][quad_end] - xprefix[i][quad_begin];
        for (std::size_t v = 0; v < NV; ++v) {
          const i32 x_sum = Columns::sparse ? lane_sum[i][v] : i32(sum);
          i32 exact;
          if constexpr (Scheme::has_zero) {
            exact = acc[i][v] - zero[v] * x_sum;
          } else {
            exact = acc[i][v] - x_sum * i32(map.offset);
          }
          total[i][v] = xsimd::fma(O::to_f32(exact), scale[v], total[i][v]);
        }
      }
    }
    for (std::size_t p = 0; p < P && p0 + p < p_end; ++p)
      for (std::size_t v = 0; v < V; ++v) {
        const std::size_t n0 = (p0 + p) * 16 + v * W, n_end = std::min(out.n, p_end * 16);
        for (std::size_t i = 0; i < MR && i0 + i < m; ++i) {
          float* row = out.y + (i0 + i) * out.ld;
          const f32 previous = lowbit::simd::detail::load_clipped<Tag>(row, n0, n_end);
          lowbit::simd::detail::store_clipped<Tag>(row, n0, n_end, xsimd::fma(total[i][p * V + v], f32(xscale[i]), previous));
        }
      }
  }
}

#endif  // LOWBIT_COMPILED_SSE42

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
