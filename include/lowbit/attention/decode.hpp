/// \file
/// \brief Decode attention: one query token per sequence against a kv_cache, multi-head,
/// grouped-query or multi-query (q_heads a multiple of kv_heads), softmax(q Kᵀ · scale) V.
///
/// Flash-decoding: each (sequence, KV head) is cut into chunks of tokens that run in parallel
/// over the executor; a chunk keeps, for each query head of its group, the running maximum, the
/// sum of exponentials and the weighted sum of V (online softmax), and the chunks are merged by
/// their log-sum-exp. K and V are dequantized 16 tokens at a time into an L1 tile (the SIMD
/// dequantization kernels; int8 rows by a direct widening) and used at once by every query head
/// of the group: the cache is read once, in its low-bit form. With int8_query, int8 keys are
/// scored on their codes and only V is dequantized.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

#include "../arch/dispatch.hpp"
#include "../core/aligned.hpp"
#include "../core/error.hpp"
#include "../core/parallel.hpp"
#include "../kernels/dequantize.hpp"
#include "../kernels/simd/gemm_int8.hpp"
#include "../kernels/simd/ops.hpp"
#include "decode_float_rows.hpp"
#include "decode_integer.hpp"
#include "decode_tiles.hpp"
#include "kv_cache.hpp"
#include "tile_ops.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace attention {

struct decode_options {
  float scale = 0.0f;             ///< multiplies q·k; 0: 1 / sqrt(head_dim)
  std::size_t chunk_tokens = 0;   ///< tokens per parallel chunk; 0: chosen from the lengths and threads
  /// Integer QKᵀ for int8 keys with one scale per token and head (scheme<int8, S>, group_size 0):
  /// each query head is quantized to int8 (symmetric, absmax / 127) and q·k runs in int32
  /// (vpdpbusd on AVX-512 VNNI, vpmaddubsw elsewhere) on the cache's codes, never dequantized.
  bool int8_query = false;
  /// With int8_query, the V side in integers too, for int8 or int4 K and V without zero points
  /// (group_size 0, or a multiple of 16 for int8 / 32 for int4): per 16-token tile, query head
  /// and V group, the probabilities times the tokens' V scales are rounded to u8 against their
  /// largest and dotted with the V codes in int32 (vpdpbusd). Grouped int8 keys are then allowed.
  /// Adds an error of at most (0.5 / 255) max|V| per tile's weight share (see decode_integer.hpp).
  /// A cache built with kv_shape::integer_tiles is read from its tiles on AVX-512 (decode_tiles.hpp:
  /// no lane reductions or interleaves per step; the same bound).
  bool integer_pv = false;
  /// bf16 products, as prefill_options::bf16: q, K, the probabilities and V rounded to bf16
  /// (nearest even), products summed in fp32 (the softmax sums keep the unrounded
  /// probabilities). On a bf16 cache on the avx512_vnni path (AVX-512 BF16) the kernel runs
  /// vdpbf16ps on the rows as they are: half the product instructions of the fp32 path.
  /// Elsewhere fp32 products of the rounded operands. Not with int8_query.
  bool bf16 = false;
};

namespace detail {

// Vector helpers over a head vector (d a multiple of 16, so of every batch width).
template <class Tag>
float dot(const float* a, const float* b, std::size_t d) noexcept {
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    float s = 0.0f;
    for (std::size_t i = 0; i < d; ++i) s += a[i] * b[i];
    return s;
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    f32 acc0(0.0f), acc1(0.0f);
    std::size_t i = 0;
    for (; i + 2 * W <= d; i += 2 * W) {
      acc0 = xsimd::fma(f32::load_unaligned(a + i), f32::load_unaligned(b + i), acc0);
      acc1 = xsimd::fma(f32::load_unaligned(a + i + W), f32::load_unaligned(b + i + W), acc1);
    }
    for (; i < d; i += W) acc0 = xsimd::fma(f32::load_unaligned(a + i), f32::load_unaligned(b + i), acc0);
    alignas(64) float lanes[W];
    (acc0 + acc1).store_aligned(lanes);
    float s = 0.0f;
    for (std::size_t l = 0; l < W; ++l) s += lanes[l];  // (xsimd 8 says hadd, later ones reduce_add)
    return s;
#else
    return 0.0f;
#endif
  }
}

/// y += a * x.
template <class Tag>
void axpy(float a, const float* x, float* y, std::size_t d) noexcept {
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t i = 0; i < d; ++i) y[i] += a * x[i];
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    const f32 av(a);
    for (std::size_t i = 0; i < d; i += W)
      xsimd::fma(av, f32::load_unaligned(x + i), f32::load_unaligned(y + i)).store_unaligned(y + i);
#endif
  }
}

/// y *= a.
template <class Tag>
void scale_in_place(float* y, float a, std::size_t d) noexcept {
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t i = 0; i < d; ++i) y[i] *= a;
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    const f32 av(a);
    for (std::size_t i = 0; i < d; i += W) (f32::load_unaligned(y + i) * av).store_unaligned(y + i);
#endif
  }
}

/// For each of the G query heads j: acc_j = acc_j * correction[j] + sum_i p[j][i] v_tile[i] over
/// the n rows of a tile (p: G x 16, acc_j at acc + j d). Up to 8 batches of acc_j stay in
/// registers while the tokens go by: 8 independent FMA chains, not one chain per batch.
template <class Tag>
void accumulate_tile(const float* p, std::size_t n, const float* v_tile, std::size_t d, const float* correction,
                     std::size_t group, float* acc) noexcept {
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t j = 0; j < group; ++j)
      for (std::size_t e = 0; e < d; ++e) {
        float a = acc[j * d + e] * correction[j];
        for (std::size_t i = 0; i < n; ++i) a += p[j * tile_tokens + i] * v_tile[i * d + e];
        acc[j * d + e] = a;
      }
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes, B = 8;
    for (std::size_t j = 0; j < group; ++j) {
      float* aj = acc + j * d;
      const float* pj = p + j * tile_tokens;
      for (std::size_t e0 = 0; e0 < d; e0 += B * W) {
        const std::size_t batches = std::min(B, (d - e0) / W);
        f32 a[B];
        for (std::size_t b = 0; b < batches; ++b) a[b] = f32::load_unaligned(aj + e0 + b * W) * f32(correction[j]);
        for (std::size_t i = 0; i < n; ++i) {
          const f32 pi(pj[i]);
          const float* v = v_tile + i * d + e0;
          for (std::size_t b = 0; b < batches; ++b) a[b] = xsimd::fma(pi, f32::load_aligned(v + b * W), a[b]);
        }
        for (std::size_t b = 0; b < batches; ++b) a[b].store_unaligned(aj + e0 + b * W);
      }
    }
#endif
  }
}


/// scores[i] = q · k_tile[i] for the 16 rows of a tile (rows past n are computed and ignored):
/// one accumulator per token, reduced across lanes W tokens at a time by a transpose-add tree.
template <class Tag>
void tile_scores(const float* q, const float* k_tile, std::size_t d, float* scores) noexcept {
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t i = 0; i < tile_tokens; ++i) scores[i] = dot<Tag>(q, k_tile + i * d, d);
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    for (std::size_t i0 = 0; i0 < tile_tokens; i0 += W) {
      f32 acc[W];
      for (auto& a : acc) a = f32(0.0f);
      for (std::size_t e = 0; e < d; e += W) {
        const f32 qe = f32::load_unaligned(q + e);
        for (std::size_t i = 0; i < W; ++i) acc[i] = xsimd::fma(qe, f32::load_aligned(k_tile + (i0 + i) * d + e), acc[i]);
      }
      reduce_lanes<Tag>(acc).store_unaligned(scores + i0);
    }
#endif
  }
}

/// A query head quantized for the integer path: codes padded with zeros to a multiple of 64,
/// and what turns an int32 dot product with (k + 128) into a score.
struct int8_query {
  const int8_t* codes;
  int32_t offset;  ///< 128 * sum of the codes (the +128 that makes k's bytes unsigned)
  float scale;     ///< q's scale times the softmax scale
};

/// scores[i] = scale_k[i] * (q8 · k8[i]) * q.scale for the 16 rows of a tile of int8 keys (rows
/// past n read as zeros), in int32: k's bytes flipped to unsigned (k + 128) for vpdpbusd.
template <class Tag, class Scale>
void tile_scores_int8(const int8_query& q, const uint8_t* k_codes, const Scale* k_scales, std::size_t n,
                      std::size_t d, float* scores) noexcept {
  const std::size_t padded = (d + 63) / 64 * 64;
  alignas(64) uint8_t rows[tile_tokens][256 + 64];
  // k + 128 as unsigned bytes (a flipped sign bit), 8 bytes at a time; zeros past d and past n
  // (q's zero padding cancels them).
  for (std::size_t i = 0; i < tile_tokens; ++i) {
    std::size_t e = 0;
    if (i < n)
      for (; e < d; e += 8) {
        uint64_t word;
        std::memcpy(&word, k_codes + i * d + e, 8);
        word ^= 0x8080808080808080ull;
        std::memcpy(rows[i] + e, &word, 8);
      }
    if (e < padded) std::memset(rows[i] + e, 0, padded - e);
  }
  float sums[tile_tokens];
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t i = 0; i < tile_tokens; ++i) {
      int32_t dot = 0;
      for (std::size_t e = 0; e < padded; ++e) dot += int32_t(rows[i][e]) * q.codes[e];
      sums[i] = static_cast<float>(dot);
    }
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using O = simd::ops<Tag>;
    using i32 = typename O::i32;
    using f32 = typename O::f32;
    using B = simd::int8_dot<Tag>;
    constexpr std::size_t W = O::lanes, bytes = 4 * W;
    for (std::size_t i0 = 0; i0 < tile_tokens; i0 += W) {
      i32 acc[W];
      for (auto& a : acc) a = i32(0);
      for (std::size_t e = 0; e < padded; e += bytes) {
        const i32 qv = i32::load_unaligned(reinterpret_cast<const int32_t*>(q.codes + e));
        for (std::size_t i = 0; i < W; ++i)
          acc[i] = B::template dot<false>(acc[i], i32::load_aligned(reinterpret_cast<const int32_t*>(rows[i0 + i] + e)), qv);
      }
      f32 as_float[W];
      for (std::size_t i = 0; i < W; ++i) as_float[i] = O::to_f32(acc[i]);  // exact: |dot| < 2^24 for d <= 256
      reduce_lanes<Tag>(as_float).store_unaligned(sums + i0);
    }
#endif
  }
  for (std::size_t i = 0; i < n; ++i)
    scores[i] = (sums[i] - static_cast<float>(q.offset)) * q.scale * scale_traits<Scale>::to_float(k_scales[i]);
}

/// Tokens [t0, t1) of head h of sequence seq, for the `group` query heads at q (group x d, already
/// multiplied by the scale).
template <class Tag, class Element>
void decode_chunk(const kv_cache<Element>& cache, std::size_t seq, std::size_t h, std::size_t t0, std::size_t t1,
                  const float* q, const int8_query* q8, std::size_t group, bool rounded, const partial& out) {
  const std::size_t d = cache.shape().head_dim;
  alignas(64) float k_tile[tile_tokens * 256], v_tile[tile_tokens * 256];
  // Per query head of the group: the tile's probabilities and the rescaling of its sums.
  thread_local std::vector<float> score_buffer, correction_buffer;
  if (score_buffer.size() < group * tile_tokens) {
    score_buffer.resize(group * tile_tokens);
    correction_buffer.resize(group);
  }
  float* const scores = score_buffer.data();
  float* const corrections = correction_buffer.data();
  for (std::size_t j = 0; j < group; ++j) {
    out.max[j] = -std::numeric_limits<float>::infinity();
    out.sum[j] = 0.0f;
    std::fill(out.acc + j * d, out.acc + (j + 1) * d, 0.0f);
  }
  for (std::size_t t = t0, n = 0; t < t1; t += n) {
    // A tile: up to 16 tokens whose rows are consecutive (never across a page).
    n = std::min({tile_tokens, t1 - t, cache.run(t)});
    const std::size_t r0 = kv_unchecked::row(cache, seq, h, t);
    prefetch_new_page(cache, seq, h, t + n, t1);
    if (!q8) keys_to_float<Tag>(cache, seq, h, t, n, k_tile);
    rows_to_float<Tag>(cache.values(), r0, n, d, v_tile);
    if (!q8 && n < tile_tokens) std::fill(k_tile + n * d, k_tile + tile_tokens * d, 0.0f);  // scored, then ignored
    if (rounded) round_bf16(k_tile, tile_tokens * d), round_bf16(v_tile, n * d);
    for (std::size_t j = 0; j < group; ++j) {
      float* sj = scores + j * tile_tokens;
      if constexpr (is_int8_rows<Element>::value) {
        if (q8) {
          const auto& keys = cache.keys().matrix;
          tile_scores_int8<Tag>(q8[j], keys.codes() + r0 * d, keys.scales() + r0, n, d, sj);
        } else {
          tile_scores<Tag>(q + j * d, k_tile, d, sj);
        }
      } else {
        tile_scores<Tag>(q + j * d, k_tile, d, sj);
      }
      corrections[j] = softmax_tile<Tag>(sj, n, out.max[j], out.sum[j]);
      if (rounded) round_bf16(sj, tile_tokens);
    }
    accumulate_tile<Tag>(scores, n, v_tile, d, corrections, group, out.acc);
  }
}

}  // namespace detail

/// out[b][j] = softmax(q[b][j] · K[b][h]ᵀ · scale) · V[b][h] for every sequence b of the cache
/// (its current length; a sequence with no tokens gives zeros) and query head j, h = j / (q_heads
/// / kv_heads). q and out: batch x q_heads x head_dim floats, row-major. Throws lowbit::error for
/// q_heads not a multiple of kv_heads, null pointers, or a path not available here.
template <class Element, class Executor = serial_executor>
void decode(const float* q, const kv_cache<Element>& cache, float* out, std::size_t q_heads,
            const decode_options& options = {}, Executor&& exec = Executor{}, isa path = best_isa()) {
  const kv_shape& s = cache.shape();
  LOWBIT_CHECK(q != nullptr && out != nullptr, "decode: q or out is null");
  LOWBIT_CHECK(q_heads > 0 && q_heads % s.kv_heads == 0,
               "decode: q_heads=" << q_heads << " must be a positive multiple of kv_heads=" << s.kv_heads);
  LOWBIT_CHECK(isa_supported(path), "decode: the " << isa_name(path) << " path is not available here");
  LOWBIT_CHECK(s.head_dim <= 256, "decode: head_dim=" << s.head_dim << " is past 256");
  const std::size_t d = s.head_dim, group = q_heads / s.kv_heads;
  const float scale = options.scale != 0.0f ? options.scale : 1.0f / std::sqrt(static_cast<float>(d));
  // Chunks: about 4 per thread over all (sequence, head) pairs, at least 64 tokens each.
  std::size_t total = 0;
  for (std::size_t b = 0; b < s.batch; ++b) total += cache.lengths()[b];
  std::size_t chunk = options.chunk_tokens;
  if (chunk == 0) {
    const std::size_t target = 4 * std::max<std::size_t>(1, detail::threads_of(exec, 0));
    chunk = std::max<std::size_t>(64, (total * s.kv_heads + target - 1) / target);
    chunk = (chunk + detail::tile_tokens - 1) / detail::tile_tokens * detail::tile_tokens;
  }
  struct work {
    std::size_t seq, head, t0, t1;
  };
  // Per-call buffers, kept per calling thread so a decode step allocates nothing once warm; the
  // executor's workers see them through these references (a lambda does not capture thread_locals).
  thread_local std::vector<work> items_buffer;
  std::vector<work>& items = items_buffer;
  items.clear();
  for (std::size_t b = 0; b < s.batch; ++b)
    for (std::size_t h = 0; h < s.kv_heads; ++h)
      for (std::size_t t = 0, n = cache.lengths()[b]; t < n; t += chunk) items.push_back({b, h, t, std::min(n, t + chunk)});
  // Per item: group maxima, sums and V sums; the query heads prescaled once.
  thread_local std::vector<float> qs_buffer;
  std::vector<float>& qs = qs_buffer;
  qs.resize(s.batch * q_heads * d);
  LOWBIT_CHECK(!(options.bf16 && options.int8_query), "decode: bf16 products and int8_query exclude each other");
  for (std::size_t i = 0; i < qs.size(); ++i) qs[i] = options.bf16 ? detail::round_bf16(q[i] * scale) : q[i] * scale;
  // The integer path: each query head as int8 codes (padded to 64 bytes) and its scales.
  const std::size_t padded = (d + 63) / 64 * 64;
  thread_local std::vector<int8_t> q_codes_buffer;
  thread_local std::vector<detail::int8_query> q8_buffer;
  std::vector<int8_t>& q_codes = q_codes_buffer;
  std::vector<detail::int8_query>& q8 = q8_buffer;
  q8.clear();
  // The integer path on both sides: queries quantized in its layout.
  detail::int_layout layout;
  thread_local aligned_buffer<int8_t> iq_codes_buffer, iq_plain_buffer;
  thread_local aligned_buffer<int32_t> iq_offset_buffer;
  thread_local std::vector<float> iq_scale_buffer;
  aligned_buffer<int8_t>& iq_codes = iq_codes_buffer;
  aligned_buffer<int8_t>& iq_plain = iq_plain_buffer;
  aligned_buffer<int32_t>& iq_offset = iq_offset_buffer;
  std::vector<float>& iq_scale = iq_scale_buffer;
  const bool integer = options.integer_pv;
  LOWBIT_CHECK(!(options.int8_query && cache.key_tokens()),
               "decode: int8_query needs keys with per-token scales; KIVI keys (key_tokens > 0) take the float path");
  if (integer) {
    LOWBIT_CHECK(options.int8_query, "decode: integer_pv needs int8_query (integer q·k as well)");
    LOWBIT_CHECK(is_int_kv<Element>::value,
                 "decode: integer_pv needs int8 or int4 K and V without zero points (kv_cache<scheme<int8 or int4, ...>>)");
    if constexpr (is_int_kv<Element>::value) {
      constexpr bool is_int4 = std::is_same<typename Element::format, int4>::value;
      const std::size_t g = cache.keys().matrix.group_size();
      LOWBIT_CHECK(g == d || g % (is_int4 ? 32 : 16) == 0,
                   "decode: integer_pv needs one scale per token and head or groups of a multiple of "
                       << (is_int4 ? 32 : 16) << " elements, not " << g);
      layout = detail::int_layout(is_int4, d, g);
      const std::size_t rows = s.batch * q_heads;
      if (iq_codes.size() < rows * layout.sources * 64) iq_codes = aligned_buffer<int8_t>(rows * layout.sources * 64);
      if (iq_plain.size() < rows * d) iq_plain = aligned_buffer<int8_t>(rows * d);
      if (iq_offset.size() < rows * layout.chunks * 16) iq_offset = aligned_buffer<int32_t>(rows * layout.chunks * 16);
      iq_scale.resize(rows);
      for (std::size_t r = 0; r < rows; ++r)
        iq_scale[r] = scale * detail::quantize_int_query(q + r * d, layout, iq_codes.data() + r * layout.sources * 64,
                                                         iq_plain.data() + r * d, iq_offset.data() + r * layout.chunks * 16);
    }
  } else if (options.int8_query) {
    LOWBIT_CHECK(detail::is_int8_rows<Element>::value,
                 "decode: int8_query needs int8 keys without zero points (kv_cache<scheme<int8, ...>>)");
    if constexpr (detail::is_int8_rows<Element>::value) {
      LOWBIT_CHECK(cache.keys().matrix.group_size() == d,
                   "decode: int8_query needs one key scale per token and head (group_size 0), not groups of "
                       << cache.keys().matrix.group_size());
    }
    q_codes.assign(s.batch * q_heads * padded, 0);
    q8.resize(s.batch * q_heads);
    for (std::size_t r = 0; r < s.batch * q_heads; ++r) {
      float absmax = 0.0f;
      for (std::size_t e = 0; e < d; ++e) absmax = std::max(absmax, std::fabs(q[r * d + e]));
      const float q_scale = absmax > 0.0f ? absmax / 127.0f : 1.0f;
      int32_t sum = 0;
      for (std::size_t e = 0; e < d; ++e) {
        const int8_t c = static_cast<int8_t>(std::nearbyint(q[r * d + e] / q_scale));
        q_codes[r * padded + e] = c;
        sum += c;
      }
      q8[r] = detail::int8_query{q_codes.data() + r * padded, 128 * sum, q_scale * scale};
    }
  }
  thread_local aligned_buffer<float> state_buffer;
  aligned_buffer<float>& state = state_buffer;
  if (state.size() < items.size() * group * (d + 2)) state = aligned_buffer<float>(items.size() * group * (d + 2));
  const auto part = [&](std::size_t i) {
    float* base = state.data() + i * group * (d + 2);
    return detail::partial{base, base + group, base + 2 * group};
  };
  // Items are taken one at a time from a shared counter by as many chunks as the executor has
  // threads, not split into fixed ranges: when another process holds a core, the thread that
  // runs takes the rest instead of waiting for a descheduled one (each item has its own partial,
  // so the result does not depend on who ran it).
  std::atomic<std::size_t> next{0};
  const std::size_t runners = std::min(items.size(), std::max<std::size_t>(1, detail::threads_of(exec, 0)));
  dispatch(path, [&](auto tag) {
    using Tag = decltype(tag);
    exec(runners, [&](std::size_t, std::size_t) {
      for (std::size_t i = next.fetch_add(1, std::memory_order_relaxed); i < items.size();
           i = next.fetch_add(1, std::memory_order_relaxed)) {
        const work& w = items[i];
        const std::size_t first_head = w.seq * q_heads + w.head * group;
        if constexpr (is_int_kv<Element>::value) {
          if (integer) {
            const detail::int_queries iq{iq_codes.data() + first_head * layout.sources * 64,
                                         iq_offset.data() + first_head * layout.chunks * 16, iq_scale.data() + first_head,
                                         iq_plain.data() + first_head * d};
#if defined(LOWBIT_COMPILED_AVX512)
            if constexpr (detail::is_wide<Tag>::value)
              if (cache.has_tiles()) {  // the bytes already in vpdpbusd's order (decode_tiles.hpp)
                detail::decode_chunk_tiles<Tag>(cache, w.seq, w.head, w.t0, w.t1, iq, group, part(i));
                continue;
              }
#endif
            detail::decode_chunk_integer<Tag>(cache, w.seq, w.head, w.t0, w.t1, iq, layout, group, part(i));
            continue;
          }
        }
        const float* qh = qs.data() + first_head * d;
#if defined(LOWBIT_COMPILED_AVX512)
        if constexpr ((std::is_same<Element, bf16>::value || std::is_same<Element, float>::value) &&
                      detail::is_wide<Tag>::value) {  // rows read in place (decode_float_rows.hpp)
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
          if constexpr (std::is_same<Element, bf16>::value && Tag::level == isa::avx512_vnni)
            if (options.bf16) {  // on vdpbf16ps
              detail::decode_chunk_rows<Tag, Element, true>(cache, w.seq, w.head, w.t0, w.t1, qh, group, true, part(i));
              continue;
            }
#endif
          if (std::is_same<Element, bf16>::value || !options.bf16) {  // (fp32 rows to round: the float path)
            detail::decode_chunk_rows<Tag>(cache, w.seq, w.head, w.t0, w.t1, qh, group, options.bf16, part(i));
            continue;
          }
        }
#endif
        detail::decode_chunk<Tag>(cache, w.seq, w.head, w.t0, w.t1, qh, q8.empty() ? nullptr : q8.data() + first_head,
                                  group, options.bf16, part(i));
      }
    });
  });
  // Merge the chunks of each (sequence, head) by log-sum-exp, in order.
  std::fill(out, out + s.batch * q_heads * d, 0.0f);
  std::size_t i = 0;
  for (std::size_t b = 0; b < s.batch; ++b)
    for (std::size_t h = 0; h < s.kv_heads; ++h) {
      const std::size_t first = i;
      while (i < items.size() && items[i].seq == b && items[i].head == h) ++i;
      for (std::size_t j = 0; j < group && first < i; ++j) {
        float max = -std::numeric_limits<float>::infinity();
        for (std::size_t c = first; c < i; ++c) max = std::max(max, part(c).max[j]);
        float sum = 0.0f;
        float* o = out + (b * q_heads + h * group + j) * d;
        for (std::size_t c = first; c < i; ++c) {
          const float weight = std::exp(part(c).max[j] - max);
          sum += part(c).sum[j] * weight;
          for (std::size_t e = 0; e < d; ++e) o[e] += part(c).acc[j * d + e] * weight;
        }
        for (std::size_t e = 0; e < d; ++e) o[e] /= sum;
      }
    }
}

}  // namespace attention
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
