/// \file
/// \brief The AVX-512 decode kernel over a bf16 or fp32 cache: K and V rows are read in place
/// (bf16 widened in registers), never copied into a float tile.
///
/// A row is read 32 elements at a time as two vectors. fp32: its first and last 16. bf16: one
/// 64-byte load; a bf16 is a float's high half, so shifting each 32-bit word left by 16 gives
/// the even elements as floats and clearing its low half the odd ones. The query heads are
/// kept in the same order (block_element) and so are the V sums, put back in element order once
/// per chunk. Per 16-token tile:
/// - q·k: 4 tokens x up to 4 query heads a register block (16 accumulators), each K register
///   used by every head of the block; the block's 16 lane sums by one transpose-add tree, in
///   registers.
/// - online softmax of up to 4 heads side by side (softmax_rows_heads: one shuffle tree for the
///   maxima, exp_tile for the probabilities; the V sums rescaled only when a maximum moved).
/// - Head dimension 128 compiled with its loops unrolled and no tail checks.
/// - P V: per head, the sums of two 32-element blocks (4 accumulators), each V register used by
///   every head of the block, the probability broadcast; for d = 80..128 pairs of heads over
///   whole rows (up to 8 accumulators a head), so that V is first read in address order.
/// Products and sums in fp32, as the float path; only the order of the sums differs. No
/// software prefetch (see prefetch_new_page).
/// decode_options::bf16 on a bf16 cache on the avx512_vnni path: vdpbf16ps straight on the rows
/// (q and the probabilities rounded to bf16), half the product instructions: q·k one vdpbf16ps
/// per 32 elements, token and head; P V on pairs of rows interleaved (vpunpck{l,h}wd) against
/// pairs of probabilities. No masked loads but at a row's tail: with a masked 16-bit load on every
/// block this kernel ran 3x slower.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "../arch/dispatch.hpp"
#include "../core/aligned.hpp"
#include "../kernels/simd/ops.hpp"
#include "kv_cache.hpp"
#include "tile_ops.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace attention {
namespace detail {

#if defined(LOWBIT_COMPILED_AVX512)
constexpr std::size_t row_block = 32;  ///< elements of a row per step (two vectors)

/// Elements [e, e + 32) of a bf16 row of d elements as they are (zeros past d).
LOWBIT_ALWAYS_INLINE __m512i load_row_words(const uint16_t* row, std::size_t e, std::size_t d) noexcept {
  return e + row_block <= d ? _mm512_loadu_si512(row + e)
                            : _mm512_maskz_loadu_epi16(static_cast<__mmask32>((1u << (d - e)) - 1), row + e);
}

/// Elements [32 b, 32 b + 32) of a row of d elements (zeros past d) as two vectors, bf16: the
/// even and the odd elements.
LOWBIT_ALWAYS_INLINE void load_row_block(const uint16_t* row, std::size_t b, std::size_t d, __m512& even,
                                         __m512& odd) noexcept {
  const __m512i w = load_row_words(row, b * row_block, d);
  even = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  odd = _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}
/// fp32: the first and the last 16 (d is a multiple of 16, so only the last can be past d).
LOWBIT_ALWAYS_INLINE void load_row_block(const float* row, std::size_t b, std::size_t d, __m512& first,
                                         __m512& last) noexcept {
  const std::size_t e = b * row_block;
  first = _mm512_loadu_ps(row + e);
  last = e + row_block <= d ? _mm512_loadu_ps(row + e + 16) : _mm512_setzero_ps();
}

/// The element of a 32-element block that load_row_block puts in vector lane p (0..31).
template <class Raw>
constexpr std::size_t block_element(std::size_t p) noexcept {
  return std::is_same<Raw, float>::value ? p : 2 * (p % 16) + p / 16;
}

/// The element of a 32-element block in accumulator lane p (0..31) of rows_tile_values with bf16
/// products: vpunpcklwd / vpunpckhwd of two rows pair the 4 elements 8L.. / 8L + 4.. of each
/// 128-bit lane L.
constexpr std::size_t pair_element(std::size_t p) noexcept { return 8 * (p % 16 / 4) + 4 * (p / 16) + p % 4; }

/// Quarter J of x[0], x[1], x[2], x[3], in that order.
template <int J>
LOWBIT_ALWAYS_INLINE __m512 quarters_of(const __m512* x) noexcept {
  const __m512 lo = _mm512_shuffle_f32x4(x[0], x[1], J * 0x55), hi = _mm512_shuffle_f32x4(x[2], x[3], J * 0x55);
  return _mm512_shuffle_f32x4(lo, hi, 0x88);
}
LOWBIT_ALWAYS_INLINE __m512 quarters_of(const __m512* x, std::size_t j) noexcept {
  switch (j) {
    case 0: return quarters_of<0>(x);
    case 1: return quarters_of<1>(x);
    case 2: return quarters_of<2>(x);
    default: return quarters_of<3>(x);
  }
}

/// scores[j][i] = q_j · k_i for the HB heads at q (blocks x 32 elements each) and the 16 rows of a
/// tile (row i at k + min(i, n - 1) * d: rows past n repeat the last one, and are ignored). Q float:
/// q in load_row_block's order, two FMAs per block, token and head. Q uint16_t (bf16 products, a
/// bf16 cache, AVX-512 BF16): q's bf16 bits in element order, one vdpbf16ps on the row's words.
/// Per 4 tokens the 16 accumulators (4 heads x 4 tokens) are summed into one vector at once (a
/// head's 16 accumulators through memory cost 64 stores and loads a tile); then 128-bit quarters
/// of the four vectors are regrouped by head. D: the head dimension when known at compile time.
template <class Tag, std::size_t HB, std::size_t D, class Q, class Raw>
void rows_tile_scores(const Q* q, std::size_t blocks, const Raw* k, std::size_t n, std::size_t d,
                      float* scores) noexcept {
  if (D) d = D, blocks = (D + row_block - 1) / row_block;
  __m512 r[4];  // tokens 4 g .. 4 g + 3: lane 4 j + t holds head j's score of token 4 g + t
  for (std::size_t i0 = 0; i0 < tile_tokens; i0 += 4) {
    const Raw* rows[4];
    for (std::size_t t = 0; t < 4; ++t) rows[t] = k + std::min(i0 + t, n - 1) * d;
    __m512 acc[4][4];
    LOWBIT_UNROLL
    for (std::size_t j = 0; j < 4; ++j)
      LOWBIT_UNROLL
      for (std::size_t t = 0; t < 4; ++t) acc[j][t] = _mm512_setzero_ps();
    for (std::size_t b = 0; b < blocks; ++b)
      LOWBIT_UNROLL
      for (std::size_t t = 0; t < 4; ++t) {
        if constexpr (std::is_same<Q, float>::value) {
          __m512 even, odd;
          load_row_block(rows[t], b, d, even, odd);
          LOWBIT_UNROLL
          for (std::size_t j = 0; j < HB; ++j) {
            const float* qj = q + (j * blocks + b) * row_block;
            acc[j][t] = _mm512_fmadd_ps(_mm512_load_ps(qj), even, acc[j][t]);
            acc[j][t] = _mm512_fmadd_ps(_mm512_load_ps(qj + 16), odd, acc[j][t]);
          }
        } else {
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
          const __m512bh kv = (__m512bh)load_row_words(rows[t], b * row_block, d);
          LOWBIT_UNROLL
          for (std::size_t j = 0; j < HB; ++j)
            acc[j][t] = _mm512_dpbf16_ps(acc[j][t], (__m512bh)_mm512_load_si512(q + (j * blocks + b) * row_block), kv);
#endif
        }
      }
    r[i0 / 4] = sum_lanes16(&acc[0][0]);
  }
  // head j: quarter j of r[0], r[1], r[2], r[3]
  LOWBIT_UNROLL
  for (std::size_t j = 0; j < HB; ++j) _mm512_storeu_ps(scores + j * tile_tokens, quarters_of(r, j));
}

/// acc_j = acc_j * correction[j] + sum_i p[j][i] v_i over the n rows of a tile, for the HB heads'
/// sums at acc_split (blocks x 32 floats each) and the NB blocks from b0 on. P float: the
/// probabilities (16 a head), a token at a time, sums in load_row_block's order. P uint32_t (bf16
/// products): pairs of bf16 probabilities (8 words a head, tokens 2i and 2i + 1 in word i) against
/// two rows' words interleaved, one vdpbf16ps per 16 elements, token pair and head, sums in
/// pair_element order.
template <std::size_t HB, std::size_t NB, std::size_t D, class P, class Raw>
void rows_tile_values(const P* p, const float* correction, const Raw* v, std::size_t n, std::size_t d,
                      std::size_t blocks, std::size_t b0, float* acc_split) noexcept {
  constexpr std::size_t R = 2 * NB;
  if (D) d = D, blocks = (D + row_block - 1) / row_block;  // (D: the head dimension when known at compile time)
  __m512 acc[HB][R];
  LOWBIT_UNROLL
  for (std::size_t j = 0; j < HB; ++j) {
    LOWBIT_UNROLL
    for (std::size_t r = 0; r < R; ++r) acc[j][r] = _mm512_load_ps(acc_split + (j * blocks + b0) * row_block + 16 * r);
    if (correction[j] != 1.0f) {  // 1 (exactly) unless the head's maximum moved
      const __m512 c = _mm512_set1_ps(correction[j]);
      LOWBIT_UNROLL
      for (std::size_t r = 0; r < R; ++r) acc[j][r] = _mm512_mul_ps(acc[j][r], c);
    }
  }
  if constexpr (std::is_same<P, float>::value) {
    for (std::size_t i = 0; i < n; ++i) {
      __m512 x[R];
      LOWBIT_UNROLL
      for (std::size_t h = 0; h < NB; ++h) load_row_block(v + i * d, b0 + h, d, x[2 * h], x[2 * h + 1]);
      LOWBIT_UNROLL
      for (std::size_t j = 0; j < HB; ++j) {
        const __m512 pj = _mm512_set1_ps(p[j * tile_tokens + i]);
        LOWBIT_UNROLL
        for (std::size_t r = 0; r < R; ++r) acc[j][r] = _mm512_fmadd_ps(pj, x[r], acc[j][r]);
      }
    }
  } else {
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
    for (std::size_t i = 0; i < n; i += 2) {
      const Raw* r0 = v + i * d;
      const Raw* r1 = v + std::min(i + 1, n - 1) * d;  // past n: its probability is 0
      __m512i x[R];
      for (std::size_t h = 0; h < R / 2; ++h) {
        const __m512i w0 = load_row_words(r0, (b0 + h) * row_block, d), w1 = load_row_words(r1, (b0 + h) * row_block, d);
        x[2 * h] = _mm512_unpacklo_epi16(w0, w1);
        x[2 * h + 1] = _mm512_unpackhi_epi16(w0, w1);
      }
      LOWBIT_UNROLL
      for (std::size_t j = 0; j < HB; ++j) {
        const __m512bh pj = (__m512bh)_mm512_set1_epi32(static_cast<int>(p[j * (tile_tokens / 2) + i / 2]));
        LOWBIT_UNROLL
        for (std::size_t r = 0; r < R; ++r) acc[j][r] = _mm512_dpbf16_ps(acc[j][r], pj, (__m512bh)x[r]);
      }
    }
#endif
  }
  LOWBIT_UNROLL
  for (std::size_t j = 0; j < HB; ++j)
    LOWBIT_UNROLL
    for (std::size_t r = 0; r < R; ++r) _mm512_store_ps(acc_split + (j * blocks + b0) * row_block + 16 * r, acc[j][r]);
}

/// The online-softmax step of HB query heads over a tile's scores (16 a head, those past n
/// ignored), the heads side by side in quarters of one vector: updates max and sum, leaves
/// exp(score - max) in scores (0 past n) and the factors that rescale the heads' earlier V sums
/// in corrections (exactly 1 when a maximum did not move, 0 on the first tile). One shuffle tree
/// for the HB tile maxima and exp_tile for the probabilities, where a head at a time (scalar
/// maxima and sums, a libm exp) was a long dependent chain per head and tile.
template <std::size_t HB>
LOWBIT_ALWAYS_INLINE void softmax_rows_heads(float* scores, std::size_t n, float* max, float* sum, float* corrections) noexcept {
  const __mmask16 valid = static_cast<__mmask16>((1u << n) - 1);
  const __m512 minus_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 s[HB];
  LOWBIT_UNROLL
  for (std::size_t j = 0; j < HB; ++j) s[j] = _mm512_mask_loadu_ps(minus_inf, valid, scores + j * tile_tokens);
  const __m512 tile_max = quarter_max<HB>(s);  // quarter j: head j's
  const __m512 old_max = running_max_quarters<HB>(tile_max, max);
  const __m512 new_max = _mm512_max_ps(old_max, tile_max);
  // exp(old - new): 0 where old is -inf (the first tile; exp_tile would give NaN)
  const __m512 c = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(old_max, minus_inf, _CMP_NEQ_OQ),
                                       exp_tile(_mm512_sub_ps(old_max, new_max)));
  alignas(64) float cs[16], ms[16];
  _mm512_store_ps(cs, c);
  _mm512_store_ps(ms, new_max);
  LOWBIT_UNROLL
  for (std::size_t j = 0; j < HB; ++j) {
    const __m512 p = _mm512_maskz_mov_ps(valid, exp_tile(_mm512_sub_ps(s[j], quarter(new_max, j))));
    _mm512_storeu_ps(scores + j * tile_tokens, p);
    sum[j] = sum[j] * cs[4 * j] + _mm512_reduce_add_ps(p);
    max[j] = ms[4 * j];
    corrections[j] = cs[4 * j];
  }
}

/// Runs f(j0, HB-constant) over the group's heads, four at a time, then the rest.
template <class F>
LOWBIT_ALWAYS_INLINE void for_head_blocks(std::size_t group, F&& f) {
  std::size_t j0 = 0;
  for (; j0 + 4 <= group; j0 += 4) f(j0, std::integral_constant<std::size_t, 4>{});
  switch (group - j0) {
    case 3: f(j0, std::integral_constant<std::size_t, 3>{}); break;
    case 2: f(j0, std::integral_constant<std::size_t, 2>{}); break;
    case 1: f(j0, std::integral_constant<std::size_t, 1>{}); break;
    default: break;
  }
}

/// Tokens [t0, t1) of head h of sequence seq of a bf16 or fp32 cache, for the `group` query
/// heads at q (group x d, already multiplied by the scale). Rounded: decode_options::bf16 on a
/// bf16 cache (q already rounded): the probabilities are rounded too, the softmax sums keep them
/// unrounded. Products (AVX-512 BF16): that option on vdpbf16ps.
template <class Tag, class Element, bool Products = false>
void decode_chunk_rows(const kv_cache<Element>& cache, std::size_t seq, std::size_t h, std::size_t t0, std::size_t t1,
                       const float* q, std::size_t group, bool rounded, const partial& out) {
  static_assert(std::is_same<Element, float>::value || std::is_same<Element, bf16>::value, "fp32 or bf16 rows");
  static_assert(!Products || std::is_same<Element, bf16>::value, "bf16 products read bf16 rows");
  using Raw = std::conditional_t<std::is_same<Element, bf16>::value, uint16_t, float>;  // bf16's bits
  const std::size_t d = cache.shape().head_dim, blocks = (d + row_block - 1) / row_block, split = blocks * row_block;
  const auto position = [](std::size_t e) {  // the element at position e of a head's V sums (and q)
    const std::size_t p = e % row_block;
    return e - p + (Products ? pair_element(p) : block_element<Raw>(p));
  };
  thread_local aligned_buffer<float> q_buffer, acc_buffer, score_buffer;
  thread_local aligned_buffer<uint32_t> pair_buffer;
  if (Products && pair_buffer.size() < group * (tile_tokens / 2)) pair_buffer = aligned_buffer<uint32_t>(group * (tile_tokens / 2));
  uint32_t* const p_pairs = pair_buffer.data();
  (void)p_pairs;
  if (q_buffer.size() < group * split) q_buffer = aligned_buffer<float>(group * split), acc_buffer = aligned_buffer<float>(group * split);
  if (score_buffer.size() < group * (tile_tokens + 1)) score_buffer = aligned_buffer<float>(group * (tile_tokens + 1));
  float* const q_split = q_buffer.data();
  float* const acc_split = acc_buffer.data();
  float* const scores = score_buffer.data();
  float* const corrections = scores + group * tile_tokens;
  // q in the order of load_row_block (or, with Products, q's bf16 bits in element order).
  uint16_t* const q_bits = reinterpret_cast<uint16_t*>(q_split);
  const auto* const q_operand = [&] {  // what rows_tile_scores reads
    if constexpr (Products) return static_cast<const uint16_t*>(q_bits);
    else return static_cast<const float*>(q_split);
  }();
  for (std::size_t j = 0; j < group; ++j) {
    for (std::size_t e = 0; e < split; ++e) {
      if (Products) {
        q_bits[j * split + e] = e < d ? bf16(q[j * d + e]).bits : 0;
      } else {
        const std::size_t element = position(e);
        q_split[j * split + e] = element < d ? q[j * d + element] : 0.0f;
      }
      acc_split[j * split + e] = 0.0f;
    }
    out.max[j] = -std::numeric_limits<float>::infinity();
    out.sum[j] = 0.0f;
  }
  const Raw* const keys = reinterpret_cast<const Raw*>(cache.keys().data.data());
  const Raw* const values = reinterpret_cast<const Raw*>(cache.values().data.data());
  // One tile; D: the head dimension when known at compile time (128), else 0.
  const auto run_tile = [&](std::size_t t, std::size_t n, auto dd) {
    constexpr std::size_t D = decltype(dd)::value;
    const std::size_t r0 = kv_unchecked::row(cache, seq, h, t);
    prefetch_new_page(cache, seq, h, t + n, t1);
    const Raw* const k = keys + r0 * d;
    const Raw* const v = values + r0 * d;
    for_head_blocks(group, [&](std::size_t j0, auto hb) {
      rows_tile_scores<Tag, decltype(hb)::value, D>(q_operand + j0 * split, blocks, k, n, d, scores + j0 * tile_tokens);
    });
    for_head_blocks(group, [&](std::size_t j0, auto hb) {
      softmax_rows_heads<decltype(hb)::value>(scores + j0 * tile_tokens, n, out.max + j0, out.sum + j0, corrections + j0);
    });
    for (std::size_t j = 0; j < group; ++j) {
      float* p = scores + j * tile_tokens;
      if constexpr (Products) {  // pairs of bf16 (nearest even): tokens 2i, 2i + 1 in word i
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
        _mm256_store_si256(reinterpret_cast<__m256i*>(p_pairs + j * (tile_tokens / 2)),
                           (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(p)));
#endif
      } else if (rounded) {
        round_bf16(p, tile_tokens);
      }
    }
    const auto probabilities = [&](std::size_t j0) {
      if constexpr (Products) return p_pairs + j0 * (tile_tokens / 2);
      else return scores + j0 * tile_tokens;
    };
    if (blocks == 3 || blocks == 4) {
      // Whole rows a pass, heads in pairs (d = 80..128): the tile's V rows are first read in
      // address order. Four heads over half rows in two passes read lines 0-1 of each row, then
      // 2-3, which the hardware prefetcher streamed worse (bf16, S = 32768, one thread: 9.5-10.5
      // against 8.9-9.4 ms a call). Each sum is the same sequence of operations either way.
      for (std::size_t j0 = 0; j0 < group; j0 += 2) {
        const auto* p = probabilities(j0);
        float* acc = acc_split + j0 * split;
        const bool pair = j0 + 2 <= group;
        if (blocks == 4) {
          if (pair) rows_tile_values<2, 4, D>(p, corrections + j0, v, n, d, blocks, 0, acc);
          else rows_tile_values<1, 4, D>(p, corrections + j0, v, n, d, blocks, 0, acc);
        } else {
          if (pair) rows_tile_values<2, 3, D>(p, corrections + j0, v, n, d, blocks, 0, acc);
          else rows_tile_values<1, 3, D>(p, corrections + j0, v, n, d, blocks, 0, acc);
        }
      }
    } else {
      for_head_blocks(group, [&](std::size_t j0, auto hb) {
        constexpr std::size_t HB = decltype(hb)::value;
        const auto* p = probabilities(j0);
        float* acc = acc_split + j0 * split;
        std::size_t b0 = 0;
        for (; b0 + 2 <= blocks; b0 += 2) rows_tile_values<HB, 2, D>(p, corrections + j0, v, n, d, blocks, b0, acc);
        if (b0 < blocks) rows_tile_values<HB, 1, D>(p, corrections + j0, v, n, d, blocks, b0, acc);
      });
    }
  };
  for (std::size_t t = t0, n = 0; t < t1; t += n) {
    n = std::min({tile_tokens, t1 - t, cache.run(t)});
    if (d == 128) {
      run_tile(t, n, std::integral_constant<std::size_t, 128>());
    } else {
      run_tile(t, n, std::integral_constant<std::size_t, 0>());
    }
  }
  for (std::size_t j = 0; j < group; ++j)
    for (std::size_t e = 0; e < split; ++e) {
      const std::size_t element = position(e);
      if (element < d) out.acc[j * d + element] = acc_split[j * split + e];
    }
}
#endif

}  // namespace detail
}  // namespace attention
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
