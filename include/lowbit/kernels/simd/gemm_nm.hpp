/// \file
/// \brief N:M GEMM on the SIMD archs (sparse/nm_matrix.hpp), the 2:4 kernels' two shapes with the
/// pick widened to groups of M columns (nm_select.hpp):
///  - small M: the dense small-M kernel's loop (gemm_float.hpp): a chunk of kept values decoded
///    in registers (panel_decoder, or loaded as they are for fp32 / bf16), each lane multiplying
///    the x column its position picks; per-group sums scaled once;
///  - large M: the 2:4 tile loop (gemm_sparse24.hpp, sparse24_tiled), filled with the decoded kept
///    values and the offsets of their x columns in the packed x: N / M of the dense FMAs.
/// Kept values whose column lies past K (the last group's padding) multiply zeros: a zero-padded
/// copy of x (small M), a zero value at offset 0 (large M).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../../sparse/nm_matrix.hpp"
#include "gemm_bf16_pairs.hpp"
#include "gemm_sparse24_plain.hpp"
#include "nm_select.hpp"

LOWBIT_SIMD_DIAGNOSTICS_BEGIN

namespace lowbit {
namespace simd {

#if defined(LOWBIT_COMPILED_SSE42)

/// The scheme whose decoder a kernel instantiates (plain kinds: a stand-in, never called).
template <class Scheme>
using nm_decoded_scheme = std::conditional_t<is_plain_value<Scheme>::value, lowbit::scheme<int8>, Scheme>;

/// Bytes of positions per row and chunk of PerLane kept values in groups of M.
template <std::size_t PerLane, std::size_t M>
constexpr std::size_t nm_row_bytes = (PerLane * lowbit::detail::nm_log2(M) + 7) / 8;

/// Small-M kernel: rows [0, MR) of x (row i at x + min(i, m - 1) * ldx), panels [p_begin, p_end)
/// taken P at a time; Matrix is nm_matrix<Scheme> (quantized or plain), M its group width.
template <class Tag, class Matrix, std::size_t M, std::size_t MR, std::size_t P>
void gemm_nm_small_m(const Matrix& w, const float* x, std::size_t ldx, std::size_t m, std::size_t p_begin,
                     std::size_t p_end, const gemm_output& out) noexcept {
  using Scheme = typename Matrix::scheme_type;
  constexpr bool plain = is_plain_value<Scheme>::value;
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  using select = nm_select<Tag, M>;
  using D = panel_decoder<Tag, typename nm_decoded_scheme<Scheme>::format>;
  constexpr std::size_t W = O::lanes, V = 16 / W, NV = P * V, L = Matrix::per_lane;
  constexpr std::size_t B = lowbit::detail::nm_log2(M), row_bytes = nm_row_bytes<L, M>;
  const D dec;
  const unsigned n_shift = lowbit::detail::nm_log2(w.n());
  const std::size_t chunks = w.chunks(), cols = w.cols(), panels = w.panels();
  // The x columns of a chunk: its groups' M columns each (one group when N >= L).
  const std::size_t span = std::max<std::size_t>(L >> n_shift, 1) * M;
  const float* xr[MR];
  for (std::size_t i = 0; i < MR; ++i) xr[i] = x + std::min(i, m - 1) * ldx;

  for (std::size_t p0 = p_begin; p0 < p_end; p0 += P) {
    std::size_t panel[P];
    for (std::size_t p = 0; p < P; ++p) panel[p] = std::min(p0 + p, panels - 1);
    f32 total[MR][NV];
    for (auto& row : total)
      for (auto& t : row) t = f32(0.0f);
    std::size_t groups = 1, group_size = 0;
    if constexpr (!plain) groups = w.values().shape().groups_per_row(), group_size = w.values().shape().group_size;
    for (std::size_t g = 0; g < groups; ++g) {
      chunk_range_of_group range{0, chunks};
      f32 zero[NV];
      if constexpr (!plain) {
        range = group_chunks(g, groups, group_size, L, chunks);
        if constexpr (Scheme::has_zero)
          for (std::size_t p = 0; p < P; ++p)
            load_panel_zeros(dec, w.values().zeros(panel[p], g), zero + p * V);
      }
      (void)zero;
      f32 acc[2][MR][NV];
      for (auto& set : acc)
        for (auto& row : set)
          for (auto& a : row) a = f32(0.0f);
      for (std::size_t c = range.begin; c < range.end; ++c) {
        const std::size_t k0 = (c * L >> n_shift) * M;
        alignas(64) float padded[MR][L * M];  // the last chunk may run past cols: x zero-padded
        const float* xs[MR];
        if (k0 + span <= cols) {
          for (std::size_t i = 0; i < MR; ++i) xs[i] = xr[i] + k0;
        } else {
          for (std::size_t i = 0; i < MR; ++i) {
            for (std::size_t j = 0; j < span; ++j) padded[i][j] = k0 + j < cols ? xr[i][k0 + j] : 0.0f;
            xs[i] = padded[i];
          }
        }
        i32 lanes[NV], positions[NV];
        for (std::size_t p = 0; p < P; ++p) {
          if constexpr (!plain) {
            for (std::size_t v = 0; v < V; ++v)
              lanes[p * V + v] = i32::load_aligned(reinterpret_cast<const int32_t*>(w.values().chunk(panel[p], c)) + v * W);
            lowbit::simd::detail::prefetch_ahead(w.values().chunk(panel[p], c));
          } else {
            lowbit::simd::detail::prefetch_ahead(w.chunk(panel[p], c), 2048);
          }
          select::template load_positions<row_bytes>(w.metadata(panel[p], c), positions + p * V);
          lowbit::simd::detail::prefetch_ahead(w.metadata(panel[p], c), 512);
        }
        (void)lanes;
        lowbit::simd::detail::static_for<L>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
          constexpr std::size_t j = decltype(J)::value;
          const std::size_t offset = ((c * L + j) >> n_shift) * M - k0;
          typename select::window_t window[MR];
          for (std::size_t i = 0; i < MR; ++i) window[i] = select::window(xs[i] + offset);
          for (std::size_t v = 0; v < NV; ++v) {
            f32 value;
            if constexpr (plain) {
              value = load_plain<Tag, j>(w.chunk(panel[v / V], c), v % V);
            } else {
              value = dec.template decode<j>(lanes[v]);
              if constexpr (Scheme::has_zero) value = value - zero[v];
            }
            const i32 position = j ? i32(positions[v] >> static_cast<int>(B * j)) : positions[v];
            for (std::size_t i = 0; i < MR; ++i)
              acc[j & 1][i][v] = xsimd::fma(select::pick(window[i], position), value, acc[j & 1][i][v]);
          }
        });
      }
      if constexpr (plain) {
        for (std::size_t i = 0; i < MR; ++i)
          for (std::size_t v = 0; v < NV; ++v) total[i][v] = acc[0][i][v] + acc[1][i][v];
      } else {
        f32 scale[NV];
        for (std::size_t p = 0; p < P; ++p) load_panel_scales<Tag>(w.values().scales(panel[p], g), scale + p * V);
        for (std::size_t i = 0; i < MR; ++i)
          for (std::size_t v = 0; v < NV; ++v) total[i][v] = xsimd::fma(acc[0][i][v] + acc[1][i][v], scale[v], total[i][v]);
      }
    }
    lowbit::simd::detail::store_panel_sums<Tag, MR, P, V>(total, p0, p_end, m, out);
  }
}

/// Large-M kernel: the 2:4 tile loop (x packed by pack_x_transposed), each tile entry a decoded
/// kept value and the offset of its x column from the tile's base column 2 k_begin.
template <class Tag, class Matrix, std::size_t M>
void gemm_nm_tiled(const Matrix& w, const sparse24_packed_x& x, std::size_t m, std::size_t p_begin, std::size_t p_end,
                   const gemm_output& out) {
  using Scheme = typename Matrix::scheme_type;
  constexpr bool plain = is_plain_value<Scheme>::value;
  using O = ops<Tag>;
  using f32 = typename O::f32;
  using i32 = typename O::i32;
  using select = nm_select<Tag, M>;
  using D = panel_decoder<Tag, typename nm_decoded_scheme<Scheme>::format>;
  constexpr std::size_t W = O::lanes, V = 16 / W, L = Matrix::per_lane;
  constexpr std::size_t B = lowbit::detail::nm_log2(M), row_bytes = nm_row_bytes<L, M>;
  constexpr int32_t MB = static_cast<int32_t>(sparse24_tile_shape<Tag>::mb);
  const D dec;
  const unsigned n_shift = lowbit::detail::nm_log2(w.n());
  const std::size_t cols = w.cols();
  sparse24_tiled<Tag>(w.kept_cols(), x, m, p_begin, p_end, out,
                      [&](std::size_t panel, std::size_t k_begin, std::size_t k_end, float* values, int32_t* offsets) {
                        const std::size_t c_base = k_begin / 2 * 4;
                        [[maybe_unused]] panel_group_cursor<Tag, nm_decoded_scheme<Scheme>> group;
                        for (std::size_t c = k_begin / L; c * L < k_end; ++c) {  // k_begin: whole chunks
                          const std::size_t entry = (c * L - k_begin) * 16;
                          i32 lanes[V], positions[V];
                          select::template load_positions<row_bytes>(w.metadata(panel, c), positions);
                          if constexpr (!plain) {
                            group.seek(w.values(), dec, panel, c);
                            for (std::size_t v = 0; v < V; ++v)
                              lanes[v] = i32::load_aligned(reinterpret_cast<const int32_t*>(w.values().chunk(panel, c)) + v * W);
                          }
                          (void)lanes;
                          lowbit::simd::detail::static_for<L>([&](auto J) LOWBIT_ALWAYS_INLINE_LAMBDA {
                            constexpr std::size_t j = decltype(J)::value;
                            const int32_t base = static_cast<int32_t>(((c * L + j) >> n_shift) * M) - static_cast<int32_t>(c_base);
                            for (std::size_t v = 0; v < V; ++v) {
                              f32 value;
                              if constexpr (plain) {
                                value = load_plain<Tag, j>(w.chunk(panel, c), v);
                              } else {
                                value = dec.template decode<j>(lanes[v]);
                                if constexpr (Scheme::has_zero) value = value - group.zero[v];
                                value = value * group.scale[v];
                              }
                              value.store_aligned(values + entry + j * 16 + v * W);
                              const i32 position = (positions[v] >> static_cast<int>(B * j)) & i32(static_cast<int32_t>(M - 1));
                              ((i32(base) + position) * i32(MB)).store_aligned(offsets + entry + j * 16 + v * W);
                            }
                          });
                          // The last group's padding past K: zero values at the tile's base column.
                          if (((c * L + L - 1) >> n_shift) * M + M > cols)
                            for (std::size_t e = entry; e < entry + std::min(L, k_end - c * L) * 16; ++e)
                              if (static_cast<std::size_t>(offsets[e] / MB) + c_base >= cols) values[e] = 0.0f, offsets[e] = 0;
                        }
                      });
}

#endif  // LOWBIT_COMPILED_SSE42

#if defined(LOWBIT_COMPILED_AVX512_VNNI)

/// 4:8 at M = 1 on AVX-512 BF16, for the 4-bit formats the bf16 pair kernel takes (values exact
/// in bf16, no zero points: gemm_bf16_pairs.hpp, whose accuracy bound it shares). A chunk's 8
/// kept values of a lane cover 16 columns of x, kept values 0-3 in group 0 (columns 0-7) and 4-7
/// in group 1. Pair t = (a, a + 2) of a lane (the value pairs of the bf16 pair kernel) lies in one
/// group, and its two columns are gathered with one vpermw per part from a table of that group's
/// 8 hi (or lo) words repeated 4 times: vpermw reads an index's low 5 bits, so vpmultishiftqb,
/// which puts the bits from position a (and a + 2) on in the lane's low (and high) word, is the
/// whole index. Per chunk of 16 rows x 16 columns: 4 vpermw (values), 4 vpmultishiftqb, 8 vpermw
/// (x), 8 vdpbf16ps, 3 shifts and 1 vpermb (positions), against dense's 8 vpermw, 16 vdpbf16ps
/// and 6 shifts. On Zen 4, 4096x4096 int4 in L3: 349 us against the fp32 pick's 451 (dense:
/// 338); masking the index into one table per chunk instead (8 vpternlogd more) took 406.

/// Per chunk of 16 columns of x (zeros past k), its four tables of 32 words (x_bf16_word_tables).
struct x_bf16_word_tables {
  alignas(64) uint16_t words[4][32];  ///< table q: group q / 2, hi (q even) or lo parts; entry i: column i % 8
  constexpr x_bf16_word_tables() : words() {
    for (int q = 0; q < 4; ++q)
      for (int i = 0; i < 32; ++i) words[q][i] = static_cast<uint16_t>((q & 1) * 16 + (q >> 1) * 8 + (i & 7));
  }
};
inline void split_x_bf16_word_tables(const float* x, std::size_t k, std::size_t chunks, uint32_t* out) noexcept {
  static constexpr x_bf16_word_tables order{};
  __m512i index[4];
  for (int q = 0; q < 4; ++q) index[q] = _mm512_load_si512(order.words[q]);
  for (std::size_t c = 0; c < chunks; ++c) {
    const std::size_t k0 = c * 16;
    const __m512i words = split_hi_lo(x + k0, k0 < k ? k - k0 : 0);
    for (int q = 0; q < 4; ++q) _mm512_storeu_si512(out + c * 64 + q * 16, _mm512_permutexvar_epi16(index[q], words));
  }
}

template <class Scheme, std::size_t P>
void gemm_nm48_bf16_m1(const nm_matrix<Scheme>& w, const uint32_t* x_tables, std::size_t p_begin, std::size_t p_end,
                       const gemm_output& out) noexcept {
  static_assert(format_traits<typename Scheme::format>::bits == 4 && !Scheme::has_zero, "4-bit codes, no zero points");
  using Tag = arch::avx512_vnni_tag;
  const panel_matrix<Scheme>& v = w.values();
  const __m512i table = _mm512_load_si512(bf16_codes<Scheme>().words);
  const std::size_t chunks = v.chunks(), groups = v.shape().groups_per_row(), group_size = v.shape().group_size;
  const std::size_t panels = v.panels();
  // Pair t is kept values (a, a + 2), a = 0, 4, 1, 5: the codes shifted by 4t index it (gemm_bf16_pairs.hpp).
  static constexpr int first[4] = {0, 4, 1, 5};
  __m512i control[4];  // position of kept j: bits 3j of the row's 24; a qword holds two rows
  for (int t = 0; t < 4; ++t) {
    const auto a = static_cast<uint64_t>(3 * first[t]), b = a + 6;
    control[t] = _mm512_set1_epi64(static_cast<long long>(a | b << 16 | (32 + a) << 32 | (32 + b) << 48));
  }
  for (std::size_t p0 = p_begin; p0 < p_end; p0 += P) {
    std::size_t panel[P];
    for (std::size_t p = 0; p < P; ++p) panel[p] = std::min(p0 + p, panels - 1);
    __m512 total[P];
    for (auto& t : total) t = _mm512_setzero_ps();
    for (std::size_t g = 0; g < groups; ++g) {
      const auto range = group_chunks(g, groups, group_size, 8, chunks);
      __m512 acc[2][P];  // hi and lo parts
      for (auto& set : acc)
        for (auto& a : set) a = _mm512_setzero_ps();
      for (std::size_t c = range.begin; c < range.end; ++c) {
        __m512i codes[P], positions[P];
        for (std::size_t p = 0; p < P; ++p) {
          typename ops<Tag>::i32 rows;
          nm_select<Tag, 8>::template load_positions<3>(w.metadata(panel[p], c), &rows);
          positions[p] = rows;
          lowbit::simd::detail::prefetch_ahead(w.metadata(panel[p], c), 768);
          codes[p] = _mm512_load_si512(v.chunk(panel[p], c));
          lowbit::simd::detail::prefetch_ahead(v.chunk(panel[p], c));
        }
        lowbit::simd::detail::static_for<4>([&](auto T) LOWBIT_ALWAYS_INLINE_LAMBDA {
          constexpr std::size_t t = decltype(T)::value;
          const uint32_t* tables = x_tables + c * 64 + first[t] / 4 * 32;
          const __m512i hi = _mm512_loadu_si512(tables), lo = _mm512_loadu_si512(tables + 16);
          for (std::size_t p = 0; p < P; ++p) {
            __m512i index = codes[p];
            if constexpr (t != 0) index = _mm512_srli_epi16(index, 4 * t);
            const __m512bh value = (__m512bh)_mm512_permutexvar_epi16(index, table);
            const __m512i columns = _mm512_multishift_epi64_epi8(control[t], positions[p]);
            acc[0][p] = _mm512_dpbf16_ps(acc[0][p], value, (__m512bh)_mm512_permutexvar_epi16(columns, hi));
            acc[1][p] = _mm512_dpbf16_ps(acc[1][p], value, (__m512bh)_mm512_permutexvar_epi16(columns, lo));
          }
        });
      }
      for (std::size_t p = 0; p < P; ++p) {
        typename ops<Tag>::f32 scale[1];
        load_panel_scales<Tag>(v.scales(panel[p], g), scale);
        total[p] = _mm512_fmadd_ps(_mm512_add_ps(acc[0][p], acc[1][p]), scale[0], total[p]);
      }
    }
    for (std::size_t p = 0; p < P && p0 + p < p_end; ++p) {
      const std::size_t n0 = (p0 + p) * 16;
      const __m512 bias = out.bias ? __m512(lowbit::simd::detail::load_clipped<Tag>(out.bias, n0, out.n))
                                   : _mm512_setzero_ps();
      lowbit::simd::detail::store_clipped<Tag>(out.y, n0, out.n, typename ops<Tag>::f32(_mm512_add_ps(total[p], bias)));
    }
  }
}

#endif  // LOWBIT_COMPILED_AVX512_VNNI

}  // namespace simd
}  // namespace lowbit

LOWBIT_SIMD_DIAGNOSTICS_END
