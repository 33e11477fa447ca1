/// \file
/// \brief Decode attention in integers on both sides (decode_options::integer_pv), for int8 and
/// int4 K and V without zero points: q Kᵀ as int8 queries against the cache's codes, and P V as
/// u8 probabilities against the V codes, both in int32 (vpdpbusd on AVX-512 VNNI).
///
/// Why: a float kernel spends G x d multiply-adds per cached token on each side (G query heads
/// per KV head), one 16-lane FMA per 16 of them; an int8 dot product does 64 per instruction, so
/// the kernel can keep up with the memory that streams the low-bit cache.
///
/// What is exact and what is rounded. Each query head is quantized to int8 (absmax / 127, as
/// int8_query does); its dot product with a key's codes is exact in int32, then scaled per key
/// group. Softmax is float. For P V, per 16-token tile, query head and V group g, the weights
/// w_t = p_t · s_v(t, g) (probability times the token's V scale) are rounded to u8 against
/// their largest: w_t ≈ u_t · max_t(w) / 255, u_t in 0..255; the sum over the tile of u_t · v_t
/// (the codes) is exact in int32 and scaled back in float. The softmax denominator is the sum of
/// the unrounded p. So each output is off the float result by at most
///   (0.5 / 255) · max|code| · max s_v · Σ_tiles (tokens · max p in the tile) / Σ p:
/// about 0.2% of max|V| (0.1% times the count of tokens ÷ the count that carry the weight,
/// per tile) when attention spreads over many tokens, at most 16 times that when one token of a
/// tile takes nearly all of it; the same order as int8 V's own rounding. The tests check this
/// bound against a float64 reference.
/// (The tile kernel, decode_tiles.hpp, rounds against max p · max s_v of the tile's group:
/// a step no larger than this bound's, the same bound.)
///
/// Layout the AVX-512 kernel works in: a head vector's codes in 64-byte chunks; int8: chunk c
/// holds elements 64c..64c+63 ("source" c); int4: byte chunk b holds elements 128b..128b+127,
/// split into its low nibbles (even elements, source 2b) and high nibbles (odd ones, source
/// 2b + 1), sign-extended to bytes. For P V four tokens' sources are interleaved byte by byte
/// (two unpack levels, within 128-bit lanes), so each int32 lane holds one element of four
/// tokens: vpdpbusd against the four tokens' u8 weights. The sums come out in a fixed permuted
/// element order, put back once per chunk of tokens. Groups must not split a 128-bit lane of a
/// source (group_size % 16 == 0 for int8, % 32 for int4, or one group per head vector).
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
#include "kv_cache.hpp"
#include "tile_ops.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace attention {
namespace detail {

/// Tags whose integer kernel is the AVX-512 one (others run the portable loops).
template <class Tag>
struct is_wide : std::false_type {};
#if defined(LOWBIT_COMPILED_AVX512)
template <>
struct is_wide<arch::avx512_tag> : std::true_type {};
#endif
#if defined(LOWBIT_COMPILED_AVX512_VNNI)
template <>
struct is_wide<arch::avx512_vnni_tag> : std::true_type {};
#endif

/// Where the elements of a head vector sit in the kernel's 64-byte sources (see the file comment).
struct int_layout {
  bool int4 = false;
  std::size_t d = 0, group = 0, groups = 0, row_bytes = 0, chunks = 0, sources = 0;
  int_layout() = default;
  int_layout(bool is_int4, std::size_t head_dim, std::size_t group_size)
      : int4(is_int4), d(head_dim), group(group_size), groups(head_dim / group_size),
        row_bytes(is_int4 ? head_dim / 2 : head_dim), chunks((row_bytes + 63) / 64), sources(is_int4 ? 2 * chunks : chunks) {}
  /// Element at byte position p (0..63) of source s (may be >= d: padding).
  std::size_t element(std::size_t s, std::size_t p) const noexcept { return int4 ? 128 * (s / 2) + 2 * p + s % 2 : 64 * s + p; }
  /// The code of element e of a row, as an integer.
  int code(const uint8_t* row, std::size_t e) const noexcept {
    if (!int4) return static_cast<int8_t>(row[e]);
    const int nibble = (e % 2) ? row[e / 2] >> 4 : row[e / 2] & 0x0F;
    return (nibble ^ 8) - 8;
  }
};

/// The query heads of one KV head's group, quantized (built once per call by decode()).
struct int_queries {
  const int8_t* codes;    ///< group x sources x 64: each head's codes in source order, zeros past d
  const int32_t* offset;  ///< group x chunks x 16: minus the bias the unsigned keys add, per lane
  const float* scale;     ///< group: the query's int8 scale times the softmax scale
  const int8_t* plain;    ///< group x d: the codes in element order (portable path)
};

/// Quantizes query head q (d floats) for the integer path: codes in source order (64 bytes per
/// source) and plain order, the per-lane offsets, and the scale of a code.
inline float quantize_int_query(const float* q, const int_layout& L, int8_t* codes, int8_t* plain, int32_t* offset) {
  float absmax = 0.0f;
  for (std::size_t e = 0; e < L.d; ++e) absmax = std::max(absmax, std::fabs(q[e]));
  const float scale = absmax > 0.0f ? absmax / 127.0f : 1.0f;
  for (std::size_t e = 0; e < L.d; ++e) plain[e] = static_cast<int8_t>(std::nearbyint(q[e] / scale));
  for (std::size_t s = 0; s < L.sources; ++s)
    for (std::size_t p = 0; p < 64; ++p) {
      const std::size_t e = L.element(s, p);
      codes[s * 64 + p] = e < L.d ? plain[e] : 0;
    }
  // Keys enter vpdpbusd as unsigned bytes: int8 codes + 128 (sign bit flipped), int4 codes + 8.
  // Lane l of chunk b sums sources' bytes 4l..4l+3; the bias times those q codes comes off.
  const int32_t bias = L.int4 ? 8 : 128;
  for (std::size_t b = 0; b < L.chunks; ++b)
    for (std::size_t l = 0; l < 16; ++l) {
      int32_t sum = 0;
      for (std::size_t s = L.int4 ? 2 * b : b; s < (L.int4 ? 2 * b + 2 : b + 1); ++s)
        for (std::size_t i = 0; i < 4; ++i) sum += codes[s * 64 + 4 * l + i];
      offset[b * 16 + l] = -bias * sum;
    }
  return scale;
}

/// Scales of rows [r0, r0 + n) (n x groups, row-major) as floats; rows past n up to 16 as zeros.
template <bool Wide, class Scale>
void scales_to_float(const Scale* src, std::size_t n, std::size_t groups, float* out) noexcept {
  std::size_t i = 0;
#if defined(LOWBIT_COMPILED_AVX512)
  if constexpr (Wide && std::is_same<Scale, fp16>::value)  // vcvtph2ps, 16 at a time
    for (; i + 16 <= n * groups; i += 16)
      _mm512_store_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
#endif
  for (; i < n * groups; ++i) out[i] = scale_traits<Scale>::to_float(src[i]);
  std::fill(out + n * groups, out + tile_tokens * groups, 0.0f);
}

/// Rounds one head's tile of V weights w (16 tokens) to u8 against their largest: bytes[t] =
/// round(w_t · 255 / max); returns max / 255 (0 when every weight is 0).
inline float round_weights(const float* w, uint8_t* bytes) noexcept {
  float max = 0.0f;
  for (std::size_t t = 0; t < tile_tokens; ++t) max = std::max(max, w[t]);
  if (!(max > 0.0f)) {
    std::memset(bytes, 0, tile_tokens);
    return 0.0f;
  }
  const float inverse = 255.0f / max;
  for (std::size_t t = 0; t < tile_tokens; ++t) bytes[t] = static_cast<uint8_t>(std::min(255.0f, std::nearbyint(w[t] * inverse)));
  return max / 255.0f;
}

/// Per-thread buffers of the integer chunk kernel.
struct int_scratch {
  aligned_buffer<float> acc;        ///< group x sources x 64: P V sums in the kernel's element order
  aligned_buffer<float> stash;      ///< group x 16 x 16: per-token lane sums of q·k
  aligned_buffer<uint32_t> weights; ///< group x 4 quads x 16 groups: four tokens' u8 weights a word
  aligned_buffer<float> wscale;     ///< group x 16 groups
  aligned_buffer<float> correction; ///< group: this tile's rescaling of the sums
  void reserve(std::size_t group, std::size_t sources) {
    if (acc.size() < group * sources * 64) acc = aligned_buffer<float>(group * sources * 64);
    if (stash.size() < group * 256) {
      stash = aligned_buffer<float>(group * 256);
      weights = aligned_buffer<uint32_t>(group * 64);
      wscale = aligned_buffer<float>(group * 16);
      correction = aligned_buffer<float>(group);
    }
  }
};

#if defined(LOWBIT_COMPILED_AVX512)
/// One 16-token tile of the AVX-512 kernel: Chunks 64-byte chunks of codes per row, Uniform: one
/// scale per token and head (compile-time, so the chunk and source loops unroll into registers).
/// kc, vc: 16 rows of codes (row_bytes apart); ks, vs: their scales as floats (16 x groups).
template <class Tag, bool Int4, std::size_t Chunks, bool Uniform>
void int_tile_wide(const uint8_t* kc, const uint8_t* vc, const float* ks, const float* vs, std::size_t n,
                   const int_queries& qs, const int_layout& L, std::size_t group, const partial& out, int_scratch& scratch,
                   float* acc, const int32_t* kidx, const int32_t* vidx) {
  using dot = simd::int8_dot<Tag>;
  using f32 = typename simd::ops<Tag>::f32;
  constexpr std::size_t per_chunk = Int4 ? 2 : 1, sources = Chunks * per_chunk;
  const std::size_t rb = L.row_bytes, G = L.groups;
  const __mmask64 tail = rb % 64 ? (~0ull >> (64 - rb % 64)) : ~0ull;
  const auto load_chunk = [&](const uint8_t* row, std::size_t b) {
    return b + 1 < Chunks ? _mm512_loadu_si512(row + 64 * b) : _mm512_maskz_loadu_epi8(tail, row + 64 * b);
  };
  float* const stash = scratch.stash.data();
  float* const corrections = scratch.correction.data();
  float* const weight_scale = scratch.wscale.data();
  uint32_t* const words = scratch.weights.data();
  // q·k: per token, each chunk's keys made unsigned once (int8 + 128, int4 + 8) and dotted with
  // every head's codes; lane sums stashed per token, then reduced 16 tokens at a time.
  for (std::size_t i = 0; i < tile_tokens; ++i) {
    __m512i src[sources];
    __m512 kscale[Chunks];
    LOWBIT_UNROLL
    for (std::size_t b = 0; b < Chunks; ++b) {
      const __m512i raw = load_chunk(kc + i * rb, b);
      if (Int4) {
        const __m512i flipped = _mm512_xor_si512(raw, _mm512_set1_epi8(char(0x88))), nibble = _mm512_set1_epi8(0x0F);
        src[per_chunk * b] = _mm512_and_si512(flipped, nibble);
        src[per_chunk * b + per_chunk - 1] = _mm512_and_si512(_mm512_srli_epi16(flipped, 4), nibble);
      } else {
        src[b] = _mm512_xor_si512(raw, _mm512_set1_epi8(char(0x80)));
      }
      if (!Uniform)  // lane l: its key group's scale
        kscale[b] = _mm512_permutexvar_ps(_mm512_load_si512(kidx + 16 * b), _mm512_maskz_loadu_ps(__mmask16((1u << G) - 1), ks + i * G));
    }
    for (std::size_t j = 0; j < group; ++j) {
      const int8_t* qj = qs.codes + j * sources * 64;
      if (Uniform) {  // one int32 sum over the chunks, one scale after the reduction
        __m512i a = _mm512_loadu_si512(qs.offset + j * Chunks * 16);
        LOWBIT_UNROLL
        for (std::size_t b = 1; b < Chunks; ++b) a = _mm512_add_epi32(a, _mm512_loadu_si512(qs.offset + (j * Chunks + b) * 16));
        LOWBIT_UNROLL
        for (std::size_t c = 0; c < sources; ++c) a = dot::template dot<false>(a, src[c], _mm512_loadu_si512(qj + c * 64));
        _mm512_store_ps(stash + (j * tile_tokens + i) * 16, _mm512_cvtepi32_ps(a));
      } else {
        __m512 f = _mm512_setzero_ps();
        LOWBIT_UNROLL
        for (std::size_t b = 0; b < Chunks; ++b) {
          __m512i sum = _mm512_loadu_si512(qs.offset + (j * Chunks + b) * 16);
          LOWBIT_UNROLL
          for (std::size_t c = 0; c < per_chunk; ++c)
            sum = dot::template dot<false>(sum, src[per_chunk * b + c], _mm512_loadu_si512(qj + (per_chunk * b + c) * 64));
          f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), kscale[b], f);
        }
        _mm512_store_ps(stash + (j * tile_tokens + i) * 16, f);
      }
    }
  }
  // The V scales by group: column g of the 16 x G matrix, once for every head.
  alignas(64) float columns[16 * tile_tokens];
  if (Uniform) {
    std::memcpy(columns, vs, sizeof(float) * tile_tokens);
  } else {
    for (std::size_t i = 0; i < tile_tokens; ++i)
      for (std::size_t g = 0; g < G; ++g) columns[g * tile_tokens + i] = vs[i * G + g];
  }
  const __mmask16 valid = __mmask16((1u << n) - 1);
  for (std::size_t j = 0; j < group; ++j) {
    f32 lanes[tile_tokens];
    LOWBIT_UNROLL
    for (std::size_t i = 0; i < tile_tokens; ++i) lanes[i] = f32::load_aligned(stash + (j * tile_tokens + i) * 16);
    __m512 s = _mm512_mul_ps(reduce_lanes<Tag>(lanes), _mm512_set1_ps(qs.scale[j]));
    if (Uniform) s = _mm512_mul_ps(s, _mm512_load_ps(ks));
    // Online softmax, then the tile's V weights rounded to u8 per V group.
    const float tile_max = _mm512_mask_reduce_max_ps(valid, s);
    const float new_max = std::max(out.max[j], tile_max);
    // 0 on the first tile; exactly 1 (exp(0)) while the maximum holds, without the call
    corrections[j] = new_max == out.max[j] ? 1.0f : std::exp(out.max[j] - new_max);
    const __m512 pv = _mm512_maskz_mov_ps(
        valid, xsimd::exp(xsimd::batch<float, typename Tag::xsimd_arch>(_mm512_sub_ps(s, _mm512_set1_ps(new_max)))).data);
    out.sum[j] = out.sum[j] * corrections[j] + _mm512_reduce_add_ps(pv);
    out.max[j] = new_max;
    for (std::size_t g = 0; g < (Uniform ? 1 : G); ++g) {
      const __m512 wv = _mm512_mul_ps(pv, _mm512_load_ps(columns + 16 * g));
      const float m = _mm512_reduce_max_ps(wv);
      alignas(16) uint32_t quads[4] = {0, 0, 0, 0};
      weight_scale[j * 16 + g] = 0.0f;
      if (m > 0.0f) {
        const __m512i u = _mm512_cvtps_epi32(_mm512_mul_ps(wv, _mm512_set1_ps(255.0f / m)));
        _mm_store_si128(reinterpret_cast<__m128i*>(quads), _mm512_cvtusepi32_epi8(u));
        weight_scale[j * 16 + g] = m / 255.0f;
      }
      LOWBIT_UNROLL
      for (std::size_t quad = 0; quad < 4; ++quad) words[(j * 4 + quad) * 16 + g] = quads[quad];
    }
  }
  // P V: per source, the 16 tokens' codes interleaved four tokens a lane, then every head.
  for (std::size_t s = 0; s < sources; ++s) {
    __m512i I[4][4];
    const std::size_t b = s / per_chunk;
    LOWBIT_UNROLL
    for (std::size_t quad = 0; quad < 4; ++quad) {
      __m512i r[4];
      LOWBIT_UNROLL
      for (std::size_t k = 0; k < 4; ++k) {
        const __m512i raw = load_chunk(vc + (4 * quad + k) * rb, b);
        if (Int4) {  // the nibbles of this source, sign-extended to bytes
          const __m512i nib = _mm512_and_si512(s % 2 ? _mm512_srli_epi16(raw, 4) : raw, _mm512_set1_epi8(0x0F));
          r[k] = _mm512_sub_epi8(_mm512_xor_si512(nib, _mm512_set1_epi8(8)), _mm512_set1_epi8(8));
        } else {
          r[k] = raw;
        }
      }
      const __m512i x0 = _mm512_unpacklo_epi8(r[0], r[1]), x1 = _mm512_unpackhi_epi8(r[0], r[1]);
      const __m512i y0 = _mm512_unpacklo_epi8(r[2], r[3]), y1 = _mm512_unpackhi_epi8(r[2], r[3]);
      I[quad][0] = _mm512_unpacklo_epi16(x0, y0);
      I[quad][1] = _mm512_unpackhi_epi16(x0, y0);
      I[quad][2] = _mm512_unpacklo_epi16(x1, y1);
      I[quad][3] = _mm512_unpackhi_epi16(x1, y1);
    }
    const __m512i gidx = _mm512_load_si512(vidx + 16 * s);
    for (std::size_t j = 0; j < group; ++j) {
      __m512i sum[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
      LOWBIT_UNROLL
      for (std::size_t quad = 0; quad < 4; ++quad) {
        const __m512i wq = Uniform ? _mm512_set1_epi32(static_cast<int>(words[(j * 4 + quad) * 16]))
                                   : _mm512_permutexvar_epi32(gidx, _mm512_loadu_si512(words + (j * 4 + quad) * 16));
        LOWBIT_UNROLL
        for (std::size_t x = 0; x < 4; ++x) sum[x] = dot::template dot<false>(sum[x], wq, I[quad][x]);
      }
      const __m512 fs = Uniform ? _mm512_set1_ps(weight_scale[j * 16]) : _mm512_permutexvar_ps(gidx, _mm512_loadu_ps(weight_scale + j * 16));
      float* a = acc + (j * sources + s) * 64;
      if (corrections[j] == 1.0f) {  // the running maximum held (most tiles)
        LOWBIT_UNROLL
        for (std::size_t x = 0; x < 4; ++x)
          _mm512_store_ps(a + 16 * x, _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[x]), fs, _mm512_load_ps(a + 16 * x)));
      } else {
        const __m512 corr = _mm512_set1_ps(corrections[j]);
        LOWBIT_UNROLL
        for (std::size_t x = 0; x < 4; ++x)
          _mm512_store_ps(a + 16 * x, _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[x]), fs, _mm512_mul_ps(_mm512_load_ps(a + 16 * x), corr)));
      }
    }
  }
}

/// The instance of int_tile_wide for a layout.
template <class Tag, bool Int4>
auto pick_int_tile(const int_layout& L) {
  using fn = decltype(&int_tile_wide<Tag, Int4, 1, true>);
  const bool uniform = L.groups == 1;
  switch (L.chunks) {
    case 1: return uniform ? fn(&int_tile_wide<Tag, Int4, 1, true>) : fn(&int_tile_wide<Tag, Int4, 1, false>);
    case 2: return uniform ? fn(&int_tile_wide<Tag, Int4, 2, true>) : fn(&int_tile_wide<Tag, Int4, 2, false>);
    case 3: return uniform ? fn(&int_tile_wide<Tag, Int4, 3, true>) : fn(&int_tile_wide<Tag, Int4, 3, false>);
    default: return uniform ? fn(&int_tile_wide<Tag, Int4, 4, true>) : fn(&int_tile_wide<Tag, Int4, 4, false>);
  }
}
#undef LOWBIT_UNROLL
#endif

/// Tokens [t0, t1) of head h of sequence seq for the `group` query heads of qs, integer q·k and
/// P V (see the file comment).
template <class Tag, class Element>
void decode_chunk_integer(const kv_cache<Element>& cache, std::size_t seq, std::size_t h, std::size_t t0, std::size_t t1,
                          const int_queries& qs, const int_layout& L, std::size_t group, const partial& out) {
  const std::size_t d = L.d, G = L.groups, rb = L.row_bytes;
  const auto& K = cache.keys().matrix;
  const auto& V = cache.values().matrix;
  thread_local int_scratch scratch;
  scratch.reserve(group, L.sources);
  alignas(64) uint8_t k_pad[tile_tokens * 256], v_pad[tile_tokens * 256];  // a tail tile's rows, zero-filled
  alignas(64) float ks[tile_tokens * 16], vs[tile_tokens * 16], scores[tile_tokens], p[tile_tokens], w[tile_tokens];
  alignas(64) uint8_t bytes[16 * tile_tokens];
  constexpr float minus_inf = -std::numeric_limits<float>::infinity();
  for (std::size_t j = 0; j < group; ++j) {
    out.max[j] = minus_inf;
    out.sum[j] = 0.0f;
  }
  constexpr bool wide = is_wide<Tag>::value;
#if defined(LOWBIT_COMPILED_AVX512)
  // Lane -> group tables of the wide kernel: keys (lane l of chunk b sums elements from
  // element(first source of b, 4l)) and values (128-bit lane k of source s: from element(s, 16k)).
  alignas(64) int32_t kidx[16 * 4], vidx[16 * 8];
  if constexpr (wide) {
    for (std::size_t b = 0; b < L.chunks; ++b)
      for (std::size_t l = 0; l < 16; ++l)
        kidx[16 * b + l] = static_cast<int32_t>(std::min(L.element(L.int4 ? 2 * b : b, 4 * l), d - 1) / L.group);
    for (std::size_t s = 0; s < L.sources; ++s)
      for (std::size_t l = 0; l < 16; ++l)
        vidx[16 * s + l] = static_cast<int32_t>(std::min(L.element(s, 16 * (l / 4)), d - 1) / L.group);
  }
  const auto wide_tile = [&] {
    if constexpr (wide) return pick_int_tile<Tag, std::is_same<typename Element::format, int4>::value>(L);
    else return nullptr;
  }();
#endif
  float* const acc = wide ? scratch.acc.data() : out.acc;  // the portable path sums in element order
  std::fill(acc, acc + group * (wide ? L.sources * 64 : d), 0.0f);
  for (std::size_t t = t0, n = 0; t < t1; t += n) {
    n = std::min({tile_tokens, t1 - t, cache.run(t)});
    const std::size_t r0 = kv_unchecked::row(cache, seq, h, t);
    prefetch_new_page(cache, seq, h, t + n, t1);
    const uint8_t* kc = K.codes() + r0 * rb;
    const uint8_t* vc = V.codes() + r0 * rb;
    if (n < tile_tokens) {  // the kernel reads 16 rows: copy the tail's, zeros after
      std::memset(k_pad, 0, sizeof k_pad);
      std::memset(v_pad, 0, sizeof v_pad);
      std::memcpy(k_pad, kc, n * rb);
      std::memcpy(v_pad, vc, n * rb);
      kc = k_pad;
      vc = v_pad;
    }
    scales_to_float<wide>(K.scales() + r0 * G, n, G, ks);
    scales_to_float<wide>(V.scales() + r0 * G, n, G, vs);
#if defined(LOWBIT_COMPILED_AVX512)
    if constexpr (wide) {
      wide_tile(kc, vc, ks, vs, n, qs, L, group, out, scratch, acc, kidx, vidx);
      continue;
    }
#endif
    // Portable: the same integers and roundings in element order.
    float* const weight_scale = scratch.wscale.data();
    for (std::size_t j = 0; j < group; ++j) {
      const int8_t* qj = qs.plain + j * d;
      for (std::size_t i = 0; i < n; ++i) {
        // The key's codes first, then plain int8 dot products: GCC 12 at -O3 vectorizes the dot
        // with L.code() inside it wrongly (wrong sums on x86-64 with AVX-512; clang and -O2 agree
        // with the reference), so the two steps stay separate loops.
        int8_t key[256];
        for (std::size_t e = 0; e < d; ++e) key[e] = static_cast<int8_t>(L.code(kc + i * rb, e));
        float score = 0.0f;
        for (std::size_t g = 0; g < G; ++g) {
          int32_t dot = 0;
          for (std::size_t e = g * L.group; e < (g + 1) * L.group; ++e) dot += int32_t(qj[e]) * int32_t(key[e]);
          score += static_cast<float>(dot) * ks[i * G + g];
        }
        scores[i] = score * qs.scale[j];
      }
      float tile_max = minus_inf;
      for (std::size_t i = 0; i < n; ++i) tile_max = std::max(tile_max, scores[i]);
      const float new_max = std::max(out.max[j], tile_max);
      const float correction = new_max == out.max[j] ? 1.0f : std::exp(out.max[j] - new_max);
      float sum = 0.0f;
      for (std::size_t i = 0; i < tile_tokens; ++i) sum += p[i] = i < n ? std::exp(scores[i] - new_max) : 0.0f;
      out.sum[j] = out.sum[j] * correction + sum;
      out.max[j] = new_max;
      for (std::size_t g = 0; g < G; ++g) {
        for (std::size_t i = 0; i < tile_tokens; ++i) w[i] = p[i] * vs[i * G + g];
        weight_scale[g] = round_weights(w, bytes + g * tile_tokens);
      }
      float* a = acc + j * d;
      for (std::size_t e = 0; e < d; ++e) {
        const std::size_t g = e / L.group;
        int32_t dot = 0;
        for (std::size_t i = 0; i < n; ++i) dot += int32_t(bytes[g * tile_tokens + i]) * L.code(vc + i * rb, e);
        a[e] = a[e] * correction + static_cast<float>(dot) * weight_scale[g];
      }
    }
  }
  if (wide)  // back to element order
    for (std::size_t j = 0; j < group; ++j)
      for (std::size_t s = 0; s < L.sources; ++s)
        for (std::size_t x = 0; x < 4; ++x)
          for (std::size_t l = 0; l < 16; ++l) {
            const std::size_t e = L.element(s, 16 * (l / 4) + 4 * x + l % 4);
            if (e < d) out.acc[j * d + e] = acc[(j * L.sources + s) * 64 + 16 * x + l];
          }
}

}  // namespace detail
}  // namespace attention
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
