/// \file
/// \brief Small-M weight-only GEMM (M <= 4) on AVX-512 BF16 for the 4-bit formats whose 16 values
/// are exact in bf16 (int4, uint4, FP4 E2M1, IQ4_NL, MXINT4, MXFP4): codes looked up as bf16 words
/// (vpermw) and multiplied by vdpbf16ps, two elements per instruction and lane.
///
/// Why: at M = 1 one core is bound by instructions, not memory. The fp32 kernel spends a shift, a
/// vpermps and an FMA on every 16 weights; here a shift (3 of 4), a vpermw and two vdpbf16ps cover
/// 32, so one core streams the weights about 1.5x faster.
///
/// fp32 x is split once per call into hi = bf16(x) and lo = bf16(x - hi): hi + lo keeps 16
/// significant bits of x (|x - hi| <= 2^-8 |x|, so |x - hi - lo| <= 2^-16 |x|). A code's value
/// times a bf16 part is exact in fp32 and vdpbf16ps adds it like an FMA, so y differs from the
/// fp32 kernel's by at most 2^-16 sum_k |x w| (beyond fp32 summation); parts below 2^-126 count
/// as zero, as vdpbf16ps reads them (an absolute error below 2^-126 |w|). bf16 x is exact as hi
/// alone (lo omitted: one vdpbf16ps per 32 weights).
///
/// Pairing: element j of a lane sits at bit j % 4 * 8 + j / 4 * 4 (layout/panel.hpp), so the
/// lane's low 16-bit word holds elements 0, 4, 1, 5 and its high word 2, 6, 3, 7 (4 bits each).
/// Shifting the words by 0, 4, 8, 12 puts the pairs (0, 2), (4, 6), (1, 3), (5, 7) in their low
/// bits, where vpermw reads an index (5 bits: the table holds the 16 values twice, so the next
/// code's low bit does not matter). x is stored in that order, each pair one 32-bit word that
/// vdpbf16ps broadcasts: per chunk of 8 columns, hi pairs then lo pairs.
///
/// Zero points (uint4, whose value is its code): bytes masked to one code each and the zero point
/// subtracted bytewise, so a word's low 5 bits are (code - zero) mod 32, looked up in a table of
/// the differences -15..15.
///
/// 2:4 matrices (sparse24_columns): a chunk's 8 kept values of a lane cover 16 columns of x, kept
/// value j at column 4 (j / 2) + its 2-bit position. x is stored per chunk as its 16 hi words and
/// 16 lo words, and each lane gathers its pair by vpermw: for pair (a, a + 2) the positions sit
/// at bits 2a and 2a + 4, which one shift of P | P << 12 brings to the bottom of the low and the
/// high word; masked and offset by the groups' first columns (one vpternlogd) they index the hi
/// words, and the same index the lo words, loaded 32 bytes further.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gemm_float.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

#if defined(LOWBIT_COMPILED_AVX512_VNNI)

/// The bf16 words vpermw looks codes up in: the 16 values twice (no zero points) or, with zero
/// points, the differences code - zero for a 5-bit index (code - zero) mod 32. usable: false when
/// a value is not exact in bf16 (NF4, SF4) or zero points are not on plain codes.
struct bf16_code_table {
  bool usable = false;
  alignas(64) uint16_t words[32] = {};
};

template <class Scheme>
const bf16_code_table& bf16_codes() noexcept {
  static const bf16_code_table table = [] {
    bf16_code_table t;
    using format = typename Scheme::format;
    if constexpr (format_traits<format>::bits == 4) {
      const float* values = detail::decode_table<format>();
      t.usable = true;
      for (int i = 0; i < 32; ++i) {
        // With zero points the value must be the code itself (uint4): then value - zero = i - 32 or i.
        const float v = Scheme::has_zero ? static_cast<float>(i < 16 ? i : i - 32) : values[i & 15];
        if (Scheme::has_zero && values[i & 15] != static_cast<float>(i & 15)) t.usable = false;
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        if ((bits & 0xFFFFu) != 0) t.usable = false;
        t.words[i] = static_cast<uint16_t>(bits >> 16);
      }
    }
    return t;
  }();
  return table;
}

/// x rows in the kernel's pair order: row i at data + i * ld (32-bit units), per chunk of 8 columns the 4
/// hi pairs, then (fp32 x) the 4 lo pairs; columns past k are zero. 2:4: per chunk of 16 columns
/// the 16 hi words, then the 16 lo words (split_x_bf16_words; 8 words of padding after the
/// last row, which the lo loads read past).
struct bf16_pairs_x {
  const uint32_t* data;
  std::size_t ld;
};

namespace detail {
/// Words of 16 hi parts (words 0..15) and 16 lo parts (16..31) to two chunks of pairs.
alignas(64) inline constexpr uint16_t pair_order_split[32] = {0, 2, 4, 6, 1, 3, 5, 7, 16, 18, 20, 22, 17, 19, 21, 23,
                                                              8, 10, 12, 14, 9, 11, 13, 15, 24, 26, 28, 30, 25, 27, 29, 31};
/// Words of 32 bf16 values to four chunks of hi pairs.
alignas(64) inline constexpr uint16_t pair_order_bf16[32] = {0,  2,  4,  6,  1,  3,  5,  7,  8,  10, 12, 14, 9,  11, 13, 15,
                                                             16, 18, 20, 22, 17, 19, 21, 23, 24, 26, 28, 30, 25, 27, 29, 31};
}  // namespace detail

/// 16 columns of x (`valid` of them read, the rest zero) as 32 words: their hi parts, then their
/// lo parts. x - hi is exact; where hi is infinite or NaN, lo = 0 keeps hi's value.
LOWBIT_ALWAYS_INLINE __m512i split_hi_lo(const float* x, std::size_t valid) noexcept {
  const __mmask16 mask = valid >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << valid) - 1);
  const __m512 v = _mm512_maskz_loadu_ps(mask, x);
  const __m256i hi = (__m256i)_mm512_cvtneps_pbh(v);
  const __m512 hi_float = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
  const __mmask16 finite = _mm512_cmp_ps_mask(_mm512_abs_ps(hi_float), _mm512_set1_ps(3.4028235e38f), _CMP_LE_OQ);
  const __m256i lo = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_sub_ps(finite, v, hi_float));
  return _mm512_inserti64x4(_mm512_castsi256_si512(hi), lo, 1);
}

/// Splits rows of fp32 x (m x k, ld ldx) into hi and lo pairs for `chunks` chunks of 8 columns.
inline void split_x_bf16_pairs(const float* x, std::size_t ldx, std::size_t m, std::size_t k, std::size_t chunks,
                               uint32_t* out) noexcept {
  const __m512i order = _mm512_load_si512(detail::pair_order_split);
  for (std::size_t i = 0; i < m; ++i) {
    uint32_t* row = out + i * chunks * 8;
    for (std::size_t c = 0; c < chunks; c += 2) {
      const std::size_t k0 = c * 8;
      const __m512i pairs = _mm512_permutexvar_epi16(order, split_hi_lo(x + i * ldx + k0, k0 < k ? k - k0 : 0));
      if (c + 1 < chunks) {
        _mm512_storeu_si512(row + c * 8, pairs);
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + c * 8), _mm512_castsi512_si256(pairs));
      }
    }
  }
}

/// Splits rows of fp32 x (m x k, ld ldx) into 16 hi and 16 lo words per chunk of 16 columns.
inline void split_x_bf16_words(const float* x, std::size_t ldx, std::size_t m, std::size_t k, std::size_t chunks,
                               uint32_t* out) noexcept {
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t c = 0; c < chunks; ++c) {
      const std::size_t k0 = c * 16;
      _mm512_storeu_si512(out + (i * chunks + c) * 16, split_hi_lo(x + i * ldx + k0, k0 < k ? k - k0 : 0));
    }
}

/// Reorders rows of bf16 x (m x k, ld ldx) into hi pairs (exact; no lo) for `chunks` chunks.
inline void bf16_x_pairs(const bf16* x, std::size_t ldx, std::size_t m, std::size_t k, std::size_t chunks,
                         uint32_t* out) noexcept {
  const __m512i order = _mm512_load_si512(detail::pair_order_bf16);
  for (std::size_t i = 0; i < m; ++i) {
    uint32_t* row = out + i * chunks * 4;
    for (std::size_t c = 0; c < chunks; c += 4) {
      const std::size_t k0 = c * 8, valid = k0 < k ? k - k0 : 0;
      const __mmask32 mask = valid >= 32 ? __mmask32(0xFFFFFFFFu) : static_cast<__mmask32>((1u << valid) - 1);
      const __m512i pairs = _mm512_permutexvar_epi16(order, _mm512_maskz_loadu_epi16(mask, x + i * ldx + k0));
      const std::size_t words = std::min<std::size_t>(4, chunks - c) * 4;
      _mm512_mask_storeu_epi32(row + c * 4, static_cast<__mmask16>((1u << words) - 1), pairs);
    }
  }
}

/// Rows [0, MR) of y (row i meets x row min(i, m - 1)), panels [p_begin, p_end) P at a time:
/// gemm_float_small_m's loop with the bf16 pair steps. Needs bf16_codes<Scheme>().usable.
/// Columns: dense_columns or sparse24_columns (then x from split_x_bf16_words). HasLo: x has lo
/// parts (fp32 x; bf16 x has hi parts only).
template <class Scheme, std::size_t MR, std::size_t P, bool HasLo, class Columns = dense_columns>
void gemm_bf16_pairs_small_m(const panel_matrix<Scheme>& w, const bf16_pairs_x& x, std::size_t m,
                             std::size_t p_begin, std::size_t p_end, const gemm_output& out,
                             const Columns& columns = {}) noexcept {
  static_assert(std::is_same<Columns, dense_columns>::value || std::is_same<Columns, sparse24_columns>::value,
                "dense or 2:4 columns");
  constexpr bool sparse = Columns::sparse;
  static_assert(HasLo || !sparse, "2:4 x has lo words");
  // 2:4, pair t = (a, a + 2): the shift that brings position a to bit 0 and the groups' first
  // columns (low word: a's group, high word: a + 2's).
  static constexpr int position_shift[4] = {0, 8, 2, 10};
  static constexpr int group_columns[4] = {0 | 4 << 16, 8 | 12 << 16, 0 | 4 << 16, 8 | 12 << 16};
  using Tag = arch::avx512_vnni_tag;
  using D = panel_decoder<Tag, typename Scheme::format>;
  constexpr bool has_zero = Scheme::has_zero;
  const __m512i table = _mm512_load_si512(bf16_codes<Scheme>().words);
  const __m512i low_codes = _mm512_set1_epi8(0x0F);
  const std::size_t chunks = w.chunks(), groups = w.shape().groups_per_row();
  const std::size_t group_size = w.shape().group_size, panels = w.panels();
  constexpr std::size_t step = HasLo ? 8 : 4;  // 32-bit words of x per dense chunk
  const uint32_t* xr[MR];
  for (std::size_t i = 0; i < MR; ++i) xr[i] = x.data + std::min(i, m - 1) * x.ld;

  for (std::size_t p0 = p_begin; p0 < p_end; p0 += P) {
    std::size_t panel[P];
    for (std::size_t p = 0; p < P; ++p) panel[p] = std::min(p0 + p, panels - 1);
    __m512 total[MR][P];
    for (auto& row : total)
      for (auto& t : row) t = _mm512_setzero_ps();
    for (std::size_t g = 0; g < groups; ++g) {
      const auto range = group_chunks(g, groups, group_size, D::per_lane, chunks);
      __m512i zero[P];  // each lane's zero point in all four bytes
      if constexpr (has_zero)
        for (std::size_t p = 0; p < P; ++p)
          zero[p] = _mm512_mullo_epi32(
              _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zeros(panel[p], g)))),
              _mm512_set1_epi32(0x01010101));
      // Two sums per row and panel: hi and lo parts (or, for bf16 x, alternate steps), for latency.
      __m512 acc[2][MR][P];
      for (auto& set : acc)
        for (auto& row : set)
          for (auto& a : row) a = _mm512_setzero_ps();
      for (std::size_t c = range.begin; c < range.end; ++c) {
        __m512i codes[P][2];  // the chunk's codes; with zero points, masked bytes minus zero (low, high)
        __m512i spread[P];    // 2:4: each lane's positions P | P << 12
        for (std::size_t p = 0; p < P; ++p) {
          if constexpr (sparse) {
            const __m512i positions = _mm512_cvtepu16_epi32(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(columns.at(panel[p], c))));
            spread[p] = _mm512_or_si512(positions, _mm512_slli_epi32(positions, 12));
            lowbit::simd::detail::prefetch_ahead(columns.at(panel[p], c), 512);
          }
          codes[p][0] = _mm512_load_si512(w.chunk(panel[p], c));
          lowbit::simd::detail::prefetch_ahead(w.chunk(panel[p], c));
          if constexpr (has_zero) {
            codes[p][1] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(codes[p][0], 4), low_codes), zero[p]);
            codes[p][0] = _mm512_sub_epi8(_mm512_and_si512(codes[p][0], low_codes), zero[p]);
          }
        }
        // Unrolled at compile time: a runtime step index would keep the sums in memory.
        lowbit::simd::detail::static_for<4>([&](auto T) LOWBIT_ALWAYS_INLINE_LAMBDA {
          constexpr std::size_t t = decltype(T)::value;
          for (std::size_t p = 0; p < P; ++p) {
            // The words whose low bits index pair t: codes shifted by 4t, or (zero points) the low or
            // high bytes' differences, shifted by 8 for t = 2, 3.
            constexpr unsigned shift = has_zero ? (t >= 2 ? 8u : 0u) : static_cast<unsigned>(4 * t);
            __m512i index = codes[p][has_zero ? t & 1 : 0];
            if constexpr (shift != 0) index = _mm512_srli_epi16(index, shift);
            const __m512bh value = (__m512bh)_mm512_permutexvar_epi16(index, table);
            if constexpr (sparse) {
              __m512i shifted = spread[p];
              if constexpr (t != 0) shifted = _mm512_srli_epi32(shifted, position_shift[t]);
              // (shifted & 3 in each word) | the groups' columns: vpternlogd A & B | C.
              const __m512i gather = _mm512_ternarylogic_epi32(shifted, _mm512_set1_epi32(0x00030003),
                                                               _mm512_set1_epi32(group_columns[t]), 0xEA);
              for (std::size_t i = 0; i < MR; ++i) {
                // hi words 0..15 of the chunk, and 32 bytes on its lo words in the same places.
                const __m512i hi = _mm512_loadu_si512(xr[i] + c * 16), lo = _mm512_loadu_si512(xr[i] + c * 16 + 8);
                acc[0][i][p] = _mm512_dpbf16_ps(acc[0][i][p], value, (__m512bh)_mm512_permutexvar_epi16(gather, hi));
                acc[1][i][p] = _mm512_dpbf16_ps(acc[1][i][p], value, (__m512bh)_mm512_permutexvar_epi16(gather, lo));
              }
            } else {
              for (std::size_t i = 0; i < MR; ++i) {
                const uint32_t* pairs = xr[i] + c * step;
                const __m512bh hi = (__m512bh)_mm512_set1_epi32(static_cast<int>(pairs[t]));
                if constexpr (HasLo) {
                  acc[0][i][p] = _mm512_dpbf16_ps(acc[0][i][p], value, hi);
                  const __m512bh lo = (__m512bh)_mm512_set1_epi32(static_cast<int>(pairs[4 + t]));
                  acc[1][i][p] = _mm512_dpbf16_ps(acc[1][i][p], value, lo);
                } else {
                  acc[t & 1][i][p] = _mm512_dpbf16_ps(acc[t & 1][i][p], value, hi);
                }
              }
            }
          }
        });
      }
      for (std::size_t p = 0; p < P; ++p) {
        typename ops<Tag>::f32 scale[1];
        load_panel_scales<Tag>(w.scales(panel[p], g), scale);
        for (std::size_t i = 0; i < MR; ++i)
          total[i][p] = _mm512_fmadd_ps(_mm512_add_ps(acc[0][i][p], acc[1][i][p]), scale[0], total[i][p]);
      }
    }
    for (std::size_t p = 0; p < P && p0 + p < p_end; ++p) {
      const std::size_t n0 = (p0 + p) * 16;
      const __m512 bias = out.bias ? __m512(lowbit::simd::detail::load_clipped<Tag>(out.bias, n0, out.n))
                                   : _mm512_setzero_ps();
      for (std::size_t i = 0; i < MR && i < m; ++i)
        lowbit::simd::detail::store_clipped<Tag>(out.y + i * out.ld, n0, out.n,
                                                 typename ops<Tag>::f32(_mm512_add_ps(total[i][p], bias)));
    }
  }
}

#endif  // LOWBIT_COMPILED_AVX512_VNNI

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
