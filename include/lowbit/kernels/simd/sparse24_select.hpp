/// \file
/// \brief The two SIMD steps a 2:4 kernel adds to a dense one: widening a chunk's 2-bit positions
/// (one row per lane) and picking, per lane, x[4g + position] out of the 4 columns of group g.
///
/// The pick is one in-lane variable permute (vpermilps), which reads only bits 0-1 of each
/// index: the positions need no masking, only a shift to bring kept value j's bits down.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

#if defined(LOWBIT_COMPILED_SSE42)

template <class Tag>
struct sparse24_select {
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  static constexpr std::size_t lanes = O::lanes;

  /// The positions of a chunk's 16 rows, RowBytes (1 or 2) bytes a row, as 16 / lanes batches.
  template <std::size_t RowBytes>
  static LOWBIT_ALWAYS_INLINE void load_positions(const uint8_t* m, i32* out) noexcept {
    static_assert(RowBytes == 1 || RowBytes == 2, "2 bits for 4 or 8 kept values a lane");
    if constexpr (lanes == 16) {
      if constexpr (RowBytes == 2) {
        out[0] = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m)));
      } else {
        out[0] = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m)));
      }
    } else if constexpr (lanes == 8) {
      for (std::size_t v = 0; v < 2; ++v) {
        if constexpr (RowBytes == 2) {
          out[v] = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m + 16 * v)));
        } else {
          out[v] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m + 8 * v)));
        }
      }
    } else {
      for (std::size_t v = 0; v < 4; ++v) {
        if constexpr (RowBytes == 2) {
          out[v] = _mm_cvtepu16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m + 8 * v)));
        } else {
          out[v] = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(static_cast<int>(detail::load_u32(m + 4 * v))));
        }
      }
    }
  }

  /// The 4 columns of a group, in the form pick reads: broadcast to every 128-bit lane (AVX2,
  /// AVX-512), or the 4 values broadcast one by one (SSE4.2).
  struct group_t {
    f32 x[lanes == 4 ? 4 : 1];
  };
  static LOWBIT_ALWAYS_INLINE group_t group(const float* x4) noexcept {
    if constexpr (lanes == 16) {
      return {{_mm512_broadcast_f32x4(_mm_loadu_ps(x4))}};
    } else if constexpr (lanes == 8) {
      return {{_mm256_broadcast_ps(reinterpret_cast<const __m128*>(x4))}};
    } else {
      return {{f32(x4[0]), f32(x4[1]), f32(x4[2]), f32(x4[3])}};
    }
  }

  /// Lane i gets column position_i & 3 of the group.
  static LOWBIT_ALWAYS_INLINE f32 pick(const group_t& g, const i32& position) noexcept {
    if constexpr (lanes == 16) {
      return _mm512_permutevar_ps(g.x[0], position);
    } else if constexpr (lanes == 8) {
      return _mm256_permutevar_ps(g.x[0], position);
    } else {
      // SSE4.2 has no variable permute: two levels of blends on the position's bits.
      const __m128 bit0 = _mm_castsi128_ps(_mm_slli_epi32(position, 31));
      const __m128 bit1 = _mm_castsi128_ps(_mm_slli_epi32(position, 30));
      const __m128 low = _mm_blendv_ps(g.x[0], g.x[1], bit0);
      const __m128 high = _mm_blendv_ps(g.x[2], g.x[3], bit0);
      return _mm_blendv_ps(low, high, bit1);
    }
  }
  static LOWBIT_ALWAYS_INLINE f32 pick(const float* x4, const i32& position) noexcept { return pick(group(x4), position); }
};

#endif  // LOWBIT_COMPILED_SSE42

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
