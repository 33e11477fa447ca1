/// \file
/// \brief The AVX-512 integer decode kernel over a kv_cache's integer tiles (int_tiles.hpp,
/// kv_shape::integer_tiles): decode_options::integer_pv with the bytes already where vpdpbusd
/// wants them.
///
/// Per 16-token tile of one KV head, for the group's query heads four at a time:
/// - q·k with tokens in lanes: vpdpbusd of each 64-byte K block (16 tokens x 4 elements,
///   unsigned) against four query codes broadcast, so one zmm holds the 16 tokens' partial sums
///   and no lane reduction is needed; per key group the int32 sums (minus the unsigned bias
///   times the query's sum over the group) are scaled by the 16 tokens' key scales.
/// - online softmax on the 16 scores of each head, the scores kept in registers: one shuffle tree
///   gives the four heads' tile maxima, a short exp (exp_tile) the probabilities; the V weights
///   w_t = p_t · s_v(t, g) rounded to u8 per tile, head and V group, against max_t p_t · max_t
///   s_v(t, g) (>= every w_t; the V part is shared by the heads, so one division per four groups
///   and tile) rather than against max_t w_t: the step is at most the one decode_integer.hpp's
///   bound allows ((max p in the tile) · max s_v / 255), so the same bound holds. The u8 weights
///   of four groups are packed into one register (16 words: four tokens of a group each).
/// - P V with elements in lanes: each V block (16 elements x 4 tokens) loaded, and its nibbles
///   split (int4), once for the four heads; vpdpbusd of each head's weights of those four tokens
///   (broadcast from the packed register) against it, int32 per tile, scaled into the float sums.
/// int4 tiles: K and V nibbles split in registers (K: low nibbles elements 8c..8c+3, high
/// 8c+4..8c+7), the high nibbles used in place as 16 times their value.
/// Head dimension 128 with one, two or four scale groups is compiled with its loops unrolled.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../arch/dispatch.hpp"
#include "../core/aligned.hpp"
#include "../kernels/simd/gemm_int8.hpp"
#include "../kernels/simd/ops.hpp"
#include "decode_integer.hpp"
#include "int_tiles.hpp"
#include "kv_cache.hpp"
#include "tile_ops.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

// Unrolls the loop that follows (register blocks indexed by its counter; loops of compile-time trip counts).
#if defined(__GNUC__) || defined(__clang__)
#define LOWBIT_TILES_UNROLL _Pragma("GCC unroll 16")
#else
#define LOWBIT_TILES_UNROLL
#endif

namespace lowbit {
namespace attention {
namespace detail {

#if defined(LOWBIT_COMPILED_AVX512)
/// 16 scales stored at p, as floats.
template <class Scale>
inline __m512 tile_scales(const uint8_t* p) noexcept {
  if constexpr (std::is_same<Scale, float>::value) {
    return _mm512_loadu_ps(p);
  } else if constexpr (std::is_same<Scale, fp16>::value) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else {
    alignas(64) float f[16];
    for (std::size_t i = 0; i < 16; ++i) {
      Scale s;
      std::memcpy(&s, p + i * sizeof(Scale), sizeof(Scale));
      f[i] = scale_traits<Scale>::to_float(s);
    }
    return _mm512_load_ps(f);
  }
}

/// The four query codes at p, in every 32-bit lane.
inline __m512i broadcast_codes(const int8_t* p) noexcept {
  int32_t word;
  std::memcpy(&word, p, 4);
  return _mm512_set1_epi32(word);
}

/// acc + the four u8 x s8 products per lane of u and the four query codes at p (in every lane).
/// VNNI: vpdpbusd with the codes as its embedded-broadcast memory operand, one instruction where
/// a broadcast and vpdpbusd are two (the vector pipes' issue rate bounds the tile, not the
/// multiplies: measured, a tile's 128 q·k broadcasts cost about as much as 128 vector adds).
template <class Tag, bool Narrow>
LOWBIT_ALWAYS_INLINE __m512i dot_codes(__m512i acc, __m512i u, const int8_t* p) noexcept {
#if defined(LOWBIT_COMPILED_AVX512_VNNI) && (defined(__GNUC__) || defined(__clang__))
  if constexpr (Tag::level >= isa::avx512_vnni) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*reinterpret_cast<const int32_t*>(p)));
    return acc;
  }
#endif
  return simd::int8_dot<Tag>::template dot<Narrow>(acc, u, broadcast_codes(p));
}

/// q·k of NH query heads (codes q + j·d, offsets koff + j·G, scales qscale[j]) against one tile:
/// the 16 tokens' scores of head j into s[j].
template <class Tag, bool Int4, class Scale, std::size_t NH>
LOWBIT_ALWAYS_INLINE void tile_qk(const uint8_t* tile, std::size_t d, std::size_t G, std::size_t k_scales, const int8_t* q,
                                  const int32_t* koff, const float* qscale, __m512* s) noexcept {
  const std::size_t blocks = (Int4 ? d / 8 : d / 4) / G;  // K blocks per group
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  __m512 f[NH];
  LOWBIT_TILES_UNROLL
  for (std::size_t j = 0; j < NH; ++j) f[j] = _mm512_setzero_ps();
  for (std::size_t g = 0; g < G; ++g) {
    __m512i a0[NH], a1[NH];  // two chains per head: even and odd blocks (int8) or nibbles (int4)
    LOWBIT_TILES_UNROLL
    for (std::size_t j = 0; j < NH; ++j) {
      a0[j] = _mm512_set1_epi32(koff[j * G + g]);
      a1[j] = _mm512_setzero_si512();
    }
    const uint8_t* k = tile + 64 * g * blocks;
    if (Int4) {
      const int8_t* qg = q + 8 * g * blocks;
      LOWBIT_TILES_UNROLL
      for (std::size_t c = 0; c < blocks; ++c) {
        // The high nibbles stay in place: 16 times their value, divided out once per group.
        const __m512i x = _mm512_load_si512(k + 64 * c);
        const __m512i lo = _mm512_and_si512(x, nibble), hi = _mm512_andnot_si512(nibble, x);
        LOWBIT_TILES_UNROLL
        for (std::size_t j = 0; j < NH; ++j) {
          a0[j] = dot_codes<Tag, true>(a0[j], lo, qg + j * d + 8 * c);
          a1[j] = dot_codes<Tag, false>(a1[j], hi, qg + j * d + 8 * c + 4);
        }
      }
    } else {
      const int8_t* qg = q + 4 * g * blocks;
      LOWBIT_TILES_UNROLL
      for (std::size_t c = 0; c < blocks; c += 2) {  // blocks is even (groups of 16 elements or more)
        const __m512i x0 = _mm512_load_si512(k + 64 * c), x1 = _mm512_load_si512(k + 64 * c + 64);
        LOWBIT_TILES_UNROLL
        for (std::size_t j = 0; j < NH; ++j) {
          a0[j] = dot_codes<Tag, false>(a0[j], x0, qg + j * d + 4 * c);
          a1[j] = dot_codes<Tag, false>(a1[j], x1, qg + j * d + 4 * c + 4);
        }
      }
    }
    const __m512 ks = tile_scales<Scale>(tile + k_scales + 16 * g * sizeof(Scale));
    LOWBIT_TILES_UNROLL
    for (std::size_t j = 0; j < NH; ++j)
      f[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0[j], Int4 ? _mm512_srai_epi32(a1[j], 4) : a1[j])), ks, f[j]);
  }
  LOWBIT_TILES_UNROLL
  for (std::size_t j = 0; j < NH; ++j) s[j] = _mm512_mul_ps(f[j], _mm512_set1_ps(qscale[j]));
}

/// Per-thread buffers of the tile kernel.
struct tile_scratch {
  std::vector<int32_t> koff;       ///< group x G: minus the bias times the query's sum per key group
  aligned_buffer<float> sums;      ///< group x 16: the softmax sums per lane
  aligned_buffer<float> acc;       ///< group x d: the V sums (64-byte aligned, unlike partial::acc)
  aligned_buffer<float> steps;     ///< group x 16: what a weight's unit is worth, per V group
  aligned_buffer<float> scores;    ///< group x 16: the scores of the tile whose softmax comes next
  std::vector<float> qscale;       ///< group: the query scales times log2 e (scores in base 2)
  void reserve(std::size_t group, std::size_t groups, std::size_t d) {
    if (qscale.size() < group) qscale.resize(group);
    if (acc.size() < group * d) acc = aligned_buffer<float>(group * d);
    if (koff.size() < group * groups) koff.resize(group * groups);
    if (sums.size() < group * 16) {
      sums = aligned_buffer<float>(group * 16);
      steps = aligned_buffer<float>(group * 16);
      scores = aligned_buffer<float>(group * 16);
    }
  }
};

/// The tile's V scales, normalized per group to their largest (shared by every head): v_norm + 16 g
/// holds 255 s_v(t, g) / max_t s_v(t, g), v_step lane g that max / 255 (int4: / (255 · 16), the
/// high nibbles' factor; 0 for an all-zero group).
template <class Scale, bool Int4>
LOWBIT_ALWAYS_INLINE __m512 normalize_v_scales(const uint8_t* tile, const int_tile_layout& L, __mmask16 valid,
                                               float* v_norm, std::size_t G) noexcept {
  __m512 step = _mm512_setzero_ps();
  LOWBIT_TILES_UNROLL
  for (std::size_t g0 = 0; g0 < G; g0 += 4) {
    __m512 vs[4];
    const std::size_t n = std::min<std::size_t>(4, G - g0);
    LOWBIT_TILES_UNROLL
    for (std::size_t i = 0; i < n; ++i)
      vs[i] = _mm512_maskz_mov_ps(valid, tile_scales<Scale>(tile + L.v_scales_offset() + 16 * (g0 + i) * sizeof(Scale)));
    const __m512 m = n == 4 ? quarter_max<4>(vs) : n == 3 ? quarter_max<3>(vs) : n == 2 ? quarter_max<2>(vs) : quarter_max<1>(vs);
    // times 255 / m (one division for four groups); vs / m first when 255 / m would overflow (m
    // below ~7.5e-37), 0 for m = 0
    const __m512 inverse = _mm512_div_ps(_mm512_set1_ps(255.0f), m);
    const bool tiny = _mm512_cmp_ps_mask(m, _mm512_set1_ps(255.0f / std::numeric_limits<float>::max()), _CMP_LT_OQ) != 0;
    alignas(64) float ms[16];
    if (tiny) _mm512_store_ps(ms, m);
    LOWBIT_TILES_UNROLL
    for (std::size_t i = 0; i < n; ++i) {
      __m512 norm = _mm512_mul_ps(vs[i], quarter(inverse, i));
      if (tiny && ms[4 * i] < 255.0f / std::numeric_limits<float>::max())
        norm = ms[4 * i] > 0.0f ? _mm512_mul_ps(_mm512_div_ps(vs[i], _mm512_set1_ps(ms[4 * i])), _mm512_set1_ps(255.0f))
                                : _mm512_setzero_ps();
      _mm512_store_ps(v_norm + 16 * (g0 + i), norm);
    }
    // lanes g0..g0+n-1 of the steps: quarter i's first lane (in registers: no scalar stores)
    step = _mm512_mask_permutexvar_ps(step, static_cast<__mmask16>(((1u << n) - 1) << g0),
                                      _mm512_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12), m);
  }
  // int4 V codes in the high nibble count 16 times: the 16 comes off here
  return _mm512_mul_ps(step, _mm512_set1_ps(Int4 ? 1.0f / (255.0f * 16.0f) : 1.0f / 255.0f));
}

/// Online softmax of NH heads (scores s[j], valid lanes) and their u8 V weights for the tile:
/// updates the running maxima (out.max + j0), the lane sums and rescales earlier V sums when a
/// maximum moves; words of head j: per four V groups 64 bytes, 128-bit lane k holding the
/// weights of tokens 4k..4k+3 for groups 4w..4w+3 (one 32-bit word each: word 4k + g % 4 of
/// block w = g / 4); steps of head j lane g: what a unit of group g's weights is worth.
template <class Tag, bool Int4, std::size_t NH, std::size_t WB>
LOWBIT_ALWAYS_INLINE void softmax_tile_heads(__m512* s, __mmask16 valid, std::size_t d, std::size_t G, const float* v_norm,
                                             __m512 v_step, float* max, float* sums, float* accs, __m512i* words,
                                             float* steps) noexcept {
  const __m512 minus_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  LOWBIT_TILES_UNROLL
  for (std::size_t j = 0; j < NH; ++j) s[j] = _mm512_mask_mov_ps(minus_inf, valid, s[j]);
  const __m512 tile_max = quarter_max<NH>(s);  // quarter j: head j's
  const __m512 old_max = running_max_quarters<NH>(tile_max, max);
  const __m512 new_max = _mm512_max_ps(old_max, tile_max);
  const __mmask16 moved = _mm512_cmp_ps_mask(new_max, old_max, _CMP_NEQ_UQ);
  if (moved) {  // rescale what came before (0 on the first tile: max was -inf)
    alignas(64) float o[16], n[16];
    _mm512_store_ps(o, old_max);
    _mm512_store_ps(n, new_max);
    LOWBIT_TILES_UNROLL
    for (std::size_t j = 0; j < NH; ++j) {
      if (!(moved >> (4 * j) & 1)) continue;
      const __m512 c = _mm512_set1_ps(std::exp2(o[4 * j] - n[4 * j]));
      float* acc = accs + j * d;
      for (std::size_t e = 0; e < d; e += 16) _mm512_store_ps(acc + e, _mm512_mul_ps(_mm512_load_ps(acc + e), c));
      _mm512_store_ps(sums + 16 * j, _mm512_mul_ps(_mm512_load_ps(sums + 16 * j), c));
      max[j] = n[4 * j];
    }
  }
  // p_t = exp(s_t - max) = pr_t p_max with pr_t = exp(s_t - tile max) <= 1 and p_max =
  // exp(tile max - max): no division (p_max may be denormal or 0). One exp for the NH p_max.
  const __m512 p_max = exp2_tile(_mm512_sub_ps(tile_max, new_max));
  LOWBIT_TILES_UNROLL
  for (std::size_t j = 0; j < NH; ++j) {
    const __m512 pj = quarter(p_max, j);
    const __m512 pr = _mm512_maskz_mov_ps(valid, exp2_tile(_mm512_sub_ps(s[j], quarter(tile_max, j))));
    _mm512_store_ps(sums + 16 * j, _mm512_fmadd_ps(pr, pj, _mm512_load_ps(sums + 16 * j)));
    // The V weights w_t = p_t s_v(t, g), rounded to u8 per group against p_max times the group's
    // largest V scale (>= every w_t), four groups packed together: the packs work within 128-bit
    // lanes, so lane k gets tokens 4k..4k+3 of each group in turn.
    LOWBIT_TILES_UNROLL
    for (std::size_t g0 = 0; g0 < G; g0 += 4) {
      __m512i u[4];
      LOWBIT_TILES_UNROLL
      for (std::size_t i = 0; i < 4; ++i)
        u[i] = g0 + i < G ? _mm512_cvtps_epi32(_mm512_mul_ps(pr, _mm512_load_ps(v_norm + 16 * (g0 + i)))) : _mm512_setzero_si512();
      words[j * WB + g0 / 4] = _mm512_packus_epi16(_mm512_packus_epi32(u[0], u[1]), _mm512_packus_epi32(u[2], u[3]));
    }
    // 0 when every weight underflowed
    _mm512_store_ps(steps + 16 * j, _mm512_mul_ps(v_step, pj));
  }
}

/// 128-bit lane k of x in all four lanes.
LOWBIT_ALWAYS_INLINE __m512i lane_of(__m512i x, std::size_t k) noexcept {
  switch (k) {
    case 0: return _mm512_shuffle_i32x4(x, x, 0x00);
    case 1: return _mm512_shuffle_i32x4(x, x, 0x55);
    case 2: return _mm512_shuffle_i32x4(x, x, 0xAA);
    default: return _mm512_shuffle_i32x4(x, x, 0xFF);
  }
}
/// 32-bit word w of each 128-bit lane of x in all four of its words.
LOWBIT_ALWAYS_INLINE __m512i word_of(__m512i x, std::size_t w) noexcept {
  switch (w) {
    case 0: return _mm512_shuffle_epi32(x, static_cast<_MM_PERM_ENUM>(0x00));
    case 1: return _mm512_shuffle_epi32(x, static_cast<_MM_PERM_ENUM>(0x55));
    case 2: return _mm512_shuffle_epi32(x, static_cast<_MM_PERM_ENUM>(0xAA));
    default: return _mm512_shuffle_epi32(x, static_cast<_MM_PERM_ENUM>(0xFF));
  }
}

/// P V of NH heads over one tile: per V block, its codes loaded (and split, int4) once for the
/// heads, each head's four words broadcast against them, int32 per tile, scaled into acc.
template <class Tag, bool Int4, std::size_t NH, std::size_t WB, bool G4 = false>
LOWBIT_ALWAYS_INLINE void tile_pv(const int8_t* v, std::size_t d, std::size_t gs, const __m512i* words, const float* steps,
                                  float* accs) noexcept {
  using dot = simd::int8_dot<Tag>;
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const std::size_t blocks = d / 16, per_group = gs / 16;  // (a compile-time division when unrolled)
  // word 4 k + g % 4 of the packed register in every lane. Four groups (G = 4 at compile time):
  // 128-bit lane k in all four (vshufi32x4, one per head and k, shared by the groups), then word
  // g % 4 of each (vpshufd), where a vpermd a word takes a third of a vpdpbusd slot (measured: 8
  // vpdpbusd + 8 vpermd in 10.7 cycles, + 8 vpshufd in 8).
  const auto word = [&](std::size_t j, std::size_t g, std::size_t k) {
    if (WB == 1 && G4) return word_of(lane_of(words[j * WB + g / 4], k), g % 4);
    return _mm512_permutexvar_epi32(_mm512_set1_epi32(static_cast<int>(4 * k + g % 4)), words[j * WB + g / 4]);
  };
  const auto finish = [&](const __m512i* a, std::size_t b, std::size_t g) {
    LOWBIT_TILES_UNROLL
    for (std::size_t j = 0; j < NH; ++j) {
      float* acc = accs + j * d + 16 * b;
      _mm512_store_ps(acc, _mm512_fmadd_ps(_mm512_cvtepi32_ps(a[j]), _mm512_set1_ps(steps[16 * j + g]), _mm512_load_ps(acc)));
    }
  };
  if (Int4) {
    // block b2 holds element blocks 2 b2 (low nibbles) and 2 b2 + 1 (high) of one V group
    // (groups are multiples of 32): as signed bytes times 16, the 16 coming off with the step
    LOWBIT_TILES_UNROLL
    for (std::size_t b = 0; b < blocks; b += 2) {
      const std::size_t g = b / per_group;
      const int8_t* vb = v + 256 * (b / 2);
      __m512i lo[NH], hi[NH];
      LOWBIT_TILES_UNROLL
      for (std::size_t j = 0; j < NH; ++j) lo[j] = hi[j] = _mm512_setzero_si512();
      LOWBIT_TILES_UNROLL
      for (std::size_t k = 0; k < 4; ++k) {
        const __m512i x = _mm512_load_si512(vb + 64 * k);
        const __m512i xl = _mm512_andnot_si512(nibble, _mm512_slli_epi16(x, 4)), xh = _mm512_andnot_si512(nibble, x);
        LOWBIT_TILES_UNROLL
        for (std::size_t j = 0; j < NH; ++j) {
          const __m512i w = word(j, g, k);
          lo[j] = dot::template dot<false>(lo[j], w, xl);
          if (b + 1 < blocks) hi[j] = dot::template dot<false>(hi[j], w, xh);
        }
      }
      finish(lo, b, g);
      if (b + 1 < blocks) finish(hi, b + 1, g);
    }
  } else {
    LOWBIT_TILES_UNROLL
    for (std::size_t b = 0; b < blocks; ++b) {
      const std::size_t g = b / per_group;
      const int8_t* vb = v + 256 * b;
      __m512i a[NH];
      LOWBIT_TILES_UNROLL
      for (std::size_t j = 0; j < NH; ++j) a[j] = _mm512_setzero_si512();
      LOWBIT_TILES_UNROLL
      for (std::size_t k = 0; k < 4; ++k) {
        const __m512i x = _mm512_load_si512(vb + 64 * k);
        LOWBIT_TILES_UNROLL
        for (std::size_t j = 0; j < NH; ++j) a[j] = dot::template dot<false>(a[j], word(j, g, k), x);
      }
      finish(a, b, g);
    }
  }
}

/// A tile of the loop: its bytes (null: none), its valid lanes, its normalized V scales.
struct tile_step {
  const uint8_t* tile = nullptr;
  __mmask16 valid = 0;
  const float* v_norm = nullptr;
  __m512 v_step = _mm512_setzero_ps();
};

/// NH query heads from j0 on over the tiles of one step. int4 (Pipelined): the previous tile's
/// softmax (its scores kept in scratch.scores since the last step), then the current tile's q·k,
/// then the previous tile's P V. The softmax is a long chain of dependent operations (maxima,
/// exp, rounding, packing) with little work in it; issued ahead of the next tile's dot products
/// its latency hides behind them, where in tile order (q·k, softmax, P V of one tile) the P V
/// waited for it. int8: one tile a step in that order (its tiles, twice the bytes, stream better
/// so; pipelined it ran 5-10% slower). D, GG: the head dimension and the groups per row when
/// known at compile time (0: L's), so that the common shapes' loops unroll.
template <class Tag, bool Int4, class Scale, std::size_t NH, std::size_t D = 0, std::size_t GG = 0>
void tile_heads(const tile_step& cur, const tile_step& prev, const int_tile_layout& L, const int_queries& qs, std::size_t j0,
                const int32_t* koff, const partial& out, tile_scratch& scratch) noexcept {
  const std::size_t d = D ? D : L.d, G = GG ? GG : L.groups;
  float* const scores = scratch.scores.data() + 16 * j0;
  float* const sums = scratch.sums.data() + 16 * j0;
  float* const steps = scratch.steps.data() + 16 * j0;
  float* const accs = scratch.acc.data() + j0 * d;
  const float* const qscale = scratch.qscale.data() + j0;
  const auto rest = [&](auto wb) {
    constexpr std::size_t WB = decltype(wb)::value;
    __m512i words[NH * WB];
    __m512 s[NH];
    if (!Int4) {
      tile_qk<Tag, Int4, Scale, NH>(cur.tile, d, G, L.k_scales_offset(), qs.plain + j0 * d, koff + j0 * G, qscale, s);
      softmax_tile_heads<Tag, Int4, NH, WB>(s, cur.valid, d, G, cur.v_norm, cur.v_step, out.max + j0, sums, accs, words, steps);
      tile_pv<Tag, Int4, NH, WB>(reinterpret_cast<const int8_t*>(cur.tile + L.v_offset()), d, d / G, words, steps, accs);
      return;
    }
    if (prev.tile) {
      LOWBIT_TILES_UNROLL
      for (std::size_t j = 0; j < NH; ++j) s[j] = _mm512_load_ps(scores + 16 * j);
      softmax_tile_heads<Tag, Int4, NH, WB>(s, prev.valid, d, G, prev.v_norm, prev.v_step, out.max + j0, sums, accs, words, steps);
    }
    if (cur.tile) {
      tile_qk<Tag, Int4, Scale, NH>(cur.tile, d, G, L.k_scales_offset(), qs.plain + j0 * d, koff + j0 * G, qscale, s);
      LOWBIT_TILES_UNROLL
      for (std::size_t j = 0; j < NH; ++j) _mm512_store_ps(scores + 16 * j, s[j]);
    }
    if (prev.tile)
      tile_pv<Tag, Int4, NH, WB, GG == 4>(reinterpret_cast<const int8_t*>(prev.tile + L.v_offset()), d, d / G, words, steps, accs);
  };
  switch ((G + 3) / 4) {  // the u8 weights of four V groups a register
    case 1: rest(std::integral_constant<std::size_t, 1>()); break;
    case 2: rest(std::integral_constant<std::size_t, 2>()); break;
    case 3: rest(std::integral_constant<std::size_t, 3>()); break;
    default: rest(std::integral_constant<std::size_t, 4>()); break;
  }
}

/// The group's query heads, four at a time, over the tiles of one step.
template <class Tag, bool Int4, class Scale, std::size_t D = 0, std::size_t GG = 0>
LOWBIT_ALWAYS_INLINE void tile_group(const tile_step& cur, const tile_step& prev, const int_tile_layout& L,
                                     const int_queries& qs, std::size_t group, const int32_t* koff, const partial& out,
                                     tile_scratch& scratch) noexcept {
  for (std::size_t j = 0; j < group; j += 4) {
    switch (std::min<std::size_t>(4, group - j)) {
      case 1: tile_heads<Tag, Int4, Scale, 1>(cur, prev, L, qs, j, koff, out, scratch); break;
      case 2: tile_heads<Tag, Int4, Scale, 2>(cur, prev, L, qs, j, koff, out, scratch); break;
      case 3: tile_heads<Tag, Int4, Scale, 3>(cur, prev, L, qs, j, koff, out, scratch); break;
      default: tile_heads<Tag, Int4, Scale, 4, D, GG>(cur, prev, L, qs, j, koff, out, scratch); break;
    }
  }
}

/// Tokens [t0, t1) of head h of sequence seq from the cache's integer tiles, for the `group`
/// query heads of qs (the plain codes, the scales).
template <class Tag, class Element>
void decode_chunk_tiles(const kv_cache<Element>& cache, std::size_t seq, std::size_t h, std::size_t t0, std::size_t t1,
                        const int_queries& qs, std::size_t group, const partial& out) {
  using Scale = typename Element::scale_type;
  constexpr bool Int4 = std::is_same<typename Element::format, int4>::value;
  const int_tile_layout& L = cache.tile_layout();
  const std::size_t d = L.d, G = L.groups, gs = d / G;
  thread_local tile_scratch scratch_local;
  tile_scratch& scratch = scratch_local;
  scratch.reserve(group, G, d);
  int32_t* const koff = scratch.koff.data();
  float* const sums = scratch.sums.data();
  float* const accs = scratch.acc.data();
  const int32_t bias = Int4 ? 8 : 128;
  for (std::size_t j = 0; j < group; ++j) {
    scratch.qscale[j] = qs.scale[j] * 1.44269504088896341f;
    out.max[j] = -std::numeric_limits<float>::infinity();
    out.sum[j] = 0.0f;
    std::fill(accs + j * d, accs + (j + 1) * d, 0.0f);
    std::fill(sums + 16 * j, sums + 16 * (j + 1), 0.0f);
    for (std::size_t g = 0; g < G; ++g) {
      int32_t sum = 0;
      for (std::size_t e = g * gs; e < (g + 1) * gs; ++e) sum += qs.plain[j * d + e];
      koff[j * G + g] = -bias * sum;
    }
  }
  // int4: one step per tile and one more, step i running tile i's q·k and tile i - 1's softmax
  // and P V (tile_heads); int8: a tile a step.
  alignas(64) float v_norms[2][16 * 16];
  tile_step prev;
  for (std::size_t start = t0 / 16 * 16, k = 0;; start += 16, k ^= 1) {
    tile_step cur;
    if (start < t1) {
      const std::size_t lo = std::max(t0, start) - start, hi = std::min(t1, start + 16) - start;
      cur.valid = static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
      cur.tile = kv_unchecked::tile(cache, seq, h, start);
      if (Int4) {
        // The pipelined order reads each tile's V a step after its K, out of the order of the
        // addresses, which the hardware prefetcher then streamed at half the rate (S = 32768,
        // 4.2 against 2.4 ms a call): the tile two ahead is asked for, into L2.
        if (start + 32 < t1) {
          const char* ahead = reinterpret_cast<const char*>(kv_unchecked::tile(cache, seq, h, start + 32));
          for (std::size_t offset = 0; offset < L.bytes; offset += 64) _mm_prefetch(ahead + offset, _MM_HINT_T2);
        }
      } else if (cache.paged() && start + 16 < t1 && (start + 16) % cache.shape().page_tokens == 0) {
        // A head's tiles follow each other in memory (within a page), which the hardware
        // prefetcher streams without help (prefetching every tile's lines cost more than it
        // saved); across a page boundary the next tile is asked for.
        prefetch(kv_unchecked::tile(cache, seq, h, start + 16), L.bytes);
      }
      cur.v_norm = v_norms[k];
    }
    if (!Int4 && !cur.tile) break;
    // head dimension 128 with one, two or four groups (int8 / int4 per token-head, int4 in
    // groups of 64 or 32) unrolled, the V scales' normalization too; other shapes in loops
    const auto run = [&](auto dd, auto gg) {
      constexpr std::size_t D = decltype(dd)::value, GG = decltype(gg)::value;
      if (cur.tile) cur.v_step = normalize_v_scales<Scale, Int4>(cur.tile, L, cur.valid, v_norms[k], GG ? GG : G);
      tile_group<Tag, Int4, Scale, D, GG>(cur, prev, L, qs, group, koff, out, scratch);
    };
    using zero = std::integral_constant<std::size_t, 0>;
    using d128 = std::integral_constant<std::size_t, 128>;
    if (d == 128 && G == 1) {
      run(d128(), std::integral_constant<std::size_t, 1>());
    } else if (d == 128 && G == 2) {
      run(d128(), std::integral_constant<std::size_t, 2>());
    } else if (d == 128 && G == 4) {
      run(d128(), std::integral_constant<std::size_t, 4>());
    } else {
      run(zero(), zero());
    }
    if (!cur.tile) break;
    prev = cur;
  }
  for (std::size_t j = 0; j < group; ++j) {
    out.sum[j] = _mm512_reduce_add_ps(_mm512_load_ps(sums + 16 * j));
    out.max[j] *= 0.693147180559945309f;  // the running maxima were in base 2
  }
  std::copy(accs, accs + group * d, out.acc);
}
#endif

}  // namespace detail
}  // namespace attention
}  // namespace lowbit

#undef LOWBIT_TILES_UNROLL

LOWBIT_SIMD_DIAGNOSTICS_END
