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
/// value j at column 4 (j / 2) + its 2-bit position, so pair t = (a, a + 2) takes one column from
/// each of groups a / 2 and a / 2 + 1, 16 possible column pairs per row. x is stored per chunk as
/// four tables of those 16 word pairs (hi parts of groups 0-1 and 2-3, then lo parts;
/// split_x_bf16_tables): the two positions of pair t, side by side in a nibble, are the table
/// entry, and one vpermd per table gathers every lane's pair. The stored positions put kept
/// values j .. j + 3 in one byte; swapping its middle two (4 byte-wise instructions per chunk of
/// 16 rows) gives the nibbles (j, j + 2) and (j + 1, j + 3), and vpermd reads only bits 0-3 of a
/// lane, so a shift (3 of 4) is all a pair's entry costs. Per chunk of 16 rows x 16 columns: 4
/// vpermw (values), 8 vpermd (hi and lo pairs), 1 vpmovzxwd, 8 vdpbf16ps, 6 shifts (27 zmm
/// instructions) and the 4 swap instructions on a ymm. Building a vpermw index per pair instead
/// (mask and group offset: a vpternlogd more per pair, 2 more per chunk) took 33 zmm
/// instructions and ran ~10% slower on Zen 4; the 13 shuffles remain the floor of this scheme.
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
/// the four pair tables (split_x_bf16_tables, 64 words).
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

namespace detail {
/// 2:4 pair tables: entry e = a | b << 2 of table q (hi group pair 0, hi 1, lo 0, lo 1) is the
/// word pair (columns 8 (q % 2) + a, 8 (q % 2) + 4 + b) of the hi (q < 2) or lo parts.
struct sparse24_table_order {
  alignas(64) uint16_t words[4][32];
  constexpr sparse24_table_order() : words() {
    for (int q = 0; q < 4; ++q)
      for (int e = 0; e < 16; ++e) {
        const int base = (q >= 2 ? 16 : 0) + 8 * (q % 2);
        words[q][2 * e] = static_cast<uint16_t>(base + (e & 3));
        words[q][2 * e + 1] = static_cast<uint16_t>(base + 4 + (e >> 2));
      }
  }
};
inline constexpr sparse24_table_order sparse24_tables{};
}  // namespace detail

/// Splits rows of fp32 x (m x k, ld ldx) into the 2:4 pair tables: per chunk of 16 columns four
/// tables of 16 word pairs (64 32-bit words; detail::sparse24_table_order). 4x the bytes of x in
/// words, still small (K = 14336: 224 KB a row), and read once per pass over P panels.
inline void split_x_bf16_tables(const float* x, std::size_t ldx, std::size_t m, std::size_t k, std::size_t chunks,
                                uint32_t* out) noexcept {
  __m512i order[4];
  for (int q = 0; q < 4; ++q) order[q] = _mm512_load_si512(detail::sparse24_tables.words[q]);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t c = 0; c < chunks; ++c) {
      const std::size_t k0 = c * 16;
      const __m512i words = split_hi_lo(x + i * ldx + k0, k0 < k ? k - k0 : 0);
      for (int q = 0; q < 4; ++q)
        _mm512_storeu_si512(out + (i * chunks + c) * 64 + q * 16, _mm512_permutexvar_epi16(order[q], words));
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
/// Columns: dense_columns or sparse24_columns (then x from split_x_bf16_tables). HasLo: x has lo
/// parts (fp32 x; bf16 x has hi parts only).
template <class Scheme, std::size_t MR, std::size_t P, bool HasLo, class Columns = dense_columns>
void gemm_bf16_pairs_small_m(const panel_matrix<Scheme>& w, const bf16_pairs_x& x, std::size_t m,
                             std::size_t p_begin, std::size_t p_end, const gemm_output& out,
                             const Columns& columns = {}) noexcept {
  static_assert(std::is_same<Columns, dense_columns>::value || std::is_same<Columns, sparse24_columns>::value,
                "dense or 2:4 columns");
  constexpr bool sparse = Columns::sparse;
  static_assert(HasLo || !sparse, "2:4 x has lo parts");
  // 2:4, pair t = (a, a + 2): the shift that brings its nibble (positions of a and a + 2, once
  // regrouped) to bit 0, and its table (group pair 0 or 1).
  static constexpr int nibble_shift[4] = {0, 8, 4, 12};
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
        __m512i spread[P];    // 2:4: each lane's positions as 4 table nibbles
        for (std::size_t p = 0; p < P; ++p) {
          if constexpr (sparse) {
            // Each byte holds positions j, j + 1, j + 2, j + 3 (2 bits each); swapping the middle
            // two gives nibbles (j, j + 2), (j + 1, j + 3): the pairs' table entries.
            const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(columns.at(panel[p], c)));
            const __m256i swap = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi16(bytes, 2), bytes), _mm256_set1_epi8(0x0C));
            spread[p] = _mm512_cvtepu16_epi32(
                _mm256_ternarylogic_epi32(bytes, swap, _mm256_slli_epi16(swap, 2), 0x96));
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
              // vpermd reads bits 0-3 of each lane: the nibble, no mask needed.
              __m512i entry = spread[p];
              if constexpr (nibble_shift[t] != 0) entry = _mm512_srli_epi32(entry, nibble_shift[t]);
              for (std::size_t i = 0; i < MR; ++i) {
                const uint32_t* tables = xr[i] + c * 64 + (t & 1) * 16;
                const __m512i hi = _mm512_loadu_si512(tables), lo = _mm512_loadu_si512(tables + 32);
                acc[0][i][p] = _mm512_dpbf16_ps(acc[0][i][p], value, (__m512bh)_mm512_permutexvar_epi32(entry, hi));
                acc[1][i][p] = _mm512_dpbf16_ps(acc[1][i][p], value, (__m512bh)_mm512_permutexvar_epi32(entry, lo));
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
