/// \file
/// \brief Prefill attention: the newest tokens of each sequence of a kv_cache attend to the
/// cache under a mask (causal, bidirectional, sliding window, sinks + window, block-sparse),
/// multi-head, grouped-query or multi-query; tiled flash attention over the low-bit cache.
///
///   cache.append(seq, k, v, tokens);                      // the new tokens' K and V first
///   lowbit::attention::prefill(q, cache, new_tokens, out, q_heads, prefill_mask::causal(), {}, pool);
///
/// q and out hold the new tokens of every sequence one after another (sequence 0's new_tokens[0]
/// rows, then sequence 1's, ...), each row q_heads x head_dim floats; sequence b's new tokens are
/// the last new_tokens[b] of its cache.length(b) tokens (positions length - new_tokens .. length - 1).
///
/// The kernel: a work item is (sequence, KV head, block of query tokens); its rows are every query
/// head of the group for each token (about 64 rows), held transposed (a head-dim element of 16 rows
/// in one vector). Key tiles of 16 tokens are dequantized once per item into L1 and used by all
/// its rows: QKᵀ broadcasts key elements against row vectors (register blocks of 2 row vectors x
/// 8 keys on AVX-512), the online softmax runs down the row vectors (running max, sum and
/// rescaling of the output, no shuffles), and PV broadcasts V elements (2 row vectors x 8 head
/// dims). Tiles the mask hides entirely are skipped; only tiles it cuts get an element mask.
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
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../kernels/simd/gemm_int8.hpp"
#include "../kernels/simd/ops.hpp"
#include "kv_cache.hpp"
#include "tile_ops.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace attention {

enum class mask_kind { causal, bidirectional, sliding_window, sinks_window, block_sparse };

/// Which keys a query sees; p and k are positions in the sequence (0 .. length - 1), and a key at
/// or past the sequence's length is never seen.
///  - causal:          k <= p.
///  - bidirectional:   every key of the sequence (encoder models).
///  - sliding_window:  p - window < k <= p (the last `window` keys up to and with the query itself).
///  - sinks_window:    k <= p and (k < sinks or p - window < k): the first `sinks` tokens (attention
///                     sinks) and the sliding window.
///  - block_sparse:    positions cut into blocks of `block` tokens, query block i = p / block, key
///                     block j = k / block; k <= p and (i - local_blocks < j, the local blocks
///                     i - local_blocks + 1 .. i, or (j + 1) % stride == 0, the strided blocks that
///                     summarize the past, as the long-context papers' fixed patterns).
/// A query that sees no key (possible with block_sparse and local_blocks = 0) gets a zero output.
struct prefill_mask {
  mask_kind kind = mask_kind::causal;
  std::size_t window = 0;        ///< sliding_window, sinks_window: keys per window (>= 1)
  std::size_t sinks = 0;         ///< sinks_window: leading tokens every query sees
  std::size_t block = 0;         ///< block_sparse: tokens per block (>= 1)
  std::size_t local_blocks = 0;  ///< block_sparse: the query's own block and the ones before it
  std::size_t stride = 0;        ///< block_sparse: every stride-th block is seen (>= 1)

  static prefill_mask causal() noexcept { return {}; }
  static prefill_mask bidirectional() noexcept { return {mask_kind::bidirectional}; }
  static prefill_mask sliding_window(std::size_t window) noexcept { return {mask_kind::sliding_window, window}; }
  static prefill_mask sinks_and_window(std::size_t sinks, std::size_t window) noexcept {
    return {mask_kind::sinks_window, window, sinks};
  }
  static prefill_mask block_sparse(std::size_t block, std::size_t local_blocks, std::size_t stride) noexcept {
    return {mask_kind::block_sparse, 0, 0, block, local_blocks, stride};
  }

  /// Whether the query at position p sees the key at position k (both within the sequence).
  bool visible(std::size_t p, std::size_t k) const noexcept {
    switch (kind) {
      case mask_kind::bidirectional: return true;
      case mask_kind::causal: return k <= p;
      case mask_kind::sliding_window: return k <= p && k + window > p;
      case mask_kind::sinks_window: return k <= p && (k < sinks || k + window > p);
      case mask_kind::block_sparse: return k <= p && blocks_visible(p / block, k / block);
    }
    return false;
  }

  /// How a tile of queries [p0, p1) by keys [k0, k1) (both non-empty) is covered: no pair
  /// visible, some, or all. `some` is always a safe answer (the element mask decides).
  enum class cover { none, some, all };
  cover tile(std::size_t p0, std::size_t p1, std::size_t k0, std::size_t k1) const noexcept {
    if (kind == mask_kind::bidirectional) return cover::all;
    if (k0 > p1 - 1) return cover::none;        // every key after every query
    const bool causal_all = k1 - 1 <= p0;       // every key at or before every query
    switch (kind) {
      case mask_kind::causal: return causal_all ? cover::all : cover::some;
      case mask_kind::sliding_window:
        if (k1 - 1 + window <= p0) return cover::none;
        return causal_all && k0 + window > p1 - 1 ? cover::all : cover::some;
      case mask_kind::sinks_window:
        if (k0 >= sinks && k1 - 1 + window <= p0) return cover::none;
        return causal_all && (k1 <= sinks || k0 + window > p1 - 1) ? cover::all : cover::some;
      case mask_kind::block_sparse: {
        bool any = false, all = causal_all;
        for (std::size_t i = p0 / block; i <= (p1 - 1) / block; ++i)
          for (std::size_t j = k0 / block; j <= std::min(i, (k1 - 1) / block); ++j) {
            const bool v = blocks_visible(i, j);
            any = any || v;
            all = all && v;
          }
        return !any ? cover::none : (all ? cover::all : cover::some);
      }
      default: return cover::some;
    }
  }

  /// For every kind but block_sparse: the query positions [lo, hi) that see the key at k (the
  /// kernel masks the rows outside, rows being in position order). hi = SIZE_MAX: no upper end.
  void seen_by(std::size_t k, std::size_t& lo, std::size_t& hi) const noexcept {
    lo = kind == mask_kind::bidirectional ? 0 : k;
    hi = (kind == mask_kind::sliding_window || (kind == mask_kind::sinks_window && k >= sinks)) ? k + window
                                                                                                 : ~std::size_t(0);
  }

  /// A lowbit::error naming the parameter when the mask is malformed.
  void check() const {
    switch (kind) {
      case mask_kind::causal:
      case mask_kind::bidirectional: break;
      case mask_kind::sliding_window:
      case mask_kind::sinks_window:
        LOWBIT_CHECK(window >= 1, "prefill_mask: window=" << window << " must be at least 1");
        break;
      case mask_kind::block_sparse:
        LOWBIT_CHECK(block >= 1 && stride >= 1,
                     "prefill_mask: block_sparse needs block >= 1 and stride >= 1, not block=" << block << " stride=" << stride);
        break;
      default: LOWBIT_CHECK(false, "prefill_mask: unknown kind " << static_cast<int>(kind));
    }
  }

 private:
  bool blocks_visible(std::size_t i, std::size_t j) const noexcept {
    return j + local_blocks > i || (j + 1) % stride == 0;
  }
};

struct prefill_options {
  float scale = 0.0f;              ///< multiplies q·k; 0: 1 / sqrt(head_dim)
  /// Integer QKᵀ: the keys of each (sequence, KV head) are smoothed (the per-channel mean over the
  /// sequence subtracted, which shifts every score of a query by the same q·mean, so softmax does
  /// not see it) and quantized per token to int8 (absmax / 127); the queries per token and head.
  /// q·k runs in int32 (vpdpbusd on AVX-512 VNNI, vpmaddubsw elsewhere); PV stays fp32. Any KV
  /// format. Less exact: the tests allow 5e-2 absolute error (5e-3 on average) against the float64
  /// reference, for scores of standard deviation ~1.
  bool int8_qk = false;
  /// bf16 products: Q, K, the probabilities P and V rounded to bf16 (nearest even), products summed
  /// in fp32: vdpbf16ps on AVX-512 BF16 (the avx512_vnni path: two products per lane and
  /// instruction); the other paths round the same operands and multiply in fp32. With int8_qk, only
  /// PV. The tests allow 2e-2 absolute error (2e-3 on average) for scores of standard deviation ~1.
  bool bf16 = false;
  std::size_t block_tokens = 0;    ///< query tokens per work item; 0: about 64 rows (tokens x group)
};

namespace detail {

/// Register blocking of the microkernels: R row vectors (of W rows each) by `keys` keys in QKᵀ,
/// by `dims` head dims in PV (accumulators R x 8 = 16 of the 32 AVX-512 registers; 8 of 16 below).
template <class Tag, class = void>
struct lanes_of : std::integral_constant<std::size_t, simd::ops<Tag>::lanes> {};
template <class Tag>
struct lanes_of<Tag, std::enable_if_t<std::is_same<Tag, arch::scalar_tag>::value>> : std::integral_constant<std::size_t, 1> {};

template <class Tag>
struct prefill_blocking {
  static constexpr std::size_t lanes = lanes_of<Tag>::value;
  static constexpr std::size_t rows = lanes == 16 ? 4 : 2;
  static constexpr std::size_t keys = 4;
  static constexpr std::size_t dims = 4;
};

/// One work item: query tokens [p0, p1) of sequence seq for KV head `head`; its first query row
/// is row `first_row` of q and out.
struct prefill_item {
  std::size_t seq, head, p0, p1, first_row;
};

/// A worker's tiles and row state (allocated once per executor chunk, not per item).
struct prefill_scratch {
  std::size_t rows;                      ///< M: rows of the largest item, padded to 16
  aligned_buffer<float> q_t, o_t;        ///< d x M: scaled queries, output sums (transposed)
  aligned_buffer<float> s_t;             ///< 16 x M: scores, then probabilities
  aligned_buffer<float> k_tile, v_tile;  ///< 16 x d
  aligned_buffer<float> max, sum, corr;  ///< M
  aligned_buffer<int32_t> q8_t;          ///< d/4 x M: int8 queries, 4 head dims a word (int8_qk)
  aligned_buffer<int32_t> s8_t;          ///< 16 x M: integer scores (int8_qk)
  aligned_buffer<float> q8_scale, q8_offset;  ///< M
  // bf16 products (AVX-512 BF16): pairs of bf16 in a 32-bit word, the pairs vdpbf16ps sums.
  aligned_buffer<uint32_t> q_pairs;      ///< d/2 x M: head dims 2i, 2i + 1 of each row
  aligned_buffer<uint16_t> k_bf16;       ///< 16 x d: the key tile (pairs of head dims are adjacent)
  aligned_buffer<uint32_t> p_pairs;      ///< 8 x M: probabilities of keys 2i, 2i + 1
  aligned_buffer<uint32_t> v_pairs;      ///< 8 x d: V of keys 2i, 2i + 1
  std::vector<std::size_t> position;     ///< M: each row's query position
  prefill_scratch(std::size_t m, std::size_t d, bool int8, bool bf16)
      : rows(m), q_t(d * m), o_t(d * m), s_t(tile_tokens * m), k_tile(tile_tokens * d), v_tile(tile_tokens * d),
        max(m), sum(m), corr(m), q8_t(int8 ? d / 4 * m : 0), s8_t(int8 ? tile_tokens * m : 0),
        q8_scale(int8 ? m : 0), q8_offset(int8 ? m : 0), q_pairs(bf16 ? d / 2 * m : 0),
        k_bf16(bf16 ? tile_tokens * d : 0), p_pairs(bf16 ? tile_tokens / 2 * m : 0),
        v_pairs(bf16 ? tile_tokens / 2 * d : 0), position(m) {}
};

/// The smoothed int8 keys of one (sequence, KV head): rows padded to a multiple of 16 with zero
/// keys; codes stored as k + 128 (unsigned bytes for vpdpbusd).
struct smoothed_keys {
  const uint8_t* codes;  ///< rows x d
  const float* scales;   ///< rows
};

/// s_t[j][r0 .. r0 + R W) = q_t rows · key j for the 16 keys of a tile (row-vector layout).
template <class Tag, std::size_t R>
void qk_rows(const float* q_t, std::size_t m, const float* k_tile, std::size_t d, float* s_t, std::size_t r0) noexcept {
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t j = 0; j < tile_tokens; ++j)
      for (std::size_t r = r0; r < r0 + R; ++r) {
        float s = 0.0f;
        for (std::size_t e = 0; e < d; ++e) s += q_t[e * m + r] * k_tile[j * d + e];
        s_t[j * m + r] = s;
      }
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes, J = prefill_blocking<Tag>::keys;
    for (std::size_t j0 = 0; j0 < tile_tokens; j0 += J) {
      f32 acc[R][J];
      for (std::size_t r = 0; r < R; ++r)
        for (std::size_t j = 0; j < J; ++j) acc[r][j] = f32(0.0f);
      const float* k = k_tile + j0 * d;
      const float* q = q_t + r0;
      for (std::size_t e = 0; e < d; ++e, q += m) {
        f32 qv[R];
        for (std::size_t r = 0; r < R; ++r) qv[r] = f32::load_aligned(q + r * W);
        for (std::size_t j = 0; j < J; ++j) {
          const f32 kj(k[j * d + e]);
          for (std::size_t r = 0; r < R; ++r) acc[r][j] = xsimd::fma(qv[r], kj, acc[r][j]);
        }
      }
      for (std::size_t j = 0; j < J; ++j)
        for (std::size_t r = 0; r < R; ++r) acc[r][j].store_aligned(s_t + (j0 + j) * m + r0 + r * W);
    }
#endif
  }
}

/// The integer scores of rows [r0, r0 + R W) against a tile of smoothed int8 keys: s8_t[j][r] =
/// sum over the head dims of (k + 128) q. |result| < d * 255 * 128 <= 2^23 for d <= 256, exact
/// in int32 and in float.
template <class Tag, std::size_t R>
void qk_rows_int8(const int32_t* q8_t, std::size_t m, const uint8_t* k8, std::size_t d, int32_t* s8_t,
                  std::size_t r0) noexcept {
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t j = 0; j < tile_tokens; ++j)
      for (std::size_t r = r0; r < r0 + R; ++r) {
        int32_t s = 0;
        for (std::size_t e4 = 0; e4 < d / 4; ++e4) {
          int8_t q[4];
          std::memcpy(q, q8_t + e4 * m + r, 4);
          for (std::size_t i = 0; i < 4; ++i) s += int32_t(k8[j * d + 4 * e4 + i]) * q[i];
        }
        s8_t[j * m + r] = s;
      }
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using i32 = typename simd::ops<Tag>::i32;
    using B = simd::int8_dot<Tag>;
    constexpr std::size_t W = simd::ops<Tag>::lanes, J = prefill_blocking<Tag>::keys;
    for (std::size_t j0 = 0; j0 < tile_tokens; j0 += J) {
      i32 acc[R][J];
      for (std::size_t r = 0; r < R; ++r)
        for (std::size_t j = 0; j < J; ++j) acc[r][j] = i32(0);
      const uint8_t* k = k8 + j0 * d;
      const int32_t* q = q8_t + r0;
      for (std::size_t e = 0; e < d; e += 4, q += m) {
        i32 qv[R];
        for (std::size_t r = 0; r < R; ++r) qv[r] = i32::load_aligned(q + r * W);
        for (std::size_t j = 0; j < J; ++j) {
          const i32 kj = B::broadcast4(reinterpret_cast<const int8_t*>(k + j * d + e));
          for (std::size_t r = 0; r < R; ++r) acc[r][j] = B::template dot<false>(acc[r][j], kj, qv[r]);
        }
      }
      for (std::size_t j = 0; j < J; ++j)
        for (std::size_t r = 0; r < R; ++r) acc[r][j].store_aligned(s8_t + (j0 + j) * m + r0 + r * W);
    }
#endif
  }
}

/// Online softmax over one tile for all m rows (m a multiple of the lanes): the running max and
/// sum advance, s_t becomes the probabilities exp(s - max) and corr the factor by which the
/// earlier output sums shrink. A row that has seen only masked keys keeps max = -inf; its shift
/// is then 0, so its probabilities are exp(-inf) = 0 and never NaN.
template <class Tag>
void softmax_tile(float* s_t, std::size_t m, float* max, float* sum, float* corr) noexcept {
  constexpr float minus_inf = -std::numeric_limits<float>::infinity();
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t r = 0; r < m; ++r) {
      float tile_max = minus_inf;
      for (std::size_t j = 0; j < tile_tokens; ++j) tile_max = std::max(tile_max, s_t[j * m + r]);
      const float new_max = std::max(max[r], tile_max), shift = new_max == minus_inf ? 0.0f : new_max;
      corr[r] = std::exp(max[r] - shift);
      float l = sum[r] * corr[r];
      for (std::size_t j = 0; j < tile_tokens; ++j) l += s_t[j * m + r] = std::exp(s_t[j * m + r] - shift);
      max[r] = new_max;
      sum[r] = l;
    }
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    for (std::size_t r = 0; r < m; r += W) {
      const f32 old_max = f32::load_aligned(max + r);
      f32 tile_max = f32::load_aligned(s_t + r);
      for (std::size_t j = 1; j < tile_tokens; ++j) tile_max = xsimd::max(tile_max, f32::load_aligned(s_t + j * m + r));
      const f32 new_max = xsimd::max(old_max, tile_max);
      const f32 shift = xsimd::select(new_max == f32(minus_inf), f32(0.0f), new_max);
      const f32 c = xsimd::exp(old_max - shift);
      f32 l = f32::load_aligned(sum + r) * c;
      for (std::size_t j = 0; j < tile_tokens; ++j) {
        const f32 p = xsimd::exp(f32::load_aligned(s_t + j * m + r) - shift);
        p.store_aligned(s_t + j * m + r);
        l += p;
      }
      new_max.store_aligned(max + r);
      l.store_aligned(sum + r);
      c.store_aligned(corr + r);
    }
#endif
  }
}

/// o_t[e][r] = o_t[e][r] * corr[r] + sum over the tile's 16 keys of p_t[j][r] v_tile[j][e] for
/// rows [r0, r0 + R W) and every head dim.
template <class Tag, std::size_t R>
void pv_rows(const float* p_t, std::size_t m, const float* v_tile, std::size_t d, const float* corr, float* o_t,
             std::size_t r0) noexcept {
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t e = 0; e < d; ++e)
      for (std::size_t r = r0; r < r0 + R; ++r) {
        float a = o_t[e * m + r] * corr[r];
        for (std::size_t j = 0; j < tile_tokens; ++j) a += p_t[j * m + r] * v_tile[j * d + e];
        o_t[e * m + r] = a;
      }
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes, E = prefill_blocking<Tag>::dims;
    f32 c[R];
    for (std::size_t r = 0; r < R; ++r) c[r] = f32::load_aligned(corr + r0 + r * W);
    for (std::size_t e0 = 0; e0 < d; e0 += E) {
      f32 acc[R][E];
      float* o = o_t + e0 * m + r0;
      for (std::size_t e = 0; e < E; ++e)
        for (std::size_t r = 0; r < R; ++r) acc[r][e] = f32::load_aligned(o + e * m + r * W) * c[r];
      const float* v = v_tile + e0;
      const float* p = p_t + r0;
      for (std::size_t j = 0; j < tile_tokens; ++j, v += d, p += m) {
        f32 pv[R];
        for (std::size_t r = 0; r < R; ++r) pv[r] = f32::load_aligned(p + r * W);
        for (std::size_t e = 0; e < E; ++e) {
          const f32 ve(v[e]);
          for (std::size_t r = 0; r < R; ++r) acc[r][e] = xsimd::fma(pv[r], ve, acc[r][e]);
        }
      }
      for (std::size_t e = 0; e < E; ++e)
        for (std::size_t r = 0; r < R; ++r) acc[r][e].store_aligned(o + e * m + r * W);
    }
#endif
  }
}


template <class Tag>
constexpr bool native_bf16() noexcept {
  return Tag::level == isa::avx512_vnni;
}

#if defined(LOWBIT_COMPILED_AVX512_VNNI)
/// 16 words: bf16(a[i]) in the low half, bf16(b[i]) in the high half (nearest even).
LOWBIT_ALWAYS_INLINE __m512i pack_bf16_pairs(__m512 a, __m512 b) noexcept {
  alignas(64) static const uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(b, a);  // a's bf16 in elements 0-15, b's in 16-31
  return _mm512_permutexvar_epi16(_mm512_load_si512(interleave), both);
}

/// Words of rows (2i, 2i + 1) of a 16-column-wide float matrix x (rows of `stride`), for i < pairs
/// and columns [0, width), width a multiple of 16: out[i * out_stride + c].
inline void pack_row_pairs(const float* x, std::size_t stride, std::size_t pairs, std::size_t width, uint32_t* out,
                           std::size_t out_stride) noexcept {
  for (std::size_t i = 0; i < pairs; ++i)
    for (std::size_t c = 0; c < width; c += 16)
      _mm512_store_si512(out + i * out_stride + c, pack_bf16_pairs(_mm512_loadu_ps(x + 2 * i * stride + c),
                                                                   _mm512_loadu_ps(x + (2 * i + 1) * stride + c)));
}

/// The same words from rows already in bf16 (a bf16 cache's tile): no rounding, no float round trip.
inline void pack_row_pairs(const uint16_t* x, std::size_t stride, std::size_t pairs, std::size_t width, uint32_t* out,
                           std::size_t out_stride) noexcept {
  for (std::size_t i = 0; i < pairs; ++i)
    for (std::size_t c = 0; c < width; c += 16) {
      const __m512i lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 2 * i * stride + c)));
      const __m512i hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + (2 * i + 1) * stride + c)));
      _mm512_store_si512(out + i * out_stride + c, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
}

/// s_t[j][r] = sum over head-dim pairs of q_pairs[i][r] . k_bf16[j][2i, 2i + 1] (vdpbf16ps).
template <std::size_t R>
void qk_rows_bf16(const uint32_t* q_pairs, std::size_t m, const uint16_t* k, std::size_t d, float* s_t,
                  std::size_t r0) noexcept {
  constexpr std::size_t J = 4;
  for (std::size_t j0 = 0; j0 < tile_tokens; j0 += J) {
    __m512 acc[R][J];
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t j = 0; j < J; ++j) acc[r][j] = _mm512_setzero_ps();
    const uint16_t* kj0 = k + j0 * d;
    const uint32_t* q = q_pairs + r0;
    for (std::size_t e = 0; e < d; e += 2, q += m) {
      __m512i qv[R];
      for (std::size_t r = 0; r < R; ++r) qv[r] = _mm512_load_si512(q + r * 16);
      for (std::size_t j = 0; j < J; ++j) {
        uint32_t word;
        std::memcpy(&word, kj0 + j * d + e, 4);
        const __m512i kv = _mm512_set1_epi32(static_cast<int>(word));
        for (std::size_t r = 0; r < R; ++r) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], (__m512bh)qv[r], (__m512bh)kv);
      }
    }
    for (std::size_t j = 0; j < J; ++j)
      for (std::size_t r = 0; r < R; ++r) _mm512_store_ps(s_t + (j0 + j) * m + r0 + r * 16, acc[r][j]);
  }
}

/// o_t[e][r] = o_t[e][r] * corr[r] + sum over key pairs of p_pairs[i][r] . v_pairs[i][e] (vdpbf16ps).
template <std::size_t R>
void pv_rows_bf16(const uint32_t* p_pairs, std::size_t m, const uint32_t* v_pairs, std::size_t d, const float* corr,
                  float* o_t, std::size_t r0) noexcept {
  constexpr std::size_t E = 4;
  __m512 c[R];
  for (std::size_t r = 0; r < R; ++r) c[r] = _mm512_load_ps(corr + r0 + r * 16);
  for (std::size_t e0 = 0; e0 < d; e0 += E) {
    __m512 acc[R][E];
    float* o = o_t + e0 * m + r0;
    for (std::size_t e = 0; e < E; ++e)
      for (std::size_t r = 0; r < R; ++r) acc[r][e] = _mm512_mul_ps(_mm512_load_ps(o + e * m + r * 16), c[r]);
    for (std::size_t i = 0; i < tile_tokens / 2; ++i) {
      __m512i pv[R];
      for (std::size_t r = 0; r < R; ++r) pv[r] = _mm512_load_si512(p_pairs + i * m + r0 + r * 16);
      for (std::size_t e = 0; e < E; ++e) {
        const __m512i vv = _mm512_set1_epi32(static_cast<int>(v_pairs[i * d + e0 + e]));
        for (std::size_t r = 0; r < R; ++r) acc[r][e] = _mm512_dpbf16_ps(acc[r][e], (__m512bh)pv[r], (__m512bh)vv);
      }
    }
    for (std::size_t e = 0; e < E; ++e)
      for (std::size_t r = 0; r < R; ++r) _mm512_store_ps(o + e * m + r * 16, acc[r][e]);
  }
}
#endif

/// Runs f(r0, R-constant) over the m rows in register blocks: R = rows while they last, then 1.
template <class Tag, class F>
void for_row_blocks(std::size_t m, F&& f) {
  constexpr std::size_t W = prefill_blocking<Tag>::lanes, R = prefill_blocking<Tag>::rows;
  std::size_t r0 = 0;
  for (; r0 + R * W <= m; r0 += R * W) f(r0, std::integral_constant<std::size_t, R>{});
  for (; r0 < m; r0 += W) f(r0, std::integral_constant<std::size_t, 1>{});
}

/// One work item: its queries against every key tile the mask does not hide.
template <class Tag, class Element>
void prefill_item_run(const kv_cache<Element>& cache, const prefill_mask& mask, const prefill_item& item,
                      const float* q, float* out, std::size_t q_heads, float scale, const smoothed_keys* keys8,
                      bool bf16_products, prefill_scratch& s) {
  // bf16 products: vdpbf16ps on packed pairs where the path has it, else fp32 on rounded operands.
  const bool packed = bf16_products && native_bf16<Tag>(), rounded = bf16_products && !packed;
  constexpr float minus_inf = -std::numeric_limits<float>::infinity();
  const std::size_t d = cache.shape().head_dim, group = q_heads / cache.shape().kv_heads;
  const std::size_t len = cache.lengths()[item.seq], tokens = item.p1 - item.p0;
  const std::size_t valid = tokens * group, m = (valid + 15) / 16 * 16, row_stride = q_heads * d;
  // Rows r = t * group + g: token p0 + t, query head head * group + g. Padding rows repeat the last
  // token with zero queries (their results are dropped).
  for (std::size_t r = 0; r < m; ++r) s.position[r] = item.p0 + std::min(r, valid - 1) / group;
  std::fill(s.q_t.data(), s.q_t.data() + d * m, 0.0f);
  if (keys8)
    for (std::size_t r = 0; r < valid; ++r) {
      const float* qr = q + (item.first_row + r / group) * row_stride + (item.head * group + r % group) * d;
      // int8 query row: absmax / 127, round to nearest even; its scale times the softmax scale and
      // the 128 * sum of codes that the keys' +128 adds.
      float absmax = 0.0f;
      for (std::size_t e = 0; e < d; ++e) absmax = std::max(absmax, std::fabs(qr[e]));
      const float q_scale = absmax > 0.0f ? absmax / 127.0f : 1.0f;
      int32_t code_sum = 0;
      for (std::size_t e = 0; e < d; e += 4) {
        int8_t c[4];
        for (std::size_t i = 0; i < 4; ++i) {
          c[i] = static_cast<int8_t>(std::nearbyint(qr[e + i] / q_scale));
          code_sum += c[i];
        }
        std::memcpy(s.q8_t.data() + e / 4 * m + r, c, 4);
      }
      s.q8_scale[r] = q_scale * scale;
      s.q8_offset[r] = 128.0f * static_cast<float>(code_sum);
    }
  if (!keys8)  // transposed 16 rows x 16 head dims at a time (rows are far apart in q)
    for (std::size_t r0 = 0; r0 < valid; r0 += 16)
      for (std::size_t e0 = 0; e0 < d; e0 += 16)
        for (std::size_t r = r0; r < std::min(valid, r0 + 16); ++r) {
          const float* qr = q + (item.first_row + r / group) * row_stride + (item.head * group + r % group) * d + e0;
          for (std::size_t e = 0; e < 16; ++e) s.q_t[(e0 + e) * m + r] = qr[e] * scale;
        }
  if (!keys8 && rounded) round_bf16(s.q_t.data(), d * m);
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
  if (!keys8 && packed) pack_row_pairs(s.q_t.data(), m, d / 2, m, s.q_pairs.data(), m);
#endif
  if (keys8)
    for (std::size_t r = valid; r < m; ++r) {
      for (std::size_t e = 0; e < d / 4; ++e) s.q8_t[e * m + r] = 0;
      s.q8_scale[r] = 0.0f;
      s.q8_offset[r] = 0.0f;
    }
  std::fill(s.o_t.data(), s.o_t.data() + d * m, 0.0f);
  std::fill(s.max.data(), s.max.data() + m, minus_inf);
  std::fill(s.sum.data(), s.sum.data() + m, 0.0f);

  // Keys: up to the last query (the whole sequence when bidirectional); window kinds start at the
  // first query's window, after the sinks.
  const std::size_t key_end = mask.kind == mask_kind::bidirectional ? len : std::min(len, item.p1);
  std::size_t window_start = 0, sink_end = 0;
  if (mask.kind == mask_kind::sliding_window || mask.kind == mask_kind::sinks_window) {
    window_start = item.p0 + 1 > mask.window ? (item.p0 + 1 - mask.window) / tile_tokens * tile_tokens : 0;
    sink_end = mask.kind == mask_kind::sinks_window ? (mask.sinks + tile_tokens - 1) / tile_tokens * tile_tokens : 0;
  }
  for (std::size_t t = 0; t < key_end; t += tile_tokens) {
    if (t >= sink_end && t < window_start) t = window_start;
    if (t >= key_end) break;
    const std::size_t n = std::min(tile_tokens, len - t);
    prefill_mask::cover cover = mask.tile(item.p0, item.p1, t, t + n);
    if (cover == prefill_mask::cover::none) continue;
    // A tile starts at a multiple of 16 tokens, so its rows are consecutive (pages hold multiples
    // of 16 tokens); rows past the sequence are zeros here and masked below.
    const std::size_t row = kv_unchecked::row(cache, item.seq, item.head, t);
    // fp32 caches are read in place (the microkernels broadcast K and V elements: any alignment).
    const bool in_place = std::is_same<Element, float>::value && n == tile_tokens && !rounded;
    // A bf16 cache's full tile goes to the bf16 products as it is stored.
    const bool bf16_in_place = packed && std::is_same<Element, bf16>::value && n == tile_tokens;
    const float* v_tile = in_place ? static_cast<const float*>(cache.values().codes_of(row)) : s.v_tile.data();
    const float* k_tile = in_place ? static_cast<const float*>(cache.keys().codes_of(row)) : s.k_tile.data();
    if (!in_place && !bf16_in_place) {
      rows_to_float<Tag>(cache.values(), row, n, d, s.v_tile.data());
      std::fill(s.v_tile.data() + n * d, s.v_tile.data() + tile_tokens * d, 0.0f);
      if (rounded) round_bf16(s.v_tile.data(), n * d);
    }
    if (keys8) {
      const uint8_t* k8 = keys8->codes + t * d;
      const float* k_scales = keys8->scales + t;
      for_row_blocks<Tag>(m, [&](std::size_t r0, auto rows) {
        qk_rows_int8<Tag, decltype(rows)::value>(s.q8_t.data(), m, k8, d, s.s8_t.data(), r0);
      });
      for (std::size_t j = 0; j < tile_tokens; ++j)
        for (std::size_t r = 0; r < m; ++r)
          s.s_t[j * m + r] = (static_cast<float>(s.s8_t[j * m + r]) - s.q8_offset[r]) * s.q8_scale[r] * k_scales[j];
    } else {
      if (!in_place && !bf16_in_place) {
        keys_to_float<Tag>(cache, item.seq, item.head, t, n, s.k_tile.data());
        std::fill(s.k_tile.data() + n * d, s.k_tile.data() + tile_tokens * d, 0.0f);
        if (rounded) round_bf16(s.k_tile.data(), n * d);
      }
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
      if (packed) {
        const uint16_t* k16 = s.k_bf16.data();
        if (bf16_in_place) {
          k16 = static_cast<const uint16_t*>(cache.keys().codes_of(row));
        } else {
          for (std::size_t i = 0; i < tile_tokens * d; i += 16)
            _mm256_store_si256(reinterpret_cast<__m256i*>(s.k_bf16.data() + i),
                               (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(k_tile + i)));
        }
        for_row_blocks<Tag>(m, [&](std::size_t r0, auto rows) {
          qk_rows_bf16<decltype(rows)::value>(s.q_pairs.data(), m, k16, d, s.s_t.data(), r0);
        });
      }
#endif
      if (!packed)
        for_row_blocks<Tag>(m, [&](std::size_t r0, auto rows) {
          qk_rows<Tag, decltype(rows)::value>(s.q_t.data(), m, k_tile, d, s.s_t.data(), r0);
        });
    }
    if (n < tile_tokens) cover = prefill_mask::cover::some;
    if (cover == prefill_mask::cover::some)
      for (std::size_t j = 0; j < tile_tokens; ++j) {
        float* sj = s.s_t.data() + j * m;
        if (t + j >= len) {
          std::fill(sj, sj + m, minus_inf);
        } else if (mask.kind != mask_kind::block_sparse) {
          // Rows are in position order: the rows that see key t + j are one range.
          std::size_t lo, hi;
          mask.seen_by(t + j, lo, hi);
          const auto row_of = [&](std::size_t p) {
            return p <= item.p0 ? std::size_t(0) : (p >= item.p1 ? m : (p - item.p0) * group);
          };
          std::fill(sj, sj + row_of(lo), minus_inf);
          if (hi != ~std::size_t(0)) std::fill(sj + std::max(row_of(lo), row_of(hi)), sj + m, minus_inf);
        } else {
          for (std::size_t r = 0; r < m; ++r)
            if (!mask.visible(s.position[r], t + j)) sj[r] = minus_inf;
        }
      }
    softmax_tile<Tag>(s.s_t.data(), m, s.max.data(), s.sum.data(), s.corr.data());
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
    if (packed) {
      pack_row_pairs(s.s_t.data(), m, tile_tokens / 2, m, s.p_pairs.data(), m);
      if (bf16_in_place) {
        pack_row_pairs(static_cast<const uint16_t*>(cache.values().codes_of(row)), d, tile_tokens / 2, d, s.v_pairs.data(), d);
      } else {
        pack_row_pairs(v_tile, d, tile_tokens / 2, d, s.v_pairs.data(), d);
      }
      for_row_blocks<Tag>(m, [&](std::size_t r0, auto rows) {
        pv_rows_bf16<decltype(rows)::value>(s.p_pairs.data(), m, s.v_pairs.data(), d, s.corr.data(), s.o_t.data(), r0);
      });
      continue;
    }
#endif
    if (rounded) round_bf16(s.s_t.data(), tile_tokens * m);  // the sums above keep the unrounded ones
    for_row_blocks<Tag>(m, [&](std::size_t r0, auto rows) {
      pv_rows<Tag, decltype(rows)::value>(s.s_t.data(), m, v_tile, d, s.corr.data(), s.o_t.data(), r0);
    });
  }
  for (std::size_t r = 0; r < valid; ++r) s.corr[r] = s.sum[r] > 0.0f ? 1.0f / s.sum[r] : 0.0f;  // saw nothing: 0
  for (std::size_t r0 = 0; r0 < valid; r0 += 16)
    for (std::size_t e0 = 0; e0 < d; e0 += 16)
      for (std::size_t r = r0; r < std::min(valid, r0 + 16); ++r) {
        float* o = out + (item.first_row + r / group) * row_stride + (item.head * group + r % group) * d + e0;
        for (std::size_t e = 0; e < 16; ++e) o[e] = s.o_t[(e0 + e) * m + r] * s.corr[r];
      }
}

/// The smoothed int8 keys of sequence seq, KV head h (all its tokens): the per-channel mean of the
/// dequantized keys subtracted, then per token absmax / 127 codes stored as k + 128.
template <class Tag, class Element>
void smooth_keys(const kv_cache<Element>& cache, std::size_t seq, std::size_t h, uint8_t* codes, float* scales,
                 float* tile, std::vector<float>& mean) {
  const std::size_t d = cache.shape().head_dim, len = cache.lengths()[seq];
  const std::size_t padded = (len + tile_tokens - 1) / tile_tokens * tile_tokens;
  mean.assign(d, 0.0f);
  for (std::size_t t = 0; t < len; t += tile_tokens) {
    const std::size_t n = std::min(tile_tokens, len - t);
    keys_to_float<Tag>(cache, seq, h, t, n, tile);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t e = 0; e < d; ++e) mean[e] += tile[i * d + e];
  }
  for (float& v : mean) v /= static_cast<float>(len);
  for (std::size_t t = 0; t < len; t += tile_tokens) {
    const std::size_t n = std::min(tile_tokens, len - t);
    keys_to_float<Tag>(cache, seq, h, t, n, tile);
    for (std::size_t i = 0; i < n; ++i) {
      float* k = tile + i * d;
      float absmax = 0.0f;
      for (std::size_t e = 0; e < d; ++e) absmax = std::max(absmax, std::fabs(k[e] -= mean[e]));
      const float scale = absmax > 0.0f ? absmax / 127.0f : 1.0f;
      for (std::size_t e = 0; e < d; ++e)
        codes[(t + i) * d + e] = static_cast<uint8_t>(static_cast<int>(std::nearbyint(k[e] / scale)) + 128);
      scales[t + i] = scale;
    }
  }
  std::fill(codes + len * d, codes + padded * d, uint8_t(128));  // zero keys
  std::fill(scales + len, scales + padded, 0.0f);
}

}  // namespace detail

/// Prefill attention: for every sequence b of the cache with new_tokens[b] > 0, its last
/// new_tokens[b] tokens (positions P = length(b) - new_tokens[b] .. length(b) - 1, whose K and V
/// the cache already holds) attend to the cache's tokens under the mask:
///   out[row][j] = softmax_k(q[row][j] · K[b][h][k] · scale, masked keys excluded) · V[b][h][k]
/// for each query head j, h = j / (q_heads / kv_heads). q and out: sum of new_tokens rows (the
/// sequences in order), each q_heads x head_dim floats. A query that sees no key gets zeros.
/// Work items (sequence, KV head, block of query tokens) run over the executor; each worker
/// allocates its tiles once per call. Throws lowbit::error for null pointers, q_heads not a
/// multiple of kv_heads, new_tokens[b] larger than sequence b's length, a malformed mask, or a
/// path not available here.
///
/// Tolerance (tests, random normal data): 2e-5 absolute against the float64 reference on the
/// dequantized cache; int8_qk 5e-2 (5e-3 on average); bf16 2e-2 (2e-3 on average).
template <class Element, class Executor = serial_executor>
void prefill(const float* q, const kv_cache<Element>& cache, const std::size_t* new_tokens, float* out,
             std::size_t q_heads, const prefill_mask& mask = {}, const prefill_options& options = {},
             Executor&& exec = Executor{}, isa path = best_isa()) {
  const kv_shape& s = cache.shape();
  LOWBIT_CHECK(q != nullptr && out != nullptr && new_tokens != nullptr, "prefill: q, out or new_tokens is null");
  LOWBIT_CHECK(q_heads > 0 && q_heads % s.kv_heads == 0,
               "prefill: q_heads=" << q_heads << " must be a positive multiple of kv_heads=" << s.kv_heads);
  LOWBIT_CHECK(isa_supported(path), "prefill: the " << isa_name(path) << " path is not available here");
  mask.check();
  for (std::size_t b = 0; b < s.batch; ++b)
    LOWBIT_CHECK(new_tokens[b] <= cache.length(b), "prefill: new_tokens[" << b << "]=" << new_tokens[b]
                                                                          << " is more than the sequence's length "
                                                                          << cache.length(b));
  const std::size_t d = s.head_dim, group = q_heads / s.kv_heads;
  const float scale = options.scale != 0.0f ? options.scale : 1.0f / std::sqrt(static_cast<float>(d));
  const std::size_t block = options.block_tokens ? options.block_tokens : std::max<std::size_t>(1, 64 / group);

  // Items: per (sequence, KV head), query blocks in the order 0, last, 1, last - 1, ... so that the
  // executor's contiguous chunks get as many long (late, causal) blocks as short ones.
  std::vector<detail::prefill_item> items;
  std::size_t first_row = 0, rows = 16;
  for (std::size_t b = 0; b < s.batch; ++b) {
    const std::size_t n = new_tokens[b], start = cache.lengths()[b] - n, blocks = (n + block - 1) / block;
    for (std::size_t h = 0; h < s.kv_heads; ++h)
      for (std::size_t i = 0; i < blocks; ++i) {
        const std::size_t k = i % 2 == 0 ? i / 2 : blocks - 1 - i / 2;
        const std::size_t p0 = start + k * block, p1 = std::min(start + n, p0 + block);
        items.push_back({b, h, p0, p1, first_row + k * block});
        rows = std::max(rows, ((p1 - p0) * group + 15) / 16 * 16);
      }
    first_row += n;
  }

  // int8_qk: the smoothed int8 keys of every (sequence, KV head) with new tokens, made in parallel.
  std::vector<std::size_t> key_offsets(s.batch * s.kv_heads + 1, 0);
  for (std::size_t b = 0; b < s.batch; ++b)
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      const std::size_t i = b * s.kv_heads + h;
      key_offsets[i + 1] = key_offsets[i] + (options.int8_qk && new_tokens[b] > 0
                                                 ? (cache.lengths()[b] + detail::tile_tokens - 1) / detail::tile_tokens *
                                                       detail::tile_tokens
                                                 : 0);
    }
  aligned_buffer<uint8_t> key_codes(options.int8_qk ? key_offsets.back() * d : 0);
  aligned_buffer<float> key_scales(options.int8_qk ? key_offsets.back() : 0);

  dispatch(path, [&](auto tag) {
    using Tag = decltype(tag);
    if (options.int8_qk)
      exec(s.batch * s.kv_heads, [&](std::size_t begin, std::size_t end) {
        aligned_buffer<float> tile(detail::tile_tokens * d);
        std::vector<float> mean;
        for (std::size_t i = begin; i < end; ++i)
          if (key_offsets[i + 1] > key_offsets[i])
            detail::smooth_keys<Tag>(cache, i / s.kv_heads, i % s.kv_heads, key_codes.data() + key_offsets[i] * d,
                                     key_scales.data() + key_offsets[i], tile.data(), mean);
      });
    exec(items.size(), [&](std::size_t begin, std::size_t end) {
      detail::prefill_scratch scratch(rows, d, options.int8_qk, options.bf16);  // this worker's, for its chunk
      for (std::size_t i = begin; i < end; ++i) {
        const detail::prefill_item& item = items[i];
        const std::size_t k = item.seq * s.kv_heads + item.head;
        const detail::smoothed_keys keys8{key_codes.data() + key_offsets[k] * d, key_scales.data() + key_offsets[k]};
        detail::prefill_item_run<Tag>(cache, mask, item, q, out, q_heads, scale, options.int8_qk ? &keys8 : nullptr,
                                      options.bf16, scratch);
      }
    });
  });
}

}  // namespace attention
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
