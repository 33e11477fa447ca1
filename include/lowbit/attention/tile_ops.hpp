/// \file
/// \brief What the attention kernels (decode, prefill) share: the 16-token tile, K and V rows of a
/// kv_cache turned into floats in an L1 tile, the executor's thread count, a prefetch helper.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <thread>
#include <type_traits>

#include "../arch/dispatch.hpp"
#include "../core/aligned.hpp"
#include "../kernels/dequantize.hpp"
#include "../kernels/simd/ops.hpp"
#include "kv_cache.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

/// Unrolls the loop that follows (register blocks: arrays of vectors indexed by its counter).
#if defined(__GNUC__) || defined(__clang__)
#define LOWBIT_UNROLL _Pragma("GCC unroll 16")
#else
#define LOWBIT_UNROLL
#endif

namespace lowbit {
namespace attention {
namespace detail {

constexpr std::size_t tile_tokens = 16;

/// Online-softmax state of one chunk for its group's query heads: running max, sum, V sum.
struct partial {
  float* max;
  float* sum;
  float* acc;  ///< group x d
};

/// Threads an executor offers: its concurrency() when it says, else the hardware's (an engine's
/// lambda executor says nothing; more chunks than threads only cost a little merging).
template <class Executor>
auto threads_of(const Executor& exec, int) -> decltype(std::size_t(exec.concurrency())) {
  return exec.concurrency();
}
template <class Executor>
std::size_t threads_of(const Executor&, long) {
  return std::max<std::size_t>(1, std::thread::hardware_concurrency());
}

template <class Element, class = void>
struct is_int8_rows : std::false_type {};
template <class Element>
struct is_int8_rows<Element, std::enable_if_t<is_scheme<Element>::value>>
    : std::integral_constant<bool, std::is_same<typename Element::format, int8>::value && !Element::has_zero> {};

/// Rows [r0, r0 + n) of K or V as floats, row i at out + i * d.
template <class Tag, class Element>
void rows_to_float(const kv_rows<Element>& rows, std::size_t r0, std::size_t n, std::size_t d, float* out) {
  if constexpr (is_int8_rows<Element>::value && !std::is_same<Tag, arch::scalar_tag>::value) {
#if defined(LOWBIT_COMPILED_SSE42)
    // int8 codes times their group's scale: widen, convert, multiply; a tenth of the general
    // row decoder's bookkeeping for these short rows (same float operations, same results).
    using O = simd::ops<Tag>;
    using f32 = typename O::f32;
    using i32 = typename O::i32;
    constexpr std::size_t W = O::lanes;
    const std::size_t g = rows.matrix.group_size(), groups = rows.matrix.groups_per_row();
    if (g % W == 0) {
      for (std::size_t i = 0; i < n; ++i) {
        const uint8_t* codes = rows.matrix.codes() + (r0 + i) * d;
        const auto* scales = rows.matrix.scales() + (r0 + i) * groups;
        for (std::size_t e = 0; e < d; e += W) {
          i32 v[1];
          O::unpack8s(codes + e, v);
          (O::to_f32(v[0]) * f32(scale_traits<typename Element::scale_type>::to_float(scales[e / g])))
              .store_aligned(out + i * d + e);
        }
      }
      return;
    }
#endif
    dequantize_rows<Tag>(rows.matrix.view(), r0, r0 + n, out, d);
  } else if constexpr (std::is_same<Element, float>::value) {
    std::copy(rows.data.data() + r0 * d, rows.data.data() + (r0 + n) * d, out);
  } else if constexpr (std::is_same<Element, bf16>::value) {
    const uint16_t* bits = &rows.data[r0 * d].bits;
    if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
      for (std::size_t i = 0; i < n * d; ++i) out[i] = bf16::from_bits(bits[i]).to_float();
    } else {
#if defined(LOWBIT_COMPILED_SSE42)
      // bf16 is a float's high half: widen each 16-bit word and shift it up (exact); d is a
      // multiple of 16, so of the lanes.
      using O = simd::ops<Tag>;
      for (std::size_t i = 0; i < n * d; i += O::lanes) O::as_f32(O::load_u16(bits + i) << 16).store_aligned(out + i);
#endif
    }
  } else {
    dequantize_rows<Tag>(rows.matrix.view(), r0, r0 + n, out, d);
  }
}

#if defined(LOWBIT_COMPILED_SSE42)
/// Lane i of the result: the sum of the 16 lanes of x[i] (16 vectors of 16 floats, V converting to
/// __m512). 16 -> 8 vectors (256-bit halves added, i and i + 8 side by side), -> 4 (128-bit
/// quarters added), then within 128-bit lanes; lanes come out as 0-3, 8-11, 4-7, 12-15, put in
/// order by the last permute.
template <class V>
LOWBIT_ALWAYS_INLINE __m512 sum_lanes16(const V* x) noexcept {
  __m512 b[8], c[4];
  LOWBIT_UNROLL
  for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[i], x[i + 8], 0x44), _mm512_shuffle_f32x4(x[i], x[i + 8], 0xEE));
  LOWBIT_UNROLL
  for (int i = 0; i < 4; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[i], b[i + 4], 0x88), _mm512_shuffle_f32x4(b[i], b[i + 4], 0xDD));
  const __m512 d01 = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
  const __m512 d23 = _mm512_add_ps(_mm512_unpacklo_ps(c[2], c[3]), _mm512_unpackhi_ps(c[2], c[3]));
  const __m512 e = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(d01), _mm512_castps_pd(d23))),
                                 _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(d01), _mm512_castps_pd(d23))));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15), e);
}

/// The sums of the lanes of W batches (W = lanes), as one batch: lane i = sum of acc[i].
template <class Tag>
typename simd::ops<Tag>::f32 reduce_lanes(const typename simd::ops<Tag>::f32* acc) noexcept {
  constexpr std::size_t W = simd::ops<Tag>::lanes;
  if constexpr (W == 4) {
    return _mm_hadd_ps(_mm_hadd_ps(acc[0], acc[1]), _mm_hadd_ps(acc[2], acc[3]));
  } else if constexpr (W == 8) {
    const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
    const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
  } else {
    return sum_lanes16(acc);
  }
}

#endif

#if defined(LOWBIT_COMPILED_AVX512)
/// 16 consecutive codes of a KIVI channel row, from code `first` on, decoded: 8-bit integers
/// widened and converted (times the format's unit, as the panel decoder does), other 8-bit
/// formats by a gather from the format's table, 4-bit ones (first even) by an in-register lookup.
template <class Format>
LOWBIT_ALWAYS_INLINE __m512 kivi_codes16(const uint8_t* codes, std::size_t first, const float* table) noexcept {
  constexpr int bits = format_traits<Format>::bits;
  static_assert(bits == 8 || bits == 4, "8- or 4-bit codes");
  if constexpr (bits == 8) {
    constexpr simd::decode_plan_data plan = simd::decode_plan<Format>::value;
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + first));
    if constexpr (plan.method == simd::decode_method::int_widen) {
      const __m512 v = _mm512_cvtepi32_ps(plan.is_signed ? _mm512_cvtepi8_epi32(bytes) : _mm512_cvtepu8_epi32(bytes));
      return plan.unit == 1.0f ? v : _mm512_mul_ps(v, _mm512_set1_ps(plan.unit));
    } else {
      return _mm512_i32gather_ps(_mm512_cvtepu8_epi32(bytes), table, 4);
    }
  } else {
    const __m128i x = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + first / 2));
    const __m128i low = _mm_set1_epi8(0x0F);
    const __m128i nibbles = _mm_unpacklo_epi8(_mm_and_si128(x, low), _mm_and_si128(_mm_srli_epi16(x, 4), low));
    return _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(nibbles), _mm512_loadu_ps(table));
  }
}

/// Per lane group of four: quarter j (lanes 4j..4j+3) of the result holds the largest lane of x[j]
/// (x[j] for j >= N: x[0]), so one tree of shuffles serves four vectors.
template <std::size_t N>
LOWBIT_ALWAYS_INLINE __m512 quarter_max(const __m512* x) noexcept {
  const __m512 x0 = x[0], x1 = N > 1 ? x[1] : x0, x2 = N > 2 ? x[2] : x0, x3 = N > 3 ? x[3] : x0;
  // 256-bit halves: a = [x0 lo|hi max, x1 lo|hi max] (8 lanes each), b for x2, x3.
  const __m512 a = _mm512_max_ps(_mm512_shuffle_f32x4(x0, x1, 0x44), _mm512_shuffle_f32x4(x0, x1, 0xEE));
  const __m512 b = _mm512_max_ps(_mm512_shuffle_f32x4(x2, x3, 0x44), _mm512_shuffle_f32x4(x2, x3, 0xEE));
  // 128-bit quarters: quarter j now holds 4 lanes of x[j]'s partial maxima.
  const __m512 c = _mm512_max_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
  const __m512 e = _mm512_max_ps(c, _mm512_permute_ps(c, 0x4E));
  return _mm512_max_ps(e, _mm512_permute_ps(e, 0xB1));
}

/// Head j's running maximum (max[j], j < N) in quarter j; quarters past N: those of tile_max (so
/// nothing moves there).
template <std::size_t N>
LOWBIT_ALWAYS_INLINE __m512 running_max_quarters(__m512 tile_max, const float* max) noexcept {
  return _mm512_mask_mov_ps(tile_max, static_cast<__mmask16>((1u << (4 * N)) - 1),
                            _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                                  _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << N) - 1), max)));
}

/// e^x per lane, to about 2 ulp for |x| < 10 (about 1e-6 relative below -10, where e^x is tiny
/// next to the maximum's 1): 2^n · 2^f with n = round(x log2 e), |f| <= 1/2, 2^f by a degree-6
/// polynomial, 2^n by vscalefps (which gives 0 for a large negative n: no clamping). Half the
/// instructions of xsimd's exp, which the softmax of each tile and head runs.
LOWBIT_ALWAYS_INLINE __m512 exp_tile(__m512 x) noexcept {
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  // 2^f = e^(f ln 2): Taylor coefficients ln2^k / k!
  __m512 p = _mm512_set1_ps(1.5403530393381609954e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443423e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284771619e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821579953e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071233e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994530942e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/// 2^x per lane for x <= 0 (scores in base-2 units), to about 3e-6 relative: 2^n · 2^f with n =
/// round(x), |f| <= 1/2, 2^f by a degree-4 polynomial fitted for relative error, 2^n by vscalefps
/// (0 for a large negative n). For the integer tile kernel, whose probabilities are rounded to u8
/// (steps of 1/255): a third fewer multiply-adds than exp_tile, and no multiply by log2 e.
LOWBIT_ALWAYS_INLINE __m512 exp2_tile(__m512 x) noexcept {
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(9.570101434053898e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.591786028197019e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4024744839645948e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931218147436671e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.999992614421662e-1f));
  return _mm512_scalef_ps(p, n);
}

/// Quarter j of x in all 16 lanes.
template <int J>
LOWBIT_ALWAYS_INLINE __m512 quarter(const __m512 x) noexcept {
  return _mm512_shuffle_f32x4(x, x, J * 0x55);
}
LOWBIT_ALWAYS_INLINE __m512 quarter(const __m512 x, std::size_t j) noexcept {
  switch (j) {
    case 0: return quarter<0>(x);
    case 1: return quarter<1>(x);
    case 2: return quarter<2>(x);
    default: return quarter<3>(x);
  }
}

/// out row i (16 floats at out + i * out_ld) = column i of the 16 x 16 block at in (rows in_ld apart).
LOWBIT_ALWAYS_INLINE void transpose16x16(const float* in, std::size_t in_ld, float* out, std::size_t out_ld) noexcept {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(in + i * in_ld);
  for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // quads: each 128-bit lane a 4 x 4 block
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {  // then the 4 x 4 grid of those blocks
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 8; ++i) {
    _mm512_storeu_ps(out + i * out_ld, _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88));
    _mm512_storeu_ps(out + (i + 8) * out_ld, _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD));
  }
}
#endif

/// KIVI keys of tokens [t, t + n) (consecutive rows) as floats, n x d: for a completed block, each
/// channel's codes of these tokens decoded (the format's table, the channel's scale and zero point:
/// the reference's float operations) into a channels x tokens buffer, then transposed; tokens of
/// the incomplete block from the fp32 residual. (Per element through the reference, or a block's
/// 32-token rows through the SIMD row decoder, cost 9x and 4x the per-token int8 cache's decode.)
template <class Tag, class Element>
void kivi_keys_to_float(const kv_cache<Element>& cache, std::size_t seq, std::size_t h, std::size_t t, std::size_t n,
                        float* out) {
  if constexpr (is_scheme<Element>::value) {
    using scales = scale_traits<typename Element::scale_type>;
    const std::size_t T = cache.key_tokens(), d = cache.shape().head_dim, complete = cache.lengths()[seq] / T * T;
    const quantized_view<Element> blocks = cache.key_blocks().matrix.view();
    const float* const table = simd::detail::decode_table<typename Element::format>();
#if defined(LOWBIT_COMPILED_AVX512)
    constexpr bool avx512 = Tag::level >= isa::avx512 && (Element::bits == 8 || Element::bits == 4);
#else
    constexpr bool avx512 = false;
#endif
    thread_local aligned_buffer<float> column_buffer;  // channel e's tokens at columns + e * tile_tokens
    if (column_buffer.size() < d * tile_tokens) column_buffer = aligned_buffer<float>(d * tile_tokens);
    float* const columns = column_buffer.data();
    for (std::size_t done = 0; done < n;) {
      const std::size_t u = t + done, in_block = u % T, count = std::min({n - done, T - in_block, tile_tokens});
      if (u < complete) {
        const std::size_t first = kv_unchecked::row(cache, seq, h, u) / T * d;
        // AVX-512, 8- or 4-bit codes, a whole tile: each channel's 16 tokens are one vector.
        const bool wide = avx512 && count == tile_tokens && (Element::bits == 8 || in_block % 2 == 0);
        for (std::size_t e = 0; e < d; ++e) {
          const std::size_t r = first + e;
          const float scale = scales::to_float(blocks.row_scales(r)[0]);
          const float zero = Element::has_zero ? table[blocks.row_zeros(r)[0]] : 0.0f;
          const uint8_t* codes = blocks.row_codes(r);
          if (wide) {
#if defined(LOWBIT_COMPILED_AVX512)
            __m512 value = kivi_codes16<typename Element::format>(codes, in_block, table);
            if (Element::has_zero) value = _mm512_sub_ps(value, _mm512_set1_ps(zero));
            _mm512_store_ps(columns + e * tile_tokens, _mm512_mul_ps(value, _mm512_set1_ps(scale)));
#endif
            continue;
          }
          for (std::size_t i = 0; i < count; ++i) {
            float value = table[get_packed_code(codes, in_block + i, Element::bits)];
            if (Element::has_zero) value = value - zero;
            columns[e * tile_tokens + i] = value * scale;
          }
        }
        if (wide) {
#if defined(LOWBIT_COMPILED_AVX512)
          for (std::size_t e = 0; e < d; e += 16) transpose16x16(columns + e * tile_tokens, tile_tokens, out + done * d + e, d);
#endif
        } else {
          for (std::size_t i = 0; i < count; ++i)
            for (std::size_t e = 0; e < d; ++e) out[(done + i) * d + e] = columns[e * tile_tokens + i];
        }
      } else {
        for (std::size_t i = 0; i < count; ++i)
          std::copy_n(kv_unchecked::key_residual(cache, seq, h, u + i), d, out + (done + i) * d);
      }
      done += count;
    }
  } else {
    (void)cache, (void)seq, (void)h, (void)t, (void)n, (void)out;  // float / bf16 caches have no KIVI keys
  }
}

/// Keys of tokens [t, t + n) of head h of sequence seq as floats (n x d): their rows (consecutive:
/// within one page), or a KIVI cache's per-channel blocks and fp32 residual.
template <class Tag, class Element>
void keys_to_float(const kv_cache<Element>& cache, std::size_t seq, std::size_t h, std::size_t t, std::size_t n, float* out) {
  if (cache.key_tokens()) {
    kivi_keys_to_float<Tag>(cache, seq, h, t, n, out);
  } else {
    rows_to_float<Tag>(cache.keys(), kv_unchecked::row(cache, seq, h, t), n, cache.shape().head_dim, out);
  }
}

/// x rounded to bf16 precision (nearest even), as a float: what the paths without AVX-512 BF16
/// multiply in fp32 for the bf16 options (prefill, decode).
inline float round_bf16(float x) noexcept { return bf16(x).to_float(); }
inline void round_bf16(float* x, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) x[i] = round_bf16(x[i]);
}

/// scores[i] = exp(scores[i] - shift) for the 16 scores of a tile (xsimd's vector exp).
template <class Tag>
void exp_shifted(float* scores, float shift) noexcept {
  if constexpr (std::is_same<Tag, arch::scalar_tag>::value) {
    for (std::size_t i = 0; i < tile_tokens; ++i) scores[i] = std::exp(scores[i] - shift);
  } else {
#if defined(LOWBIT_COMPILED_SSE42)
    using f32 = typename simd::ops<Tag>::f32;
    constexpr std::size_t W = simd::ops<Tag>::lanes;
    for (std::size_t i = 0; i < tile_tokens; i += W) xsimd::exp(f32::load_unaligned(scores + i) - f32(shift)).store_unaligned(scores + i);
#endif
  }
}

/// The online-softmax step of one query head over a tile's 16 scores (those past n ignored):
/// updates the running max and sum, leaves exp(score - max) in scores (0 past n) and returns
/// the factor that rescales the head's earlier V sums (0 on the first tile: max was -inf).
template <class Tag>
float softmax_tile(float* scores, std::size_t n, float& max, float& sum) noexcept {
  float tile_max = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < n; ++i) tile_max = std::max(tile_max, scores[i]);
  const float new_max = std::max(max, tile_max);
  const float correction = std::exp(max - new_max);
  for (std::size_t i = n; i < tile_tokens; ++i) scores[i] = -std::numeric_limits<float>::infinity();
  exp_shifted<Tag>(scores, new_max);
  float total = sum * correction;
  for (std::size_t i = 0; i < n; ++i) total += scores[i];
  max = new_max;
  sum = total;
  return correction;
}

/// Asks for `bytes` from p in L1, a cache line at a time.
inline void prefetch(const void* p, std::size_t bytes) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  for (std::size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(static_cast<const char*>(p) + offset);
#else
  (void)p, (void)bytes;
#endif
}

/// The next tile's K and V codes when it starts a new page of a paged cache (t: its first
/// token). Within a page a head's rows follow each other, which the hardware prefetcher streams
/// without help: asking for every tile's lines cost more than it saved (the bf16 kernel at
/// S = 32768 ran 1.9x slower with it).
template <class Element>
void prefetch_new_page(const kv_cache<Element>& cache, std::size_t seq, std::size_t h, std::size_t t, std::size_t t1) noexcept {
  if (!cache.paged() || t >= t1 || t % cache.shape().page_tokens != 0) return;
  const std::size_t n = std::min(tile_tokens, t1 - t), r = kv_unchecked::row(cache, seq, h, t);
  if (!cache.key_tokens()) prefetch(cache.keys().codes_of(r), cache.keys().code_bytes(n));
  prefetch(cache.values().codes_of(r), cache.values().code_bytes(n));
}

}  // namespace detail
}  // namespace attention
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
