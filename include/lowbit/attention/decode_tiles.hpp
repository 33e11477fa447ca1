/// \file
/// \brief The AVX-512 integer decode kernel over a kv_cache's integer tiles (int_tiles.hpp,
/// kv_shape::integer_tiles): decode_options::integer_pv with the bytes already where vpdpbusd
/// wants them.
///
/// Per 16-token tile of one KV head, for the group's query heads (four at a time for q·k):
/// - q·k with tokens in lanes: vpdpbusd of each 64-byte K block (16 tokens x 4 elements,
///   unsigned) against four query codes broadcast, so one zmm holds the 16 tokens' partial sums
///   and no lane reduction is needed; per key group the int32 sums (minus the unsigned bias
///   times the query's sum over the group) are scaled by the 16 tokens' key scales.
/// - online softmax on the 16 scores of each head, and the V weights w_t = p_t · s_v(t, g)
///   rounded to u8 per tile, head and V group, against max_t p_t · max_t s_v(t, g) (>= every
///   w_t; the V part is shared by the heads, so one reciprocal per head and tile) rather than
///   against max_t w_t: the step is at most the one decode_integer.hpp's bound allows
///   ((max p in the tile) · max s_v / 255), so the same bound holds.
/// - P V with elements in lanes: vpdpbusd of the weights of four tokens broadcast against each V
///   block (16 elements x 4 tokens), int32 per tile, scaled into the float sums (element order).
/// int4 tiles: K and V nibbles split in registers (K: low nibbles elements 8c..8c+3, high
/// 8c+4..8c+7), the high nibbles used in place as 16 times their value.
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

/// q·k of NH query heads (codes q + j·d, offsets koff + j·G, scales qscale[j]) against one tile:
/// the 16 tokens' scores of head j into scores + 16 j.
template <class Tag, bool Int4, class Scale, std::size_t NH>
void tile_qk(const uint8_t* tile, const int_tile_layout& L, const int8_t* q, const int32_t* koff, const float* qscale,
             float* scores) noexcept {
  using dot = simd::int8_dot<Tag>;
  const std::size_t d = L.d, G = L.groups, blocks = (Int4 ? d / 8 : d / 4) / G;  // K blocks per group
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  __m512 f[NH];
  for (std::size_t j = 0; j < NH; ++j) f[j] = _mm512_setzero_ps();
  for (std::size_t g = 0; g < G; ++g) {
    __m512i a0[NH], a1[NH];  // two chains per head: even and odd blocks (int8) or nibbles (int4)
    for (std::size_t j = 0; j < NH; ++j) {
      a0[j] = _mm512_set1_epi32(koff[j * G + g]);
      a1[j] = _mm512_setzero_si512();
    }
    const uint8_t* k = tile + 64 * g * blocks;
    if (Int4) {
      const int8_t* qg = q + 8 * g * blocks;
      for (std::size_t c = 0; c < blocks; ++c) {
        // The high nibbles stay in place: 16 times their value, divided out once per group.
        const __m512i x = _mm512_load_si512(k + 64 * c);
        const __m512i lo = _mm512_and_si512(x, nibble), hi = _mm512_andnot_si512(nibble, x);
        for (std::size_t j = 0; j < NH; ++j) {
          a0[j] = dot::template dot<true>(a0[j], lo, broadcast_codes(qg + j * d + 8 * c));
          a1[j] = dot::template dot<false>(a1[j], hi, broadcast_codes(qg + j * d + 8 * c + 4));
        }
      }
    } else {
      const int8_t* qg = q + 4 * g * blocks;
      for (std::size_t c = 0; c < blocks; c += 2) {  // blocks is even (groups of 16 elements or more)
        const __m512i x0 = _mm512_load_si512(k + 64 * c), x1 = _mm512_load_si512(k + 64 * c + 64);
        for (std::size_t j = 0; j < NH; ++j) {
          a0[j] = dot::template dot<false>(a0[j], x0, broadcast_codes(qg + j * d + 4 * c));
          a1[j] = dot::template dot<false>(a1[j], x1, broadcast_codes(qg + j * d + 4 * c + 4));
        }
      }
    }
    const __m512 ks = tile_scales<Scale>(tile + L.k_scales_offset() + 16 * g * sizeof(Scale));
    for (std::size_t j = 0; j < NH; ++j)
      f[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0[j], Int4 ? _mm512_srai_epi32(a1[j], 4) : a1[j])), ks, f[j]);
  }
  for (std::size_t j = 0; j < NH; ++j) _mm512_store_ps(scores + 16 * j, _mm512_mul_ps(f[j], _mm512_set1_ps(qscale[j])));
}

/// Per-thread buffers of the tile kernel.
struct tile_scratch {
  std::vector<int32_t> koff;       ///< group x G: minus the bias times the query's sum per key group
  aligned_buffer<float> scores;    ///< group x 16
  aligned_buffer<float> sums;      ///< group x 16: the softmax sums per lane
  aligned_buffer<float> acc;       ///< group x d: the V sums (64-byte aligned, unlike partial::acc)
  aligned_buffer<uint32_t> words;  ///< group x G x 4: a tile's u8 V weights, four tokens a word
  aligned_buffer<float> steps;     ///< group x G: what a weight's unit is worth
  void reserve(std::size_t group, std::size_t groups, std::size_t d) {
    if (acc.size() < group * d) acc = aligned_buffer<float>(group * d);
    if (steps.size() < group * groups) {
      words = aligned_buffer<uint32_t>(group * groups * 4);
      steps = aligned_buffer<float>(group * groups);
    }
    if (koff.size() < group * groups) koff.resize(group * groups);
    if (scores.size() < group * 16) {
      scores = aligned_buffer<float>(group * 16);
      sums = aligned_buffer<float>(group * 16);
    }
  }
};

/// Tokens [t0, t1) of head h of sequence seq from the cache's integer tiles, for the `group`
/// query heads of qs (the plain codes, the scales).
template <class Tag, class Element>
void decode_chunk_tiles(const kv_cache<Element>& cache, std::size_t seq, std::size_t h, std::size_t t0, std::size_t t1,
                        const int_queries& qs, std::size_t group, const partial& out) {
  using Scale = typename Element::scale_type;
  using dot = simd::int8_dot<Tag>;
  constexpr bool Int4 = std::is_same<typename Element::format, int4>::value;
  const int_tile_layout& L = cache.tile_layout();
  const std::size_t d = L.d, G = L.groups, gs = d / G;
  thread_local tile_scratch scratch_local;
  tile_scratch& scratch = scratch_local;
  scratch.reserve(group, G, d);
  int32_t* const koff = scratch.koff.data();
  float* const scores = scratch.scores.data();
  float* const sums = scratch.sums.data();
  float* const accs = scratch.acc.data();
  uint32_t* const words = scratch.words.data();
  float* const steps = scratch.steps.data();
  const int32_t bias = Int4 ? 8 : 128;
  for (std::size_t j = 0; j < group; ++j) {
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
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  for (std::size_t start = t0 / 16 * 16; start < t1; start += 16) {
    const std::size_t lo = std::max(t0, start) - start, hi = std::min(t1, start + 16) - start;
    const __mmask16 valid = static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
    const uint8_t* tile = cache.tile(seq, h, start);
    // A head's tiles follow each other in memory (within a page), which the hardware prefetcher
    // streams without help (prefetching every tile's lines cost more than it saved); across a
    // page boundary the next tile is asked for.
    if (cache.paged() && start + 16 < t1 && (start + 16) % cache.shape().page_tokens == 0)
      prefetch(cache.tile(seq, h, start + 16), L.bytes);
    for (std::size_t j = 0; j < group; j += 4) {
      const int8_t* q = qs.plain + j * d;
      switch (std::min<std::size_t>(4, group - j)) {
        case 1: tile_qk<Tag, Int4, Scale, 1>(tile, L, q, koff + j * G, qs.scale + j, scores + 16 * j); break;
        case 2: tile_qk<Tag, Int4, Scale, 2>(tile, L, q, koff + j * G, qs.scale + j, scores + 16 * j); break;
        case 3: tile_qk<Tag, Int4, Scale, 3>(tile, L, q, koff + j * G, qs.scale + j, scores + 16 * j); break;
        default: tile_qk<Tag, Int4, Scale, 4>(tile, L, q, koff + j * G, qs.scale + j, scores + 16 * j); break;
      }
    }
    const int8_t* v = reinterpret_cast<const int8_t*>(tile + L.v_offset());
    // The tile's V scales per group, normalized to their largest (shared by every head).
    alignas(64) float v_norm[16 * 16], v_step[16];
    for (std::size_t g = 0; g < G; ++g) {
      const __m512 vs = _mm512_maskz_mov_ps(valid, tile_scales<Scale>(tile + L.v_scales_offset() + 16 * g * sizeof(Scale)));
      const float m = _mm512_reduce_max_ps(vs);
      v_step[g] = m / 255.0f;
      // times 255 / m, one scalar division (a vector one costs more than the rest of this loop);
      // vs / m first when 255 / m would overflow (m below ~7.5e-37)
      __m512 norm = _mm512_setzero_ps();
      if (m >= 255.0f / std::numeric_limits<float>::max()) {
        norm = _mm512_mul_ps(vs, _mm512_set1_ps(255.0f / m));
      } else if (m > 0.0f) {
        norm = _mm512_mul_ps(_mm512_div_ps(vs, _mm512_set1_ps(m)), _mm512_set1_ps(255.0f));
      }
      _mm512_store_ps(v_norm + 16 * g, norm);
    }
    for (std::size_t j = 0; j < group; ++j) {
      // Online softmax over the tile's valid tokens; the sums stay in lanes until the chunk ends.
      const __m512 s = _mm512_load_ps(scores + 16 * j);
      const float tile_max = _mm512_mask_reduce_max_ps(valid, s);
      const float new_max = std::max(out.max[j], tile_max);
      float* acc = accs + j * d;
      float* sum = sums + 16 * j;
      if (new_max != out.max[j]) {  // rescale what came before (0 on the first tile: max was -inf)
        const __m512 c = _mm512_set1_ps(std::exp(out.max[j] - new_max));
        for (std::size_t e = 0; e < d; e += 16) _mm512_store_ps(acc + e, _mm512_mul_ps(_mm512_load_ps(acc + e), c));
        _mm512_store_ps(sum, _mm512_mul_ps(_mm512_load_ps(sum), c));
        out.max[j] = new_max;
      }
      // p_t = exp(s_t - max) = pr_t p_max with pr_t = exp(s_t - tile max) <= 1 and p_max =
      // exp(tile max - max): no second reduction, no division (p_max may be denormal or 0).
      const __m512 pr = _mm512_maskz_mov_ps(
          valid, xsimd::exp(xsimd::batch<float, typename Tag::xsimd_arch>(_mm512_sub_ps(s, _mm512_set1_ps(tile_max)))).data);
      const float p_max = std::exp(tile_max - new_max);
      _mm512_store_ps(sum, _mm512_fmadd_ps(pr, _mm512_set1_ps(p_max), _mm512_load_ps(sum)));
      // The V weights w_t = p_t s_v(t, g), rounded to u8 per group against p_max times the
      // group's largest V scale (>= every w_t): 16 bytes, four tokens a 32-bit word.
      for (std::size_t g = 0; g < G; ++g) {
        _mm_store_si128(reinterpret_cast<__m128i*>(words + 4 * (j * G + g)),
                        _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(pr, _mm512_load_ps(v_norm + 16 * g)))));
        steps[j * G + g] = p_max * v_step[g] * (Int4 ? 1.0f / 16 : 1.0f);  // 0 when every weight underflowed
      }
    }
    // P V: per head and V group, the words broadcast against the V blocks, int32 per tile.
    for (std::size_t j = 0; j < group; ++j) {
      float* acc = accs + j * d;
      for (std::size_t g = 0; g < G; ++g) {
        if (!(steps[j * G + g] > 0.0f)) continue;
        const uint32_t* wg = words + 4 * (j * G + g);
        const __m512i w0 = _mm512_set1_epi32(static_cast<int>(wg[0])), w1 = _mm512_set1_epi32(static_cast<int>(wg[1]));
        const __m512i w2 = _mm512_set1_epi32(static_cast<int>(wg[2])), w3 = _mm512_set1_epi32(static_cast<int>(wg[3]));
        const __m512 fs = _mm512_set1_ps(steps[j * G + g]);
        for (std::size_t b = g * gs / 16; b < (g + 1) * gs / 16; ++b) {
          // int4: block b's nibbles of V block b / 2 as signed bytes times 16 (high nibbles in
          // place, low ones shifted up; the 16 comes off with the step), split in registers
          // for every head: with a scratch copy of the tile's V (4 kB of stores a tile) the
          // kernel ran at half speed in more processes (address-dependent, not understood)
          const int8_t* vb = v + 256 * (Int4 ? b / 2 : b);
          const auto codes = [&](std::size_t k) {
            const __m512i x = _mm512_load_si512(vb + 64 * k);
            return Int4 ? _mm512_andnot_si512(nibble, b % 2 ? x : _mm512_slli_epi16(x, 4)) : x;
          };
          __m512i a = dot::template dot<false>(_mm512_setzero_si512(), w0, codes(0));
          a = dot::template dot<false>(a, w1, codes(1));
          a = dot::template dot<false>(a, w2, codes(2));
          a = dot::template dot<false>(a, w3, codes(3));
          _mm512_store_ps(acc + 16 * b, _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), fs, _mm512_load_ps(acc + 16 * b)));
        }
      }
    }
  }
  for (std::size_t j = 0; j < group; ++j) out.sum[j] = _mm512_reduce_add_ps(_mm512_load_ps(sums + 16 * j));
  std::copy(accs, accs + group * d, out.acc);
}
#endif

}  // namespace detail
}  // namespace attention
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
