/// \file
/// \brief The two SIMD steps an N:M kernel adds to a dense one (sparse24_select.hpp for any group
/// width M in {4, 8, 16}): widening a chunk's packed positions (one row per lane) and picking, per
/// lane, x[M g + position] out of the M columns of group g with one permute.
///
/// Each permute reads only the low index bits it needs (vpermilps 2, vpermps 3, AVX-512 vpermps 4
/// over the 8 columns broadcast twice when M = 8), so kept value j's position needs no masking,
/// only a shift by j log2(M). AVX2 M = 16: two vpermps and a blend on bit 3. SSE4.2 M = 4: the
/// 2:4 blends; M = 8, 16: a scalar gather (a path for old CPUs, not tuned).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../../arch/dispatch.hpp"
#include "sparse24_select.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

#if defined(LOWBIT_COMPILED_SSE42)

template <class Tag, std::size_t M>
struct nm_select {
  static_assert(M == 4 || M == 8 || M == 16, "groups of 4, 8 or 16 columns");
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  static constexpr std::size_t lanes = O::lanes;

  /// The positions of a chunk's 16 rows, RowBytes (1 to 4) bytes a row, as 16 / lanes batches.
  /// RowBytes 3 reads up to 16 bytes from the last row's start (the metadata has that slack); with
  /// VBMI (the avx512_vnni path) it is one masked load and one vpermb.
  template <std::size_t RowBytes>
  static LOWBIT_ALWAYS_INLINE void load_positions(const uint8_t* m, i32* out) noexcept {
    static_assert(RowBytes >= 1 && RowBytes <= 4, "1 to 4 bytes of positions a row");
    if constexpr (RowBytes <= 2) {
      sparse24_select<Tag>::template load_positions<RowBytes>(m, out);
    } else if constexpr (RowBytes == 4) {
      for (std::size_t v = 0; v < 16 / lanes; ++v) out[v] = i32::load_unaligned(reinterpret_cast<const int32_t*>(m) + v * lanes);
    } else {
      // 4 rows of 3 bytes per 128-bit lane, each widened to 32 bits by a byte shuffle.
      const __m128i spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
      const auto load = [](const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); };
      if constexpr (lanes == 16) {
#if defined(__AVX512VBMI__)
        if constexpr (std::is_same<Tag, arch::avx512_vnni_tag>::value) {  // compiled with VBMI: 2 instructions
          const __m512i index = _mm512_setr_epi32(0x020100, 0x050403, 0x080706, 0x0b0a09, 0x0e0d0c, 0x11100f, 0x141312,
                                                  0x171615, 0x1a1918, 0x1d1c1b, 0x201f1e, 0x232221, 0x262524, 0x292827,
                                                  0x2c2b2a, 0x2f2e2d);
          out[0] = _mm512_maskz_permutexvar_epi8(0x7777777777777777ull, index, _mm512_maskz_loadu_epi8(0xffffffffffffull, m));
          return;
        }
#endif
        __m512i v = _mm512_castsi128_si512(load(m));
        v = _mm512_inserti32x4(v, load(m + 12), 1);
        v = _mm512_inserti32x4(v, load(m + 24), 2);
        v = _mm512_inserti32x4(v, load(m + 36), 3);
        out[0] = _mm512_shuffle_epi8(v, _mm512_broadcast_i32x4(spread));
      } else if constexpr (lanes == 8) {
        for (std::size_t v = 0; v < 2; ++v)
          out[v] = _mm256_shuffle_epi8(_mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(m + 24 * v + 12),
                                                           reinterpret_cast<const __m128i*>(m + 24 * v)),
                                       _mm256_broadcastsi128_si256(spread));
      } else {
        for (std::size_t v = 0; v < 4; ++v) out[v] = _mm_shuffle_epi8(load(m + 12 * v), spread);
      }
    }
  }

  /// The M columns of a group, in the form pick reads.
  struct window_t {
    f32 x[(lanes == 8 && M == 16) ? 2 : ((lanes == 4 && M == 4) ? 4 : 1)];
    const float* columns;  // SSE4.2, M = 8, 16: picked one by one
  };
  static LOWBIT_ALWAYS_INLINE window_t window(const float* x) noexcept {
    window_t w{};
    if constexpr (M == 4) {
      const auto g = sparse24_select<Tag>::group(x);
      for (std::size_t i = 0; i < sizeof(g.x) / sizeof(g.x[0]); ++i) w.x[i] = g.x[i];
    } else if constexpr (lanes == 16) {
      if constexpr (M == 8) {
        w.x[0] = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(x))));
      } else {
        w.x[0] = _mm512_loadu_ps(x);
      }
    } else if constexpr (lanes == 8) {
      w.x[0] = _mm256_loadu_ps(x);
      if constexpr (M == 16) w.x[1] = _mm256_loadu_ps(x + 8);
    } else {
      w.columns = x;
    }
    return w;
  }

  /// Lane i gets column position_i & (M - 1) of the group.
  static LOWBIT_ALWAYS_INLINE f32 pick(const window_t& w, const i32& position) noexcept {
    if constexpr (M == 4) {
      typename sparse24_select<Tag>::group_t g;
      for (std::size_t i = 0; i < sizeof(g.x) / sizeof(g.x[0]); ++i) g.x[i] = w.x[i];
      return sparse24_select<Tag>::pick(g, position);
    } else if constexpr (lanes == 16) {
      return _mm512_permutexvar_ps(position, w.x[0]);
    } else if constexpr (lanes == 8) {
      if constexpr (M == 8) {
        return _mm256_permutevar8x32_ps(w.x[0], position);
      } else {
        const __m256 low = _mm256_permutevar8x32_ps(w.x[0], position), high = _mm256_permutevar8x32_ps(w.x[1], position);
        return _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(position, 28)));
      }
    } else {
      alignas(16) int32_t index[4];
      position.store_aligned(index);
      return _mm_setr_ps(w.columns[index[0] & (M - 1)], w.columns[index[1] & (M - 1)], w.columns[index[2] & (M - 1)],
                         w.columns[index[3] & (M - 1)]);
    }
  }
};

#endif  // LOWBIT_COMPILED_SSE42

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
